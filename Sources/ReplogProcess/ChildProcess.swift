import Subprocess
import Synchronization

#if canImport(System)
import System
#else
import SystemPackage
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process that runs while we read its output line by line, and whose exit is
/// awaited rather than polled: a node of `replog cluster`, or a process a test started.
///
/// Built on swift-subprocess, which keeps every other descriptor out of the child.
/// Foundation's `Process` on Linux closes only the descriptors it saw open when the child
/// started, so a pipe created meanwhile on another thread leaked into it, and a reader of
/// that pipe waited for an end of file that came only when the unrelated child ended.
public final class ChildProcess: Sendable {
    /// What the child reads on its standard input.
    public enum Input: Sendable {
        /// Nothing: end of file at once.
        case none
        /// These bytes, then end of file.
        case bytes([UInt8])
        /// A pipe whose write end only this process holds and never writes: the child
        /// reads end of file when we end, however we end (`--stop-on-stdin-eof`).
        case heldOpen
    }

    /// What the child wrote so far, and whether it is done; shared with the reading tasks.
    private final class Collected: Sendable {
        struct State {
            var log = ""
            var stdout = ""
            var exitStatus: Int32?
            /// Signals the running child through its pidfd, while its output is read.
            var send: (@Sendable (Int32) -> Void)?
        }
        let state = Mutex(State())
    }

    public let executable: String
    public let arguments: [String]
    /// The child's process id (for the banner, and for tests that signal it).
    public let pid: Int32
    /// Its standard output, line by line, as it arrives (one reader at a time); finishes
    /// when the child closes it.
    public let lines: AsyncStream<String>
    private let collected: Collected
    /// The task that owns the running child. It is unstructured because the child outlives
    /// the call that starts it (a test step, the cluster's start-up); `waitForExit` awaits
    /// it, and `deinit` kills the child so that it never outlives its owner.
    private let running: Task<Int32, Never>

    /// Starts `executable ARGUMENTS` and returns once it is running.
    /// - Parameters:
    ///   - environment: the child's whole environment (`nil`: ours).
    ///   - echo: called with every line the child writes (`isError` for stderr), for
    ///     callers that show the child's output as it comes.
    public init(
        executable: String, arguments: [String], environment: [String: String]? = nil, input: Input = .none,
        echo: (@Sendable (_ line: String, _ isError: Bool) -> Void)? = nil
    ) async throws {
        self.executable = executable
        self.arguments = arguments
        let collected = Collected()
        let (lines, lineContinuation) = AsyncStream.makeStream(of: String.self)
        var configuration = Configuration(executable: .path(FilePath(executable)), arguments: Arguments(arguments))
        if let environment {
            configuration.environment = Environment.custom(Dictionary(uniqueKeysWithValues: environment.compactMap { key, value in
                Environment.Key(rawValue: key).map { ($0, value) }
            }))
        }
        let (started, startedContinuation) = AsyncStream.makeStream(of: Result<Int32, any Error>.self)

        /// Reads both output streams to their end.
        @Sendable func attend(
            _ pid: Int32, send: @escaping @Sendable (Int32) -> Void, _ standardOutput: SubprocessOutputSequence,
            _ standardError: SubprocessOutputSequence
        ) async {
            collected.state.withLock { $0.send = send }
            // Under the lock, so that no signal goes out once `run` may close the pidfd.
            defer { collected.state.withLock { $0.send = nil } }
            startedContinuation.yield(.success(pid))
            startedContinuation.finish()
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        for try await line in standardOutput.strings() {
                            collected.state.withLock {
                                $0.log += line + "\n"
                                $0.stdout += line + "\n"
                            }
                            echo?(line, false)
                            lineContinuation.yield(line)
                        }
                    } catch {
                        collected.state.withLock { $0.log += "(reading stdout failed: \(error))\n" }
                    }
                }
                group.addTask {
                    do {
                        for try await line in standardError.strings() {
                            collected.state.withLock { $0.log += line + "\n" }
                            echo?(line, true)
                        }
                    } catch {
                        collected.state.withLock { $0.log += "(reading stderr failed: \(error))\n" }
                    }
                }
            }
            lineContinuation.finish()
        }

        running = Task {
            let status: TerminationStatus
            do {
                switch input {
                case .none:
                    status = try await run(configuration, input: .none, output: .sequence, error: .sequence) { execution in
                        await attend(
                            execution.processIdentifier.value, send: { _ = try? execution.send(signal: Signal(rawValue: $0)) },
                            execution.standardOutput, execution.standardError)
                    }.terminationStatus
                case .bytes(let bytes):
                    status = try await run(configuration, input: .array(bytes), output: .sequence, error: .sequence) { execution in
                        await attend(
                            execution.processIdentifier.value, send: { _ = try? execution.send(signal: Signal(rawValue: $0)) },
                            execution.standardOutput, execution.standardError)
                    }.terminationStatus
                case .heldOpen:
                    status = try await run(configuration, input: .inputWriter, output: .sequence, error: .sequence) { execution in
                        // Nothing is ever written: the child reads end of file when we end.
                        await attend(
                            execution.processIdentifier.value, send: { _ = try? execution.send(signal: Signal(rawValue: $0)) },
                            execution.standardOutput, execution.standardError)
                    }.terminationStatus
                }
            } catch {
                startedContinuation.yield(.failure(error))
                startedContinuation.finish()
                lineContinuation.finish()
                collected.state.withLock { $0.exitStatus = -1 }
                return -1
            }
            let code: Int32 =
                switch status {
                case .exited(let code): code
                case .signaled(let signal): 128 + signal
                }
            collected.state.withLock { $0.exitStatus = code }
            return code
        }
        self.collected = collected
        self.lines = lines
        var outcome: Result<Int32, any Error>?
        for await first in started {
            outcome = first
            break
        }
        guard let outcome else { throw ChildProcessError.didNotStart(executable: executable) }
        self.pid = try outcome.get()
    }

    /// Everything the child wrote so far (stdout and stderr, each line as it came).
    public var log: String { collected.state.withLock { $0.log } }

    /// What the child wrote to stdout so far.
    public var stdout: String { collected.state.withLock { $0.stdout } }

    /// Its exit status once it has ended and its output is read (128 + N after signal N).
    public var exitStatus: Int32? { collected.state.withLock { $0.exitStatus } }

    public var isRunning: Bool { exitStatus == nil }

    /// Sends `signal` (SIGTERM, SIGKILL, SIGSTOP, …) at once, if the child still runs.
    ///
    /// Through the child's pidfd (`pidfd_send_signal`), never by pid: the child is reaped
    /// before its output is read to the end and its exit recorded, and on a machine that
    /// starts many processes (`pid_max` is 32,768 here) its pid may belong to another
    /// process by then; a pidfd names this child only. Once its output is read the child
    /// has ended (or closed its output and goes on alone) and nothing is sent.
    public func signal(_ signal: Int32) {
        collected.state.withLock { $0.send?(signal) }
    }

    /// Waits until the child has ended and all of its output is read; its exit status.
    public func waitForExit() async -> Int32 {
        await withTaskCancellationHandler {
            await running.value
        } onCancel: { [running] in
            running.cancel()
        }
    }

    /// Its exit status once it has ended and its output is read, or nil if it still runs
    /// after `limit`.
    public func waitForExit(within limit: Duration) async -> Int32? {
        await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await self.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
    }

    deinit {
        // A child never outlives the object that started it (a test that failed half-way).
        signal(SIGKILL)
    }
}

public enum ChildProcessError: Error, CustomStringConvertible {
    case didNotStart(executable: String)

    public var description: String {
        switch self {
        case .didNotStart(let executable): "\(executable) did not start"
        }
    }
}

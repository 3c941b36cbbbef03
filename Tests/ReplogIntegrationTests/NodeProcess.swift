import Foundation
import ReplogProcess

/// A `replog` process started by a test: the real binary, built next to the test bundle.
final class NodeProcess: Sendable {
    /// The `replog` executable that `swift test` built alongside the tests.
    static let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("replog")

    let arguments: [String]
    private let process: ChildProcess

    /// Starts `replog ARGUMENTS` with `environment` added to ours; call
    /// `waitUntilListening()` for the port.
    /// - Parameter wrapper: a command that runs replog for us, e.g. `ip netns exec NAME`
    ///   (it must exec replog, so that the PID is replog's).
    init(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:], wrapper: [String] = []) async throws {
        self.arguments = arguments
        var flags = arguments
        let input: ChildProcess.Input
        if let stdin {
            input = .bytes(Array(stdin))
        } else if ["master", "secondary"].contains(arguments.first) {
            // A node ends when this test process does, however it ends (a crash, a run killed
            // for hanging): it reads end of file on a pipe whose write end only we hold. No
            // orphan keeps running and holding its port after a failed run.
            input = .heldOpen
            flags += ["--stop-on-stdin-eof"]
        } else {
            input = .none
        }
        process = try await ChildProcess(
            executable: wrapper.first ?? Self.binary.path, arguments: wrapper.isEmpty ? flags : Array(wrapper.dropFirst()) + [Self.binary.path] + flags,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, input: input)
    }

    var pid: Int32 { process.pid }
    var isRunning: Bool { process.isRunning }
    /// How it ended (128 + N after signal N), or nil while it runs.
    var exitStatus: Int32? { process.exitStatus }

    /// Everything the process wrote so far (stdout and stderr), for failure messages.
    var log: String { process.log }

    /// What the process wrote to stdout so far.
    var stdout: String { process.stdout }

    /// Stdout lines, in order, as they arrive. One reader at a time.
    var stdoutLines: AsyncStream<String> { process.lines }

    /// Waits for the `listening on http://host:port` line and returns the base URL. Gives up
    /// after `limit`, so that a node that hangs while starting fails the test with its log
    /// instead of running into the suite's time limit with none.
    func waitUntilListening(within limit: Duration = .seconds(30)) async throws -> String {
        enum Outcome: Sendable { case listening(String), exited, timedOut }
        let lines = process.lines
        let outcome = await withTaskGroup(of: Outcome.self) { group in
            group.addTask {
                for await line in lines {
                    if let range = line.range(of: "listening on ") {
                        let address = String(line[range.upperBound...])
                        return .listening(address.hasPrefix("http") ? address : "tcp://" + address)
                    }
                }
                return Task.isCancelled ? .timedOut : .exited
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return .timedOut
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        switch outcome {
        case .listening(let url): return url
        case .exited:
            let status = await process.waitForExit(within: .seconds(5))
            throw NodeProcessError.exitedBeforeListening(arguments: arguments, status: status, log: log)
        case .timedOut: throw NodeProcessError.notListening(arguments: arguments, after: limit, log: log)
        }
    }

    func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// Waits for the process to end and all of its output to be read; its exit status
    /// (128 + N after signal N). Gives up after `limit` with the process's log.
    func waitForExit(within limit: Duration = .seconds(20)) async throws -> Int32 {
        guard let status = await process.waitForExit(within: limit) else { throw NodeProcessError.didNotExit(arguments: arguments, log: log) }
        return status
    }
}

enum NodeProcessError: Error, CustomStringConvertible {
    case exitedBeforeListening(arguments: [String], status: Int32?, log: String)
    case didNotExit(arguments: [String], log: String)
    case notListening(arguments: [String], after: Duration, log: String)

    var description: String {
        switch self {
        case .exitedBeforeListening(let arguments, let status, let log):
            "replog \(arguments) exited before listening (exit status \(status.map(String.init) ?? "unknown"); 128 + N after signal N):\n\(log)"
        case .didNotExit(let arguments, let log): "replog \(arguments) did not exit:\n\(log)"
        case .notListening(let arguments, let limit, let log): "replog \(arguments) was not listening after \(limit):\n\(log)"
        }
    }
}

import Foundation
import Synchronization

/// A `replog` process started by a test: the real binary, built next to the test bundle.
final class NodeProcess: Sendable {
    /// The `replog` executable that `swift test` built alongside the tests.
    static let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("replog")

    let arguments: [String]
    private let process: Process
    private let output = OutputBuffer()
    /// The write end of a node's standard input, held open for as long as we live.
    private let parentAlive: Pipe?
    private let lines: AsyncStream<String>

    /// Starts `replog ARGUMENTS` with `environment` added to ours; call
    /// `waitUntilListening()` for the port.
    init(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:]) throws {
        self.arguments = arguments
        process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdout = Self.pipe()
        let stderr = Self.pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        if let stdin {
            let input = Self.pipe()
            process.standardInput = input
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
            parentAlive = nil
        } else if ["master", "secondary"].contains(arguments.first) {
            // A node ends when this test process does, however it ends (a crash, a run killed
            // for hanging): it reads end of file on a pipe whose write end only we hold. No
            // orphan keeps running and holding its port after a failed run.
            let pipe = Self.pipe()
            process.standardInput = pipe
            process.arguments = arguments + ["--stop-on-stdin-eof"]
            parentAlive = pipe
        } else {
            process.standardInput = FileHandle.nullDevice
            parentAlive = nil
        }
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        self.lines = lines
        let output = self.output
        let pending = Mutex(Data())
        stdout.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                continuation.finish()
                output.pipeClosed()
                return
            }
            let complete = pending.withLock { pending -> [String] in
                pending.append(chunk)
                var complete: [String] = []
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    complete.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...newline)
                }
                return complete
            }
            for line in complete {
                output.append(line + "\n", fromStdout: true)
                continuation.yield(line)
            }
        }
        stderr.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                output.pipeClosed()
                return
            }
            output.append(String(decoding: chunk, as: UTF8.self))
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// A pipe kept out of every other child. Tests start processes from many threads at
    /// once, and a child started by another thread while this pipe is open would inherit
    /// it (Foundation closes only the descriptors it saw open when that child started) and
    /// keep it open after our child exits. The child this pipe is meant for still gets its
    /// end as stdin, stdout or stderr: those copies are not close-on-exec.
    private static func pipe() -> Pipe {
        let pipe = Pipe()
        for handle in [pipe.fileHandleForReading, pipe.fileHandleForWriting] {
            _ = fcntl(handle.fileDescriptor, F_SETFD, FD_CLOEXEC)
        }
        return pipe
    }

    /// Everything the process wrote so far (stdout and stderr), for failure messages.
    var log: String { output.text }

    /// What the process wrote to stdout so far.
    var stdout: String { output.stdout }

    /// Stdout lines, in order, as they arrive. One reader at a time.
    var stdoutLines: AsyncStream<String> { lines }

    /// Waits for the `listening on http://host:port` line and returns the base URL. Gives up
    /// after `limit`, so that a node that hangs while starting fails the test with its log
    /// instead of running into the suite's time limit with none.
    func waitUntilListening(within limit: Duration = .seconds(30)) async throws -> String {
        enum Outcome: Sendable { case listening(String), exited, timedOut }
        let lines = self.lines
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
        case .exited: throw NodeProcessError.exitedBeforeListening(arguments: arguments, log: log)
        case .timedOut: throw NodeProcessError.notListening(arguments: arguments, after: limit, log: log)
        }
    }

    func signal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Waits for the process to end and returns its exit status (polls `isRunning`,
    /// because Foundation offers no async wait). Then waits, briefly, for the rest of its
    /// output, so that `log` holds its last words (a process that outlives it, such as a
    /// node of `replog cluster`, may hold the pipes open longer).
    func waitForExit(within limit: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            guard ContinuousClock.now < deadline else { throw NodeProcessError.didNotExit(arguments: arguments, log: log) }
            try await Task.sleep(for: .milliseconds(10))
        }
        let drained = ContinuousClock.now + .seconds(2)
        while !output.allPipesClosed, ContinuousClock.now < drained {
            try await Task.sleep(for: .milliseconds(10))
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

enum NodeProcessError: Error, CustomStringConvertible {
    case exitedBeforeListening(arguments: [String], log: String)
    case didNotExit(arguments: [String], log: String)
    case notListening(arguments: [String], after: Duration, log: String)

    var description: String {
        switch self {
        case .exitedBeforeListening(let arguments, let log): "replog \(arguments) exited before listening:\n\(log)"
        case .didNotExit(let arguments, let log): "replog \(arguments) did not exit:\n\(log)"
        case .notListening(let arguments, let limit, let log): "replog \(arguments) was not listening after \(limit):\n\(log)"
        }
    }
}

/// Text collected from a child's pipes (stdout and stderr), shared with the pipe handlers.
final class OutputBuffer: Sendable {
    private let storage = Mutex((all: "", stdout: ""))
    private let openPipes = Atomic(2)
    func append(_ text: String, fromStdout: Bool = false) {
        storage.withLock { storage in
            storage.all += text
            if fromStdout { storage.stdout += text }
        }
    }
    /// Both pipes, interleaved as they arrived.
    var text: String { storage.withLock { $0.all } }
    var stdout: String { storage.withLock { $0.stdout } }
    /// A pipe reached end of file.
    func pipeClosed() { openPipes.subtract(1, ordering: .sequentiallyConsistent) }
    var allPipesClosed: Bool { openPipes.load(ordering: .sequentiallyConsistent) == 0 }
}

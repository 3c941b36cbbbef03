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
    private let lines: AsyncStream<String>

    /// Starts `replog ARGUMENTS` with `environment` added to ours; call
    /// `waitUntilListening()` for the port.
    init(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:]) throws {
        self.arguments = arguments
        process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        if let stdin {
            let input = Pipe()
            process.standardInput = input
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
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
                output.append(line + "\n")
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

    /// Everything the process wrote so far (stdout and stderr), for failure messages.
    var log: String { output.text }

    /// Stdout lines, in order, as they arrive. One reader at a time.
    var stdoutLines: AsyncStream<String> { lines }

    /// Waits for the `listening on http://host:port` line and returns the base URL.
    func waitUntilListening() async throws -> String {
        for await line in lines {
            if let range = line.range(of: "listening on ") {
                let address = String(line[range.upperBound...])
                return address.hasPrefix("http") ? address : "tcp://" + address
            }
        }
        throw NodeProcessError.exitedBeforeListening(arguments: arguments, log: log)
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

    var description: String {
        switch self {
        case .exitedBeforeListening(let arguments, let log): "replog \(arguments) exited before listening:\n\(log)"
        case .didNotExit(let arguments, let log): "replog \(arguments) did not exit:\n\(log)"
        }
    }
}

/// Text collected from a child's pipes (stdout and stderr), shared with the pipe handlers.
final class OutputBuffer: Sendable {
    private let storage = Mutex("")
    private let openPipes = Atomic(2)
    func append(_ text: String) { storage.withLock { $0 += text } }
    var text: String { storage.withLock { $0 } }
    /// A pipe reached end of file.
    func pipeClosed() { openPipes.subtract(1, ordering: .sequentiallyConsistent) }
    var allPipesClosed: Bool { openPipes.load(ordering: .sequentiallyConsistent) == 0 }
}

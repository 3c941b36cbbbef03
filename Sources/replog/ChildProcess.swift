import Foundation
import Synchronization

/// A `replog` node started by `replog cluster`: its output is shown line by line with
/// a name in front (like docker-compose), and its "listening on" line tells us it is up.
final class ChildProcess: Sendable {
    enum Event: Sendable {
        case listening(url: String)
        case exited(status: Int32)
    }

    let name: String
    let port: Int
    let arguments: [String]
    private let process: Process
    /// The node's standard input; we keep its write end open for as long as we live.
    private let stdin = Pipe()
    let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    init(name: String, port: Int, arguments: [String]) {
        self.name = name
        self.port = port
        self.arguments = arguments
        self.process = Process()
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func start() throws {
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        // Not in `arguments`, which the banner prints for pasting into a terminal.
        process.arguments = arguments + ["--stop-on-stdin-eof"]
        // Nothing is ever written: the pipe closes when this process ends, however it ends.
        process.standardInput = stdin
        // A node is configured by its flags alone: REPLOG_* variables meant for `replog
        // cluster` (REPLOG_DELAY is for the last secondary only) must not reach every node.
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("REPLOG_") }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        let prefix = name.padding(toLength: 7, withPad: " ", startingAt: 0) + "| "
        let continuation = self.continuation
        Self.forwardLines(of: stdout, prefix: prefix) { line in
            if let range = line.range(of: "listening on ") {
                continuation.yield(.listening(url: String(line[range.upperBound...])))
            }
        }
        Self.forwardLines(of: stderr, prefix: prefix) { _ in }
        process.terminationHandler = { process in
            continuation.yield(.exited(status: process.terminationStatus))
            continuation.finish()
        }
        try process.run()
    }

    func terminate() {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
    }

    /// Copies each complete line of `pipe` to our stderr with `prefix`, and hands it to `onLine`.
    private static func forwardLines(of pipe: Pipe, prefix: String, onLine: @escaping @Sendable (String) -> Void) {
        let pending = Mutex(Data())
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let chunk = handle.availableData
            if chunk.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            let lines = pending.withLock { pending -> [String] in
                pending.append(chunk)
                var lines: [String] = []
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...newline)
                }
                return lines
            }
            for line in lines {
                FileHandle.standardError.write(Data((prefix + line + "\n").utf8))
                onLine(line)
            }
        }
    }
}

import Foundation
import ReplogProcess

/// A `replog` node started by `replog cluster`: its output is shown line by line with its
/// name in front (like docker-compose), and its "listening on" line tells us it is up.
final class ClusterNode: Sendable {
    let name: String
    let port: Int
    /// The node's flags, as the banner prints them for a restart by hand.
    let arguments: [String]
    let process: ChildProcess

    /// Starts the node; it stops when this process ends, however it ends.
    init(name: String, port: Int, arguments: [String], executable: String) async throws {
        self.name = name
        self.port = port
        self.arguments = arguments
        let prefix = name.padding(toLength: 7, withPad: " ", startingAt: 0) + "| "
        // A node is configured by its flags alone: REPLOG_* variables meant for `replog
        // cluster` (REPLOG_DELAY is for the last secondary only) must not reach every node.
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("REPLOG_") }
        process = try await ChildProcess(
            executable: executable, arguments: arguments + ["--stop-on-stdin-eof"], environment: environment,
            input: .heldOpen, echo: { line, _ in FileHandle.standardError.write(Data((prefix + line + "\n").utf8)) })
    }

    var pid: Int32 { process.pid }

    /// Waits for the node's `listening on` line: `nil` once it listens, or why it did not.
    func waitUntilListening(within limit: Duration) async -> String? {
        let lines = process.lines
        return await withTaskGroup(of: String?.self) { group in
            group.addTask {
                for await line in lines where line.contains("listening on ") { return nil }
                return "exited before listening (is port \(self.port) free?)"
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return "did not start listening within \(limit.components.seconds) s"
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
    }
}

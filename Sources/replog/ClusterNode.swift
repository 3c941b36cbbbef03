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
                if let holder = processListening(on: self.port) {
                    return "exited before listening: port \(self.port) is taken by \(holder)"
                }
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

/// Which process listens on a TCP port, when this system can tell (Linux: `/proc`), as
/// "pid N (command line)"; nil otherwise. For the message when a node's port is taken.
func processListening(on port: Int) -> String? {
    #if os(Linux)
    // /proc/net/tcp{,6}: "sl local_address rem_address st … inode"; LISTEN is state 0A.
    let hexPort = String(format: "%04X", port)
    var inodes: Set<String> = []
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // Read to the end: a procfs file reports size 0, and a busy machine's socket table is
        // longer than one read (a single read missed the holder when other tests had many sockets open).
        guard let handle = FileHandle(forReadingAtPath: table), let data = try? handle.readToEnd() else { continue }
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 9, fields[1].hasSuffix(":" + hexPort), fields[3] == "0A" else { continue }
            inodes.insert(String(fields[9]))
        }
    }
    guard !inodes.isEmpty, let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
    for pid in pids where Int(pid) != nil {
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        for descriptor in descriptors {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(descriptor)"),
                  target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast()))
            else { continue }
            let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?
                .split(separator: "\0").joined(separator: " ") ?? "?"
            return "pid \(pid) (\(commandLine))"
        }
    }
    return nil
    #else
    return nil
    #endif
}

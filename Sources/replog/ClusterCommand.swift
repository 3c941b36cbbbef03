import ArgumentParser
import Foundation
import ReplogNode
import ReplogStorage
import UnixSignals

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Start a master and secondaries on this machine as separate processes; Ctrl-C stops them all.",
        discussion: """
            The master listens on --port and the secondaries on the ports after it (5000, 5001, 5002 by default).
            Each node is a real `replog` process: kill one by its PID to watch the master notice, and restart it
            with the command the banner prints to watch it catch up.
            """)

    @Option(help: "Number of secondaries. Env: REPLOG_CLUSTER_SECONDARIES.")
    var secondaries: Int = Environment.int("REPLOG_CLUSTER_SECONDARIES") ?? 2

    @Option(help: "Address every node binds. Env: REPLOG_HOST.")
    var host: String = Environment.string("REPLOG_HOST") ?? "127.0.0.1"

    @Option(help: "The master's port; secondary i listens on port + i. Env: REPLOG_PORT.")
    var port: Int = Environment.int("REPLOG_PORT") ?? 5000

    @Option(help: "Replication delay of the last secondary, e.g. 2s, to watch replicas disagree and converge. Env: REPLOG_DELAY.")
    var delay: DurationArgument = Environment.duration("REPLOG_DELAY") ?? DurationArgument("0")

    @Option(help: "Probability (0...1) that each secondary answers 500 after storing. Env: REPLOG_ERROR_RATE.")
    var errorRate: Double = Environment.double("REPLOG_ERROR_RATE") ?? 0

    @Option(help: "Folder for the nodes' logs (one subfolder per node); they survive restarts. Env: REPLOG_DATA_DIR.")
    var dataDir: String = Environment.string("REPLOG_DATA_DIR") ?? "replog-data"

    @Flag(inversion: .prefixedNo, help: "Keep every log in memory instead (the course's behaviour: a restart starts empty). Env: REPLOG_IN_MEMORY=1.")
    var inMemory = Environment.bool("REPLOG_IN_MEMORY") ?? false

    @Option(help: "always, interval or never: when nodes flush their logs to disk. Env: REPLOG_FSYNC.")
    var fsync: FsyncPolicy = Environment.string("REPLOG_FSYNC").flatMap(FsyncPolicy.init(rawValue:)) ?? .always

    @Option(help: "Log level of every node. Env: REPLOG_LOG_LEVEL.")
    var logLevel: String = Environment.string("REPLOG_LOG_LEVEL") ?? "info"

    @OptionGroup var retain: RetentionOptions

    func validate() throws {
        guard (0...16).contains(secondaries) else { throw ValidationError("--secondaries must be 0...16") }
    }

    /// How long a node may take to say it listens.
    static let startTimeout: Duration = .seconds(30)

    func run() async throws {
        // The binary that is running now, so that the nodes and the restart commands in the
        // banner are this very build.
        guard let executable = Bundle.main.executableURL?.resolvingSymlinksInPath().path else {
            throw fail("cannot tell where the replog executable is")
        }
        let secretArguments = ["--cluster-secret-file", try clusterSecretFile()]
        var plans: [(name: String, port: Int, arguments: [String])] = []
        var secondaryURLs: [String] = []
        for index in 1...max(secondaries, 1) where secondaries > 0 {
            var arguments = ["secondary", "--host", host, "--port", "\(port + index)", "--log-level", logLevel,
                             "--error-rate", "\(errorRate)"]
            if index == secondaries { arguments += ["--delay", delay.description] }
            arguments += storageArguments(node: "s\(index)") + secretArguments
            plans.append(("s\(index)", port + index, arguments))
            secondaryURLs.append("http://\(host):\(port + index)")
        }
        plans.insert(
            ("master", port, ["master", "--host", host, "--port", "\(port)", "--log-level", logLevel]
                + secondaryURLs.flatMap { ["--secondary", $0] } + storageArguments(node: "master") + failoverArguments
                + secretArguments),
            at: 0)

        var nodes: [ClusterNode] = []
        for plan in plans {
            nodes.append(try await ClusterNode(name: plan.name, port: plan.port, arguments: plan.arguments, executable: executable))
        }
        for node in nodes {
            // Bounded: a node that neither listens nor exits must not leave the cluster
            // waiting in silence.
            if let problem = await node.waitUntilListening(within: Self.startTimeout) {
                for other in nodes { other.process.signal(SIGTERM) }
                for other in nodes { _ = await other.process.waitForExit() }
                throw fail("\(node.name) \(problem)")
            }
        }

        let here = FileManager.default.currentDirectoryPath + "/"
        let shown = executable.hasPrefix(here) ? "./" + executable.dropFirst(here.count) : executable
        var banner = ["", "replog cluster is up. Ctrl-C stops every node.", ""]
        for node in nodes {
            banner.append("  \(node.name.padding(toLength: 7, withPad: " ", startingAt: 0)) http://\(host):\(node.port)  pid \(node.pid)")
        }
        banner += [
            "",
            inMemory
                ? "Logs live in memory: a restarted node starts empty."
                : "Logs are kept in \(absoluteDataDir)/ (one folder per node; delete it to start afresh).",
            "",
            "Try:",
            "  curl -L -X POST http://localhost:\(port)/messages -H 'Content-Type: application/json' -d '{\"message\": \"hello\", \"w\": 2}'",
            "  curl http://localhost:\(port)/messages",
            "  curl http://localhost:\(port)/health",
        ]
        if !inMemory {
            banner += [
                "Kill the master (kill -9 PID): the secondaries elect a new one within about two seconds, and",
                "`curl -L` appends through any node. Restarted, the old master rejoins as a secondary.",
            ]
        }
        banner += [
            "Kill a node (kill -9 PID) and restart it by hand to watch catch-up, with its own command:",
        ]
        for node in nodes {
            banner.append("  \(node.name.padding(toLength: 7, withPad: " ", startingAt: 0)) \(shown) \(node.arguments.joined(separator: " "))")
        }
        banner += [
            "A node restarted by hand runs in your terminal, not under this cluster: Ctrl-C here does",
            "not stop it (stop it in its own terminal before the next `replog cluster`).",
            "",
        ]
        announce(banner.joined(separator: "\n"))

        // Report nodes that die while the cluster runs (a student may kill them on purpose),
        // until Ctrl-C; then stop every node and wait for each.
        await withTaskGroup(of: Void.self) { group in
            for node in nodes {
                group.addTask {
                    let status = await node.process.waitForExit()
                    announce("\(node.name) (pid \(node.pid)) exited with status \(status)")
                }
            }
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { break }
            announce("stopping every node…")
            for node in nodes.reversed() { node.process.signal(SIGTERM) }
            await group.waitForAll()
        }
    }

    private var absoluteDataDir: String {
        URL(fileURLWithPath: dataDir, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
    }

    /// The cluster's secret, in a file only its owner can read: made once and kept beside the
    /// logs (or in the temporary folder for an in-memory cluster), so that nodes restarted by
    /// hand with their banner command prove the same secret. Its path, never the secret
    /// itself, goes on the nodes' command lines, which `ps` shows.
    private func clusterSecretFile() throws -> String {
        let folder = inMemory ? FileManager.default.temporaryDirectory.path.replacingOccurrences(of: "/$", with: "", options: .regularExpression) : absoluteDataDir
        let path = folder + (inMemory ? "/replog-cluster-\(port).secret" : "/cluster-secret")
        if let existing = try? String(contentsOfFile: path, encoding: .utf8), ClusterSecret(existing.trimmingCharacters(in: .whitespacesAndNewlines)) != nil {
            return path
        }
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        guard FileManager.default.createFile(
            atPath: path, contents: Data((ClusterSecret.random() + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else { throw fail("cannot write the cluster secret to \(path)") }
        return path
    }

    /// Failover needs every node to keep its log and votes: on unless the cluster is in memory.
    private var failoverArguments: [String] { inMemory ? [] : ["--failover"] }

    private func storageArguments(node: String) -> [String] {
        (inMemory ? [] : ["--data-dir", absoluteDataDir + "/" + node, "--fsync", fsync.rawValue]) + retain.childArguments
    }

}

import Foundation
import ReplogTestKit
import Testing

/// `replog cluster`, the README's first command: it starts real nodes that replicate, takes
/// its settings from flags or the environment, and leaves no node behind when stopped.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct ClusterProcessTests {
    /// A node as the banner lists it.
    struct Node {
        let name: String
        let url: String
        let pid: Int32
    }

    /// Starts `replog cluster ARGUMENTS` and reads its banner up to the first hint.
    private func startCluster(_ arguments: [String], environment: [String: String] = [:]) async throws -> (NodeProcess, [Node]) {
        let cluster = try await NodeProcess(["cluster"] + arguments, environment: environment)
        var nodes: [Node] = []
        var up = false
        for await line in cluster.stdoutLines {
            if line.contains("replog cluster is up") { up = true }
            // "  master  http://127.0.0.1:5000  pid 1234"
            let words = line.split(separator: " ")
            if up, words.count == 4, words[2] == "pid", let pid = Int32(words[3]) {
                nodes.append(Node(name: String(words[0]), url: String(words[1]), pid: pid))
            }
            if up, line.hasPrefix("Try:") { break }
        }
        // Required, not expected: the tests index the nodes, and a crash would end the whole run.
        try #require(up, "no banner (stdout ended while the cluster was \(cluster.isRunning ? "running" : "gone")): \(cluster.log)")
        return (cluster, nodes)
    }

    private func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }  // signal 0: only asks

    @Test func startsNodesThatReplicateAndStopsEveryOne() async throws {
        let port = try freePorts(3)
        let (cluster, nodes) = try await startCluster(["--port", "\(port)", "--in-memory", "--log-level", "warning"])
        #expect(nodes.map(\.name) == ["master", "s1", "s2"], "\(cluster.log)")
        #expect(nodes.map(\.url) == (0..<3).map { "http://127.0.0.1:\(port + $0)" })

        let reply = try await HTTP.post(nodes[0].url + "/messages", ["message": "from the README", "w": 3])
        #expect(reply.status == 201, "\(reply.text)")
        for node in nodes {
            #expect(try await HTTP.messages(node.url) == [.init(seq: 1, message: "from the README")], "\(node.name)")
        }

        // Its nodes share a secret that it made by itself: the forged delivery of issue 18
        // is refused, and the secret is on no command line that `ps` shows.
        let entry: [String: any Sendable] = ["seq": 2, "message": "FORGED"]
        let forged = try await HTTP.post(nodes[1].url + "/replicate", ["log": "L", "entries": [entry]])
        #expect(forged.status == 401, "\(forged.text)")
        let temporary = FileManager.default.temporaryDirectory.path.replacingOccurrences(of: "/$", with: "", options: .regularExpression)
        let secretFile = temporary + "/replog-cluster-\(port).secret"
        let secret = try String(contentsOfFile: secretFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.count == 64)
        for node in nodes {
            let commandLine = (try? String(contentsOfFile: "/proc/\(node.pid)/cmdline", encoding: .utf8)) ?? ""
            #expect(commandLine.contains("--cluster-secret-file") && !commandLine.contains(secret), "\(node.name)")
        }
        // Nor in what any node shows or logs.
        for node in nodes {
            for path in ["/health", "/metrics", "/"] {
                #expect(try await !HTTP.get(node.url + path).text.contains(secret), "\(node.name)\(path)")
            }
        }

        cluster.signal(SIGTERM)
        #expect(try await cluster.waitForExit() == 0, "\(cluster.log)")
        #expect(!cluster.log.contains(secret), "the secret is in the cluster's output")
        for node in nodes { #expect(!isAlive(node.pid), "\(node.name) (pid \(node.pid)) outlived the cluster") }
    }

    /// Even `kill -9` of the cluster, which cannot stop anything itself, leaves no node
    /// behind: each node sees its standard input close and shuts down.
    @Test func nodesStopWhenTheClusterIsKilled() async throws {
        let port = try freePorts(3)
        let (cluster, nodes) = try await startCluster(["--port", "\(port)", "--in-memory", "--log-level", "warning"])
        #expect(nodes.count == 3, "\(cluster.log)")
        cluster.signal(SIGKILL)
        _ = try await cluster.waitForExit()
        for node in nodes {
            try await eventually(within: .seconds(15), "\(node.name) (pid \(node.pid)) has stopped") { !isAlive(node.pid) }
        }
    }

    /// A port already in use stops the cluster with the node and port named, and no node
    /// that did start is left running.
    @Test func aTakenPortStopsTheClusterWithTheReason() async throws {
        let port = try freePorts(3)
        let squatter = try await NodeProcess(["secondary", "--port", "\(port + 1)"])
        _ = try await squatter.waitUntilListening()
        let cluster = try await NodeProcess(["cluster", "--port", "\(port)", "--in-memory", "--log-level", "warning"])
        #expect(try await cluster.waitForExit() != 0, "\(cluster.log)")
        // It names the process that holds the port, so that a node restarted by hand and
        // forgotten is easy to find.
        #expect(cluster.log.contains("s1 exited before listening: port \(port + 1) is taken by pid \(squatter.pid) ("), "\(cluster.log)")
        for node in [port, port + 2] {
            try await eventually(within: .seconds(15), "the node on port \(node) has stopped") { !isListening(port: node) }
        }
    }

    @Test func takesItsSettingsFromTheEnvironment() async throws {
        let port = try freePorts(4)
        let (cluster, nodes) = try await startCluster([], environment: [
            "REPLOG_PORT": "\(port)", "REPLOG_CLUSTER_SECONDARIES": "3", "REPLOG_IN_MEMORY": "1",
            "REPLOG_DELAY": "1500ms", "REPLOG_LOG_LEVEL": "warning",
        ])
        #expect(nodes.map(\.name) == ["master", "s1", "s2", "s3"], "\(cluster.log)")
        // REPLOG_DELAY is the cluster's: only the last secondary is delayed, not every node
        // that would inherit the variable.
        var delays: [Int] = []
        for node in nodes.dropFirst() {
            delays.append(try await HTTP.get(node.url + "/health").json["delayMs"] as? Int ?? -1)
        }
        #expect(delays == [0, 0, 1500])

        cluster.signal(SIGTERM)
        #expect(try await cluster.waitForExit() == 0, "\(cluster.log)")
        for node in nodes { #expect(!isAlive(node.pid), "\(node.name) (pid \(node.pid)) outlived the cluster") }
    }
}

import Foundation
import NIOCore
import ReplogCore
import ReplogTestKit
import Testing

/// A bounded chaos run against real processes: concurrent clients append while a nemesis
/// kills (-9) and restarts nodes, freezes them (SIGSTOP/SIGCONT), partitions the master
/// from a secondary and slows links (through a TCP proxy in front of each secondary). The
/// recorded history is then checked by the same checker as the simulation.
///
/// `REPLOG_CHAOS_SECONDS` sets the length (default 20 in the quick run, 60 in the deep run:
/// `TestDepth`), `REPLOG_CHAOS_SEED` the nemesis seed. The time limit only ends a hang: the
/// deep run's 60 s took 64 s on a busy machine, healing and convergence included.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct ChaosTests {
    static let environment = ProcessInfo.processInfo.environment

    /// One node: how to (re)start it, and the running process.
    final class Node: Sendable {
        let name: String
        let port: Int
        let arguments: [String]
        let cluster: LocalCluster
        private let current = Locked<NodeProcess?>(nil)

        init(name: String, port: Int, arguments: [String], cluster: LocalCluster) {
            (self.name, self.port, self.arguments, self.cluster) = (name, port, arguments, cluster)
        }

        /// Starts `arguments` with `--port 0` the first time (a port named in advance can be
        /// taken by another test in between), and the port it got on every restart.
        static func launch(_ name: String, _ arguments: [String], cluster: LocalCluster) async throws -> Node {
            let (process, url) = try await cluster.start([arguments[0], "--port", "0"] + arguments.dropFirst())
            let port = try #require(Int(url.split(separator: ":").last ?? ""), "\(url)")
            let node = Node(name: name, port: port, arguments: [arguments[0], "--port", "\(port)"] + arguments.dropFirst(), cluster: cluster)
            node.current.withLock { $0 = process }
            return node
        }

        var url: String { "http://127.0.0.1:\(port)" }
        var process: NodeProcess? { current.withLock { $0 } }

        func start() async throws {
            let (process, _) = try await cluster.start(arguments)
            current.withLock { $0 = process }
        }

        func kill9() async throws {
            guard let process else { return }
            process.signal(SIGCONT)
            process.signal(SIGKILL)
            _ = try await process.waitForExit()
        }
    }

    @Test func historyUnderANemesisPassesTheChecker() async throws {
        let seconds = TestDepth.count("REPLOG_CHAOS_SECONDS", quick: 20, deep: 60)
        let seed = Self.environment["REPLOG_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0..<1_000_000)
        print("chaos: \(seconds) s, seed \(seed) (REPLOG_CHAOS_SEED=\(seed) replays the nemesis's choices)")
        let random = Locked(SplitMix64(seed: seed))
        let cluster = LocalCluster()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("replog-chaos-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }

        var nodes: [Node] = []
        var links: [FaultProxy] = []
        for name in ["s1", "s2"] {
            let node = try await Node.launch(name, ["secondary", "--data-dir", "\(root)/\(name)", "--log-level", "info"], cluster: cluster)
            nodes.append(node)
            links.append(try await FaultProxy(forwardingTo: node.port))
        }
        let (secondaries, proxies) = (nodes, links)
        let master = try await Node.launch(
            "master",
            ["master", "--data-dir", "\(root)/master", "--log-level", "info",
             "--heartbeat-interval", "200ms", "--suspect-after", "2", "--unhealthy-after", "4", "--replication-timeout", "2s"]
                + proxies.flatMap { ["--secondary", "http://127.0.0.1:\($0.port)"] },
            cluster: cluster)
        defer { proxies.forEach { $0.stop() } }

        let history = Locked<[HistoryChecker.Record]>([])
        let faults = Locked<[String]>([])
        let deadline = ContinuousClock.now + .seconds(seconds)

        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<4 {
                group.addTask {
                    var index = 0
                    while ContinuousClock.now < deadline {
                        index += 1
                        let message = "c\(client)-\(index)"
                        let (w, timeout, id) = random.withLock { generator in
                            ([1, 2, 3, nil][Int(generator.next() % 4)], generator.next() % 2 == 0 ? Int(200 + generator.next() % 1800) : nil,
                             generator.next() % 3 == 0 ? "id-\(message)" : nil)
                        }
                        var body: [String: any Sendable] = ["message": message]
                        if let w { body["w"] = w }
                        if let timeout { body["timeout"] = timeout }
                        if let id { body["id"] = id }
                        var outcome = await Self.append(master.url, body)
                        history.withLock { $0.append(.init(message: message, outcome: outcome)) }
                        // A client that does not know what happened retries with its id.
                        if id != nil, outcome == .unknown, ContinuousClock.now < deadline {
                            try? await Task.sleep(for: .milliseconds(100))
                            // The master keeps its ids in its data folder: a retry across a
                            // restart appends nothing either, so no duplicate is forgiven.
                            outcome = await Self.append(master.url, body)
                            history.withLock { $0.append(.init(message: message, outcome: outcome)) }
                        }
                        if case .ok = outcome {} else { try? await Task.sleep(for: .milliseconds(20)) }  // no busy loop while the master is down
                    }
                }
            }
            group.addTask {
                while ContinuousClock.now < deadline {
                    let (pause, action, which, length) = random.withLock { generator in
                        (Int(300 + generator.next() % 1200), Int(generator.next() % 5), Int(generator.next() % 2), Int(300 + generator.next() % 2000))
                    }
                    try await Task.sleep(for: .milliseconds(pause))
                    let secondary = secondaries[which]
                    let proxy = proxies[which]
                    switch action {
                    case 0:
                        faults.withLock { $0.append("kill -9 \(secondary.name) for \(length) ms") }
                        try await secondary.kill9()
                        try await Task.sleep(for: .milliseconds(length))
                        try await secondary.start()
                    case 1:
                        faults.withLock { $0.append("kill -9 master for \(length / 4) ms") }
                        try await master.kill9()
                        try await Task.sleep(for: .milliseconds(length / 4))
                        try await master.start()
                    case 2:
                        faults.withLock { $0.append("SIGSTOP \(secondary.name) for \(length) ms") }
                        secondary.process?.signal(SIGSTOP)
                        try await Task.sleep(for: .milliseconds(length))
                        secondary.process?.signal(SIGCONT)
                    case 3:
                        faults.withLock { $0.append("partition master | \(secondary.name) for \(length) ms") }
                        proxy.set(.partition)
                        try await Task.sleep(for: .milliseconds(length))
                        proxy.set(.pass)
                    default:
                        let delay = Int64(20 + length % 300)
                        faults.withLock { $0.append("slow link to \(secondary.name) by \(delay) ms for \(length) ms") }
                        proxy.set(.delay(.milliseconds(delay)))
                        try await Task.sleep(for: .milliseconds(length))
                        proxy.set(.pass)
                    }
                }
            }
            try await group.waitForAll()
        }

        // Heal, then let every node converge: a w=3 append is answered only when both
        // secondaries hold everything before it.
        proxies.forEach { $0.set(.pass) }
        for node in secondaries + [master] { node.process?.signal(SIGCONT) }
        guard try await Self.barrier(through: master.url, history: history, cluster: cluster) else { return }
        let logs = try await Self.logs(of: [master] + secondaries)
        // The hash chains agree as well as the lists: after the barrier every node holds the
        // same seqs and shows the same hash there, and the master took none for diverged.
        var hashes: [String] = []
        for node in [master] + secondaries {
            let health = try await HTTP.get(node.url + "/health").json
            hashes.append("\(health["seq"] as? Int ?? -1):\(health["hash"] as? String ?? "none")")
            for secondary in health["secondaries"] as? [[String: any Sendable]] ?? [] {
                #expect((secondary["problem"] as? String)?.hasPrefix("diverged") != true, "\(secondary)")
            }
        }
        #expect(Set(hashes).count == 1 && !hashes[0].hasSuffix(":none"), "seq:hash per node: \(hashes)")
        let records = history.withLock { $0 }
        let violations = HistoryChecker.check(records, logs: logs)
        let acknowledged = records.count { if case .ok = $0.outcome { true } else { false } }
        print("chaos: \(records.count) appends (\(acknowledged) acknowledged), \(faults.withLock { $0.count }) faults, log of \(logs[0].log.count) entries, \(violations.count) violations")
        for fault in faults.withLock({ $0 }) { print("  fault: \(fault)") }
        #expect(acknowledged > 0, "no append succeeded")
        #expect(violations.isEmpty, "seed \(seed):\n\(violations.joined(separator: "\n"))")
    }

    /// The same with failover: three nodes on fixed ports; the nemesis kills (-9) and
    /// freezes (SIGSTOP) the master most of all, and any node; clients append through any
    /// node, following its `307` to the master. A `201` with `w` of a majority must survive
    /// every failover at its seq; one with `w=1` may be cut (recorded as "unknown").
    ///
    /// `REPLOG_FAILOVER_CHAOS_SECONDS` sets the length (default 15 in the quick run, 30 in the
    /// deep run).
    @Test func failoverHistoryUnderANemesisPassesTheChecker() async throws {
        let seconds = TestDepth.count("REPLOG_FAILOVER_CHAOS_SECONDS", quick: 15, deep: 30)
        let seed = Self.environment["REPLOG_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0..<1_000_000)
        print("failover chaos: \(seconds) s, seed \(seed)")
        let random = Locked(SplitMix64(seed: seed))
        let cluster = LocalCluster()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("replog-failover-chaos-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try freePorts(3)
        let urls = (0..<3).map { "http://127.0.0.1:\(first + $0)" }
        let fast = ["--log-level", "info", "--heartbeat-interval", "100ms", "--election-timeout", "300ms"]
        let commands = [
            ["master", "--port", "\(first)", "--failover", "--data-dir", "\(root)/n0", "--secondary", urls[1], "--secondary", urls[2]] + fast,
            ["secondary", "--port", "\(first + 1)", "--data-dir", "\(root)/n1"] + fast,
            ["secondary", "--port", "\(first + 2)", "--data-dir", "\(root)/n2"] + fast,
        ]
        let nodes = (0..<3).map { Node(name: "n\($0)", port: first + $0, arguments: commands[$0], cluster: cluster) }
        for index in [1, 2, 0] { try await nodes[index].start() }

        let history = Locked<[HistoryChecker.Record]>([])
        let batches = Locked<[[String]]>([])
        let faults = Locked<[String]>([])
        let deadline = ContinuousClock.now + .seconds(seconds)
        /// Whom `/health` on any live node names as master (the nemesis's favourite target).
        @Sendable func currentMaster() async -> Int? {
            for url in urls {
                if let master = (try? await HTTP.get(url + "/health"))?.json["master"] as? String, let index = urls.firstIndex(of: master) {
                    return index
                }
            }
            return nil
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<4 {
                group.addTask {
                    var index = 0
                    while ContinuousClock.now < deadline {
                        index += 1
                        let message = "c\(client)-\(index)"
                        let (w, node, id, isBatch) = random.withLock { generator in
                            ([1, 2, 3, 2][Int(generator.next() % 4)], Int(generator.next() % 3), generator.next() % 2 == 0 ? "id-\(message)" : nil,
                             generator.next() % 4 == 0)
                        }
                        // One append in four is a batch of three: all of it or none, in every log.
                        let messages = isBatch ? (1...3).map { "\(message).\($0)" } : [message]
                        var body: [String: any Sendable] = ["w": w, "timeout": 2000]
                        if isBatch {
                            body["messages"] = messages
                            batches.withLock { $0.append(messages) }
                        } else {
                            body["message"] = message
                        }
                        if let id { body["id"] = id }
                        @Sendable func record(_ outcome: HistoryChecker.Outcome) {
                            history.withLock { history in
                                for (offset, each) in messages.enumerated() {
                                    let shifted = if case .ok(let first) = outcome { HistoryChecker.Outcome.ok(seq: first + offset) } else { outcome }
                                    history.append(.init(message: each, outcome: shifted))
                                }
                            }
                        }
                        var outcome = await Self.append(urls[node], body, timeout: .seconds(3))
                        // A w=1 write may be cut in a failover: the client only knows it was taken.
                        if w < 2, case .ok = outcome { outcome = .unknown }
                        record(outcome)
                        if id != nil, outcome == .unknown, w >= 2, ContinuousClock.now < deadline {
                            try? await Task.sleep(for: .milliseconds(100))
                            outcome = await Self.append(urls[(node + 1) % 3], body, timeout: .seconds(3))
                            record(outcome)
                        }
                        if case .ok = outcome {} else { try? await Task.sleep(for: .milliseconds(20)) }
                    }
                }
            }
            group.addTask {
                while ContinuousClock.now < deadline {
                    let (pause, action, any, length) = random.withLock { generator in
                        (Int(500 + generator.next() % 1500), Int(generator.next() % 2), Int(generator.next() % 3), Int(200 + generator.next() % 1500))
                    }
                    try await Task.sleep(for: .milliseconds(pause))
                    // Two faults in three strike the master.
                    let target = any == 0 ? Int(random.withLock { $0.next() % 3 }) : (await currentMaster() ?? 0)
                    let node = nodes[target]
                    if action == 0 {
                        faults.withLock { $0.append("kill -9 \(node.name) for \(length) ms") }
                        try await node.kill9()
                        try await Task.sleep(for: .milliseconds(length))
                        try await node.start()
                    } else {
                        faults.withLock { $0.append("SIGSTOP \(node.name) for \(length) ms") }
                        node.process?.signal(SIGSTOP)
                        try await Task.sleep(for: .milliseconds(length))
                        node.process?.signal(SIGCONT)
                    }
                }
            }
            try await group.waitForAll()
        }

        for node in nodes { node.process?.signal(SIGCONT) }
        guard try await Self.barrier(through: urls[0], history: history, cluster: cluster) else { return }
        let logs = try await Self.logs(of: nodes)
        var views: [String] = []
        for node in nodes {
            let health = try await HTTP.get(node.url + "/health").json
            views.append("\(health["epoch"] as? Int ?? -1):\(health["master"] as? String ?? "none"):\(health["seq"] as? Int ?? -1):\(health["hash"] as? String ?? "none")")
        }
        #expect(Set(views).count == 1, "epoch:master:seq:hash per node: \(views)")
        let records = history.withLock { $0 }
        let violations = HistoryChecker.check(records, logs: logs) + HistoryChecker.checkBatches(batches.withLock { $0 }, logs: logs)
        let acknowledged = records.count { if case .ok = $0.outcome { true } else { false } }
        let epoch = views.first.flatMap { Int($0.split(separator: ":").first ?? "") } ?? 0
        print("failover chaos: \(records.count) messages appended (\(batches.withLock { $0.count }) batches of 3; \(acknowledged) acknowledged with w >= 2), \(faults.withLock { $0.count }) faults, epoch \(epoch) at the end, log of \(logs[0].log.count) entries, \(violations.count) violations")
        for fault in faults.withLock({ $0 }) { print("  fault: \(fault)") }
        #expect(acknowledged > 0, "no append succeeded")
        #expect(epoch > 1, "the nemesis made no failover happen")
        #expect(violations.isEmpty, "seed \(seed):\n\(violations.joined(separator: "\n"))\n\(cluster.logs)")
    }

    /// After the faults: appends a `w=3` barrier (through `url`, following a `307`) until it
    /// is answered, when every node holds everything before it; false (and an issue) if the
    /// cluster does not converge within 60 s.
    static func barrier(through url: String, history: Locked<[HistoryChecker.Record]>, cluster: LocalCluster) async throws -> Bool {
        var barrier = HistoryChecker.Outcome.unknown
        let settle = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < settle {
            barrier = await append(url, ["message": "barrier", "w": 3, "id": "barrier", "timeout": 5000], timeout: .seconds(6))
            if case .ok = barrier { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        history.withLock { $0.append(.init(message: "barrier", outcome: barrier)) }
        guard case .ok = barrier else {
            Issue.record("the cluster did not converge within 60 s after the faults\n\(cluster.logs)")
            return false
        }
        return true
    }

    /// Every node's log (all it holds: `read=local`), by name, for the checker.
    static func logs(of nodes: [Node]) async throws -> [(node: String, log: [LogEntry])] {
        var logs: [(node: String, log: [LogEntry])] = []
        for node in nodes {
            logs.append((node.name, try await HTTP.messages(node.url, read: "local").map { LogEntry(seq: $0.seq, message: $0.message) }))
        }
        return logs
    }

    /// One append; what the client can tell about it.
    static func append(_ master: String, _ body: [String: any Sendable], timeout: Duration = .seconds(60)) async -> HistoryChecker.Outcome {
        guard let reply = try? await HTTP.post(master + "/messages", body, timeout: timeout) else { return .unknown }
        switch reply.status {
        case 201: return (reply.json["seq"] as? Int ?? reply.json["firstSeq"] as? Int).map { .ok(seq: $0) } ?? .unknown
        case 400, 413, 415: return .refused
        case 503 where (reply.json["error"] as? String)?.hasPrefix("no quorum") == true: return .refused
        case 503 where (reply.json["error"] as? String)?.hasPrefix("no master") == true: return .refused
        default: return .unknown  // 504, 503 shutting down, 500
        }
    }
}

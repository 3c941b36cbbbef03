import Foundation
import ReplogTestKit
import Testing

/// Automatic failover with real `replog` processes: `kill -9` the master, and the
/// secondaries elect a new one that holds every acknowledged write; the old master comes
/// back as a secondary and cuts what no majority kept (to its `rollback/` folder), which
/// its readers were never shown.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct FailoverProcessTests {
    static let fast = ["--heartbeat-interval", "100ms", "--election-timeout", "300ms"]

    /// Three nodes with failover on fixed ports (members must be named before they start).
    struct Cluster {
        let processes = LocalCluster()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-failover-\(UUID().uuidString)")
        let ports: [Int]
        var urls: [String] { ports.map { "http://127.0.0.1:\($0)" } }

        init() throws {
            let first = try freePorts(3)
            ports = Array(first..<(first + 3))
        }

        /// The command line of node `index` (0 is started as master), as a user would type it.
        func arguments(_ index: Int) -> [String] {
            let storage = ["--data-dir", folder.appendingPathComponent("n\(index)").path, "--log-level", "debug"] + FailoverProcessTests.fast
            guard index == 0 else { return ["secondary", "--port", "\(ports[index])"] + storage }
            return ["master", "--port", "\(ports[0])", "--failover", "--secondary", urls[1], "--secondary", urls[2]] + storage
        }

        @discardableResult
        func start(_ index: Int) async throws -> NodeProcess {
            try await processes.start(arguments(index)).process
        }

        /// Role, epoch and master as node `url` shows them in `/health`.
        func view(_ url: String) async -> (role: String?, epoch: Int?, master: String?) {
            guard let health = try? await HTTP.get(url + "/health").json else { return (nil, nil, nil) }
            return (health["role"] as? String, health["epoch"] as? Int, health["master"] as? String)
        }
    }

    @Test func killingTheMasterElectsAnotherThatHoldsEveryAcknowledgedWriteAndTheOldOneRejoins() async throws {
        let cluster = try Cluster()
        defer { try? FileManager.default.removeItem(at: cluster.folder) }
        try await cluster.start(1)
        try await cluster.start(2)
        let first = try await cluster.start(0)
        for index in 1...5 {
            let reply = try await HTTP.post(cluster.urls[0] + "/messages", ["message": "m\(index)", "w": 2, "id": "key-\(index)"])
            #expect(reply.status == 201, "\(reply.text)")
        }
        #expect(await cluster.view(cluster.urls[0]) == ("master", 1, cluster.urls[0]))

        // Readers waiting on both secondaries: one of them becomes master meanwhile, and its
        // reader must be woken by the new role (one watch per node, not per role).
        let waiting = cluster.urls.dropFirst().map { url in
            Task {
                let page = try await HTTP.get(url + "/messages?from=6&wait=30000").json["messages"] as? [[String: any Sendable]] ?? []
                return (page, ContinuousClock.now)
            }
        }
        first.signal(SIGKILL)
        _ = try await first.waitForExit()
        // The new master shows the writes the old one acknowledged once a majority holds its
        // log through its start (its takeover), before any append of its own.
        try await eventually("a new master shows the previous epoch's writes without an append of its own") {
            for url in cluster.urls.dropFirst() where await cluster.view(url).role == "master" {
                if (try? await HTTP.messages(url).map(\.message)) == (1...5).map({ "m\($0)" }) { return true }
            }
            return false
        }
        // Through a secondary, following its 307 to whoever is master now (as `curl -L` does).
        var after: HTTP.Reply?
        try await eventually("a new master takes an append through s1") {
            let reply = try? await HTTP.post(cluster.urls[1] + "/messages", ["message": "after", "w": 2, "id": "after-1"], timeout: .seconds(1))
            after = reply
            return reply?.status == 201
        }
        #expect(after?.json["seq"] as? Int == 6, "\(after?.text ?? "")")
        let answered = ContinuousClock.now
        for reader in waiting {
            let (page, returned) = try await reader.value
            #expect(page.first?["message"] as? String == "after", "a long poll across a change of role: \(page)")
            // Woken by the append, not by the end of its 30 s wait.
            #expect(returned - answered < .seconds(10), "the long poll came back \(returned - answered) after the append")
        }
        let newMaster = try #require(await cluster.view(cluster.urls[1]).master)
        #expect(newMaster != cluster.urls[0])
        // Epoch 2, or later after a split vote (both secondaries stood at once).
        let epoch = try #require(await cluster.view(newMaster).epoch)
        #expect(await cluster.view(newMaster) == ("master", epoch, newMaster) && epoch >= 2)
        let metrics = try await HTTP.get(newMaster + "/metrics").text
        #expect(metrics.contains("replog_epoch \(epoch)") && metrics.contains("replog_elections_total ") && !metrics.contains("replog_elections_total 0"), "\(metrics)")
        // Keys travel with their entries: a retry acknowledged by the old master is answered
        // by the new one with its seq, and appends nothing.
        let retry = try await HTTP.post(cluster.urls[2] + "/messages", ["message": "m3", "w": 2, "id": "key-3"])
        #expect(retry.status == 201 && retry.json["seq"] as? Int == 3, "\(retry.text)")
        let expected = (1...5).map { "m\($0)" } + ["after"]
        #expect(try await HTTP.messages(newMaster).map(\.message) == expected, "\(cluster.processes.logs)")

        // The old master, restarted with its own command line, follows the new one.
        try await cluster.start(0)
        try await eventually("the old master rejoins as a secondary and holds the log") {
            let view = await cluster.view(cluster.urls[0])
            let log = try? await HTTP.messages(cluster.urls[0]).map(\.message)
            return view.role == "secondary" && view.master == newMaster && log == expected
        }
        #expect(await cluster.view(cluster.urls[0]).epoch == epoch)
        let redirected = try await HTTP.post(cluster.urls[0] + "/messages", ["message": "via the old master", "w": 3])
        #expect(redirected.status == 201 && redirected.json["seq"] as? Int == 7, "\(redirected.text)")
        // The master's /health (and so its status page) shows the epoch each member answered in.
        try await eventually("the new master shows both members in its epoch") {
            let members = try? await HTTP.get(newMaster + "/health").json["secondaries"] as? [[String: Any]]
            return members?.count == 2 && members?.allSatisfy { $0["epoch"] as? Int == epoch } == true
        }
    }

    /// What only the master held (`w=1`) when it died is cut when it comes back, written to
    /// `rollback/` and logged; what a majority acknowledged stays.
    @Test func aDeposedMastersUnreplicatedTailIsCutToItsRollbackFolder() async throws {
        let cluster = try Cluster()
        defer { try? FileManager.default.removeItem(at: cluster.folder) }
        let s1 = try await cluster.start(1)
        let s2 = try await cluster.start(2)
        let first = try await cluster.start(0)
        #expect(try await HTTP.post(cluster.urls[0] + "/messages", ["message": "kept", "w": 3]).status == 201)
        // Both secondaries die; for a moment the master still takes w=1 appends.
        for node in [s1, s2] {
            node.signal(SIGKILL)
            _ = try await node.waitForExit()
        }
        let lone = try await HTTP.post(cluster.urls[0] + "/messages", ["message": "only on the old master", "w": 1])
        #expect(lone.status == 201, "\(lone.text)")
        // A reader of this master is never shown what only it holds: a failover takes it back.
        #expect(try await HTTP.messages(cluster.urls[0]).map(\.message) == ["kept"])
        let poll = try await HTTP.get(cluster.urls[0] + "/messages?from=2&wait=300").json["messages"] as? [Any]
        #expect(poll?.isEmpty == true, "a long poll waits for seq 2 to be committed, not to arrive")
        #expect(try await HTTP.messages(cluster.urls[0], read: "local").map(\.message) == ["kept", "only on the old master"])
        let linearizable = try await HTTP.get(cluster.urls[0] + "/messages?read=linearizable")
        #expect(linearizable.status == 503, "no majority confirms this master: \(linearizable.text)")
        first.signal(SIGKILL)
        _ = try await first.waitForExit()

        try await cluster.start(1)
        try await cluster.start(2)
        try await eventually("the secondaries elect one of them and take an append") {
            (try? await HTTP.post(cluster.urls[1] + "/messages", ["message": "new", "w": 2, "id": "new-1"], timeout: .seconds(1)))?.status == 201
        }
        let old = try await cluster.start(0)
        do {
            try await eventually("the old master cut its tail and follows") {
                (try? await HTTP.messages(cluster.urls[0]).map(\.message)) == ["kept", "new"]
            }
        } catch {
            Issue.record("\(cluster.processes.logs)")
            throw error
        }
        let rollback = cluster.folder.appendingPathComponent("n0/rollback")
        let files = try FileManager.default.contentsOfDirectory(atPath: rollback.path)
        #expect(files.count == 1, "\(files)")
        let cut = try String(contentsOf: rollback.appendingPathComponent(files[0]), encoding: .utf8)
        #expect(cut.contains("\"only on the old master\"") && cut.contains("\"seq\":2"), "\(cut)")
        // Restarted, it holds the new master's start and, past it, a tail no election record
        // dates: it cuts that itself at the new master's first request (docs/failover.md).
        #expect(old.log.contains("cut entries found on disk past the master's start, which no election record dates"), "\(old.log)")
    }
}

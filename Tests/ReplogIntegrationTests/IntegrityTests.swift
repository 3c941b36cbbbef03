import Foundation
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Replicas prove they hold the same log: every node shows the running hash of its log in
/// `/health`, and the master compares each secondary's with its own (issue 18).
@Suite(.timeLimit(.minutes(2)))
struct IntegrityTests {
    private func hash(_ node: String) async throws -> String? {
        try await HTTP.get(node + "/health").json["hash"] as? String
    }

    private func problem(of secondary: String, on master: String) async throws -> String? {
        let secondaries = try await HTTP.get(master + "/health").json["secondaries"] as? [[String: any Sendable]] ?? []
        return secondaries.first { $0["url"] as? String == secondary }?["problem"] as? String
    }

    @Test func aSecondaryHoldingOtherMessagesIsShownDivergedAndCountsForNothing() async throws {
        let cluster = LocalCluster()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-it-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let port = try freePort()
        let s1 = try await cluster.startSecondary(port: port, ["--data-dir", folder.path])
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        for message in ["a", "b", "c"] { _ = try await HTTP.post(master.url + "/messages", ["message": message, "w": 3]) }
        let same = try await hash(master.url)
        #expect(same != nil && same?.count == 16)
        let (held1, held2) = (try await hash(s1.url), try await hash(s2.url))
        #expect(held1 == same && held2 == same)

        // Stop s1 and put another message at seq 2 into its log, checksums and log id intact:
        // what a faulty disk or a hand edit could leave behind.
        s1.process.signal(SIGTERM)
        #expect(try await s1.process.waitForExit() == 0)
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".seg") {
            try FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
        do {
            let store = try FileLogStore(directory: folder)
            try store.append([LogEntry(seq: 1, message: "a"), LogEntry(seq: 2, message: "tampered"), LogEntry(seq: 3, message: "c")])
            try store.sync()
        }
        let restarted = try await cluster.startSecondary(port: port, ["--data-dir", folder.path])
        #expect(try await hash(restarted.url) != same)

        // First "at or before" the seq it holds; then, after a few questions about its
        // hashes, the very seq where the logs part.
        try await eventually("the master shows s1 diverged at seq 2") {
            try await problem(of: restarted.url, on: master.url)?.hasPrefix("diverged at seq 2: it holds another message there") == true
        }
        // In /metrics (the next heartbeat round) and in the master's log, as an error.
        try await eventually("replog_secondary_diverged is 1 for s1") {
            try await HTTP.get(master.url + "/metrics").text.contains("replog_secondary_diverged{peer=\"\(restarted.url)\"} 1")
        }
        try await eventually("the master logs the divergence") {
            master.process.log.contains("error replog.master: replog.peer=\(restarted.url)")
                && master.process.log.contains("secondary diverged from the master's log")
        }
        // s1 holds the next message too, but its acknowledgement is not one: w=3 times out.
        let reply = try await HTTP.post(master.url + "/messages", ["message": "d", "w": 3, "timeout": 1_000])
        #expect(reply.status == 504, "\(reply.text)")
        #expect(try await HTTP.post(master.url + "/messages", ["message": "e", "w": 2]).status == 201)
    }
}

import Foundation
import ReplogTestKit
import Testing

/// Iteration 3 against real `replog` processes: crashes, restarts, injected errors,
/// heartbeats and quorum.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct FaultToleranceProcessTests {
    /// The course's self-check: M + S1 up (S2 configured but down); Msg1 w=1 ok, Msg2 w=2
    /// ok, Msg3 w=3 waits, Msg4 w=1 ok at once; S2 starts, lists Msg1…Msg4, and Msg3 completes.
    @Test func courseSelfCheck() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2Port = try freePort()
        let s2URL = "http://127.0.0.1:\(s2Port)"
        let master = try await cluster.startMaster(secondaries: [s1.url, s2URL])
        let post = { @Sendable (message: String, w: Int) in try await HTTP.post(master.url + "/messages", ["message": message, "w": w]) }

        #expect(try await post("Msg1", 1).status == 201)
        #expect(try await post("Msg2", 2).status == 201)
        let msg3 = Task { try await post("Msg3", 3) }
        try await eventually("Msg3 is in the master's log") { try await HTTP.messages(master.url).count == 3 }
        let started = ContinuousClock.now
        let msg4 = try await post("Msg4", 1)
        #expect(msg4.status == 201 && msg4.json["seq"] as? Int == 4)
        #expect(ContinuousClock.now - started < .seconds(2), "Msg4 must not wait behind Msg3")

        let s2 = try await cluster.startSecondary(port: s2Port)
        #expect(s2.url == s2URL)
        let msg3Reply = try await msg3.join()
        #expect(msg3Reply.status == 201 && msg3Reply.json["seq"] as? Int == 3, "\(msg3Reply.text)")
        try await eventually("S2 holds all four") { try await HTTP.messages(s2URL).count == 4 }
        #expect(try await HTTP.messages(s2URL).map(\.message) == ["Msg1", "Msg2", "Msg3", "Msg4"])
    }

    /// Both secondaries answer 500 after storing 30 % of the time; concurrent clients with
    /// mixed w; every node ends with seqs 1…N exactly once, in one order.
    @Test func exactlyOnceUnderInjectedErrors() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary(["--error-rate", "0.3"])
        let s2 = try await cluster.startSecondary(["--error-rate", "0.3"])
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<10 {
                group.addTask {
                    for index in 0..<10 {
                        let reply = try await HTTP.post(master.url + "/messages", ["message": "c\(client)-\(index)", "w": (client + index) % 3 + 1])
                        #expect(reply.status == 201, "\(reply.text)")
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try await HTTP.post(master.url + "/messages", ["message": "barrier", "w": 3]).status == 201)
        let master_ = try await HTTP.messages(master.url)
        #expect(master_.map(\.seq) == Array(1...101))
        #expect(Set(master_.map(\.message)).count == 101)
        #expect(try await HTTP.messages(s1.url) == master_, "\(cluster.logs)")
        #expect(try await HTTP.messages(s2.url) == master_, "\(cluster.logs)")
    }

    /// A secondary killed with SIGKILL and restarted with an empty log receives everything.
    @Test func killedSecondaryRestartsEmptyAndCatchesUp() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        for index in 1...20 { _ = try await HTTP.post(master.url + "/messages", ["message": "m\(index)", "w": 3]) }

        s2.process.signal(SIGKILL)
        _ = try await s2.process.waitForExit()
        for index in 21...40 { _ = try await HTTP.post(master.url + "/messages", ["message": "m\(index)", "w": 2]) }

        let port = Int(s2.url.split(separator: ":").last!)!
        let restarted = try await cluster.startSecondary(port: port)
        let barrier = try await HTTP.post(master.url + "/messages", ["message": "m41", "w": 3])
        #expect(barrier.status == 201)
        #expect(try await HTTP.messages(restarted.url).map(\.message) == (1...41).map { "m\($0)" }, "\(cluster.logs)")
        // One log line when the catch-up starts and one when it ends, with counts.
        try await eventually("the master logs the catch-up") {
            master.process.log.contains("catch-up started") && master.process.log.contains("catch-up finished")
        }
    }

    /// A secondary that was away for 72 MB of large messages catches up: batches are bounded
    /// in bytes, not only in count (a 1,000-entry batch of them was refused with 413, forever).
    @Test func aBacklogOfLargeMessagesCatchesUp() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let latePort = try freePort()
        let master = try await cluster.startMaster(secondaries: [s1.url, "http://127.0.0.1:\(latePort)"])
        let large = String(repeating: "x", count: 1_000_000)
        for _ in 1...72 {
            let reply = try await HTTP.post(master.url + "/messages", ["message": large, "w": 2])
            #expect(reply.status == 201, "\(reply.text)")
        }

        let late = try await cluster.startSecondary(port: latePort)
        let barrier = try await HTTP.post(master.url + "/messages", ["message": "after", "w": 3, "timeout": 30_000])
        #expect(barrier.status == 201, "\(barrier.text)")
        #expect(try await HTTP.get(late.url + "/health").json["seq"] as? Int == 73)
    }

    /// Both secondaries down → unhealthy → 503 "no quorum" while reads work; one back →
    /// writable again, by itself.
    @Test func quorumLossMakesTheMasterReadOnlyUntilASecondaryReturns() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        #expect(try await HTTP.post(master.url + "/messages", ["message": "before", "w": 3]).status == 201)

        s1.process.signal(SIGKILL)
        s2.process.signal(SIGKILL)
        try await eventually("the master reports read-only") {
            try await HTTP.get(master.url + "/health").json["readOnly"] as? Bool == true
        }
        let refused = try await HTTP.post(master.url + "/messages", ["message": "refused", "w": 1])
        #expect(refused.status == 503)
        #expect(refused.json["error"] as? String == "no quorum: master is read-only")
        #expect(try await HTTP.messages(master.url).map(\.message) == ["before"], "reads keep working")
        let statuses = (try await HTTP.get(master.url + "/health").json["secondaries"] as? [[String: any Sendable]])?
            .compactMap { $0["status"] as? String }
        #expect(statuses == ["unhealthy", "unhealthy"])

        let port = Int(s1.url.split(separator: ":").last!)!
        _ = try await cluster.startSecondary(port: port)
        try await eventually("the master is writable again") {
            try await HTTP.get(master.url + "/health").json["readOnly"] as? Bool == false
        }
        #expect(try await HTTP.post(master.url + "/messages", ["message": "after", "w": 2]).status == 201)
    }

    /// `timeout` answers 504 with the acknowledgements so far; the message stays in the log
    /// and reaches the missing secondary when it comes back.
    @Test func writeTimeoutAnswers504AndTheMessageStillConverges() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2Port = try freePort()
        let master = try await cluster.startMaster(secondaries: [s1.url, "http://127.0.0.1:\(s2Port)"])

        let reply = try await HTTP.post(master.url + "/messages", ["message": "late", "w": 3, "timeout": 300])
        #expect(reply.status == 504, "\(reply.text)")
        #expect(reply.json["acks"] as? Int == 2)
        #expect(reply.json["seq"] as? Int == 1)

        let s2 = try await cluster.startSecondary(port: s2Port)
        try await eventually("the late secondary holds the timed-out message") {
            try await HTTP.messages(s2.url) == [.init(seq: 1, message: "late")]
        }
    }

    /// A retried append with the same `id` returns the original seq and appends nothing.
    @Test func idempotentRetryWithID() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        let first = try await HTTP.post(master.url + "/messages", ["message": "charge", "w": 2, "id": "req-1"])
        let retry = try await HTTP.post(master.url + "/messages", ["message": "charge", "w": 2, "id": "req-1"])
        #expect(first.status == 201 && retry.status == 201)
        #expect(first.json["seq"] as? Int == 1 && retry.json["seq"] as? Int == 1)
        #expect(try await HTTP.messages(s1.url).count == 1)
    }

    /// The client's answer is lost in a crash (kill -9 of the master); it retries against the
    /// restarted master with the same `id`, and gets the original seq: nothing twice.
    @Test func idempotentRetryAfterTheMasterWasKilled() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("replog-it-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url], LocalCluster.fastHeartbeats + ["--data-dir", dir])
        let first = try await HTTP.post(master.url + "/messages", ["message": "charge 42", "w": 2, "id": "order-42"])
        #expect(first.json["seq"] as? Int == 1, "\(first.text)")
        master.process.signal(SIGKILL)
        _ = try await master.process.waitForExit()

        let restarted = try await cluster.startMaster(secondaries: [s1.url], LocalCluster.fastHeartbeats + ["--data-dir", dir])
        let retry = try await HTTP.post(restarted.url + "/messages", ["message": "charge 42", "w": 2, "id": "order-42"])
        #expect(retry.status == 201 && retry.json["seq"] as? Int == 1, "\(retry.text)\n\(cluster.logs)")
        let next = try await HTTP.post(restarted.url + "/messages", ["message": "charge 43", "w": 2, "id": "order-43"])
        #expect(next.json["seq"] as? Int == 2, "\(next.text)")
        #expect(try await HTTP.messages(s1.url).map(\.message) == ["charge 42", "charge 43"])
    }

    /// An in-memory master that restarts starts a new, empty log; its secondaries still hold
    /// the old one and refuse it. The master is read-only, and its 503 and /health say why and
    /// what to do; secondaries restarted empty make it writable again.
    @Test func anInMemoryMasterRestartSaysWhyItIsReadOnlyAndWhatToDo() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let first = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        #expect(try await HTTP.post(first.url + "/messages", ["message": "before", "w": 3]).status == 201)
        first.process.signal(SIGKILL)
        _ = try await first.process.waitForExit()

        let second = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        var refused: HTTP.Reply?
        try await eventually("the new master is read-only") {
            let reply = try await HTTP.post(second.url + "/messages", ["message": "after", "w": 1])
            refused = reply
            return reply.status == 503
        }
        let detail = try #require(refused?.json["detail"] as? String, "\(String(describing: refused?.text))")
        #expect(detail.contains("\(s1.url): holds master log"), "\(detail)")
        #expect(detail.contains("restart it with an empty log"), "\(detail)")
        let health = try await HTTP.get(second.url + "/health").json
        let problems = (health["secondaries"] as? [[String: any Sendable]])?.compactMap { $0["problem"] as? String } ?? []
        #expect(problems.count == 2 && problems.allSatisfy { $0.contains("restart it with an empty log") }, "\(health)")

        // Doing what it says: the secondaries restarted empty follow the new log.
        for secondary in [s1, s2] {
            secondary.process.signal(SIGKILL)
            _ = try await secondary.process.waitForExit()
            _ = try await cluster.startSecondary(port: Int(secondary.url.split(separator: ":").last!)!)
        }
        try await eventually("writable again") {
            try await HTTP.post(second.url + "/messages", ["message": "after", "w": 3, "id": "after"]).status == 201
        }
    }
}

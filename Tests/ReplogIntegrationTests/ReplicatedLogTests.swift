import Foundation
import ReplogTestKit
import Testing

/// Iterations 1–2 against real `replog` processes on loopback.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReplicatedLogTests {
    /// Without `w` the master answers only after every secondary, including one that
    /// holds each request 2 s, stored the message.
    @Test func omittedWBlocksUntilTheDelayedSecondaryHasIt() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary(["--delay", "2s"])
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])

        let started = ContinuousClock.now
        let reply = try await HTTP.post(master.url + "/messages", ["message": "Hello replicated world!"])
        let elapsed = ContinuousClock.now - started
        #expect(reply.status == 201, "\(reply.text)")
        #expect(reply.json["w"] as? Int == 3)
        #expect(elapsed >= .seconds(2), "blocking replication must wait for the 2 s secondary")
        for node in [master.url, s1.url, s2.url] {
            #expect(try await HTTP.messages(node) == [.init(seq: 1, message: "Hello replicated world!")], "\(node)")
        }
    }

    /// `w=1` is answered without waiting for the delayed secondary, which lags visibly and
    /// then converges.
    @Test func wOneIsAnsweredAtOnceThenTheLaggingSecondaryConverges() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary(["--delay", "2s"])
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])

        let started = ContinuousClock.now
        let reply = try await HTTP.post(master.url + "/messages", ["message": "fast", "w": 1])
        #expect(reply.status == 201)
        #expect(ContinuousClock.now - started < .seconds(2), "w=1 must not wait for the delayed secondary")
        #expect(try await HTTP.messages(s2.url).isEmpty, "the delayed secondary has not stored it yet")
        #expect(try await HTTP.messages(master.url).count == 1)

        try await eventually("the delayed secondary lists the message") {
            try await HTTP.messages(s2.url) == [.init(seq: 1, message: "fast")]
        }
    }

    /// 100 parallel appends with mixed `w` get seqs 1…100 exactly once, and every node
    /// lists the same order.
    @Test func parallelAppendsGetOneTotalOrderEverywhere() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])

        let seqs = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<100 {
                group.addTask {
                    let reply = try await HTTP.post(master.url + "/messages", ["message": "m\(index)", "w": index % 3 + 1])
                    return reply.json["seq"] as? Int ?? -1
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(seqs.sorted() == Array(1...100))
        _ = try await HTTP.post(master.url + "/messages", ["message": "barrier", "w": 3])
        let logs = [try await HTTP.messages(master.url), try await HTTP.messages(s1.url), try await HTTP.messages(s2.url)]
        #expect(logs[0].map(\.seq) == Array(1...101))
        #expect(logs[1] == logs[0] && logs[2] == logs[0], "\(cluster.logs)")
    }

    @Test func badInputGets400JSONAndAppendsNothing() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        for body in [["w": 1], ["message": 1], ["message": "x", "w": 3], ["message": "x", "w": "1"]] as [[String: any Sendable]] {
            let reply = try await HTTP.post(master.url + "/messages", body)
            #expect(reply.status == 400)
            #expect(reply.json["error"] is String, "\(reply.text)")
        }
        let secondaryReply = try await HTTP.post(s1.url + "/messages", ["message": "x"])
        #expect(secondaryReply.status == 405 && secondaryReply.json["error"] is String)
        #expect(try await HTTP.messages(master.url).isEmpty)
    }

    /// Settings that could not work are refused at start with a reason, not discovered later.
    @Test func impossibleSettingsAreRefusedAtStart() async throws {
        let cases: [(arguments: [String], reason: String)] = [
            (["master", "--port", "0", "--max-body", "40000000"], "--max-body must be 1 to 33554432 bytes"),
            (["master", "--port", "0", "--secondary", "127.0.0.1:5001"], "--secondary must be a URL"),
            // Nodes serve plain HTTP only, so a TLS URL could never be replicated to.
            (["master", "--port", "0", "--secondary", "https://127.0.0.1:5001"], "--secondary must be a URL like http://"),
            (["secondary", "--port", "0", "--error-rate", "2"], "--error-rate must be between 0 and 1"),
            (["secondary", "--port", "0", "--fail-fsync-after", "3"], "--fail-fsync-after needs --data-dir"),
            // Protected mode: reachable from other machines and no secret. Refused before binding.
            (["secondary", "--port", "0", "--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines reach this node"),
            (["master", "--port", "0", "--host", "0.0.0.0"], "has no cluster secret"),
            (["master", "--port", "0", "--client-token", "short"], "a client token must be at least 16 bytes long"),
            (["secondary", "--port", "0", "--client-token-reads"], "--client-token-reads needs at least one --client-token"),
        ]
        for (arguments, reason) in cases {
            let process = try await NodeProcess(arguments)
            #expect(try await process.waitForExit() == 64, "\(arguments)")  // EX_USAGE
            #expect(process.log.contains(reason), "\(arguments): \(process.log)")
        }
    }

    /// SIGTERM shuts a node down gracefully with exit status 0.
    @Test func nodesStopCleanlyOnSigterm() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        _ = try await HTTP.post(master.url + "/messages", ["message": "x", "w": 2])
        master.process.signal(SIGTERM)
        s1.process.signal(SIGTERM)
        #expect(try await master.process.waitForExit() == 0, "\(master.process.log)")
        #expect(try await s1.process.waitForExit() == 0, "\(s1.process.log)")
    }

    /// A master started with `--client-token`: the commands send it with `--token` (or
    /// REPLOG_CLIENT_TOKEN), and without it an append is refused with the node's 401.
    @Test func clientCommandsSendTheClientToken() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let token = "a-client-token-of-some-length"
        let master = try await cluster.startMaster(secondaries: [s1.url], LocalCluster.fastHeartbeats + ["--client-token", token])
        let refused = try await NodeProcess(["append", "no token", "--master", master.url])
        #expect(try await refused.waitForExit() == 1)
        #expect(refused.log.contains("needs a client token to append"), "\(refused.log)")
        let append = try await NodeProcess(["append", "with a token", "--w", "2", "--master", master.url, "--token", token])
        #expect(try await append.waitForExit() == 0, "\(append.log)")
        let fromEnvironment = try await NodeProcess(["append", "from the environment", "--master", master.url], environment: ["REPLOG_CLIENT_TOKEN": token])
        #expect(try await fromEnvironment.waitForExit() == 0, "\(fromEnvironment.log)")
        #expect(try await HTTP.messages(master.url).map(\.message) == ["with a token", "from the environment"])
    }

    /// `replog append` and `replog list` talk to a running master.
    @Test func appendAndListCommands() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        let append = try await NodeProcess(["append", "from the CLI", "--w", "2", "--master", master.url])
        #expect(try await append.waitForExit() == 0)
        #expect(append.log.contains(#""seq":1"#), "\(append.log)")
        let list = try await NodeProcess(["list", "--node", s1.url])
        #expect(try await list.waitForExit() == 0)
        #expect(list.log.contains("1\tfrom the CLI"), "\(list.log)")
    }

    /// A client command against a port where nothing listens says so in one plain sentence,
    /// naming the URL (not the transport's "connection reset (error set)").
    @Test func aClientCommandNamesTheURLAndTheCauseWhenNothingListens() async throws {
        let port = try freePort()
        let health = try await NodeProcess(["health", "--node", "http://127.0.0.1:\(port)"])
        #expect(try await health.waitForExit() == 1)
        #expect(
            health.log.contains("cannot reach http://127.0.0.1:\(port)/health: connection refused (is a replog node running there?)"),
            "\(health.log)")
        #expect(!health.log.contains("error set"), "\(health.log)")
    }
}

import ArgumentParser
import Foundation
import ReplogCore

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Walk a running cluster through the iterations and explain what happens.",
        discussion: "Start `replog cluster --delay 2s` in another terminal first; the delay makes the effects visible.")

    @OptionGroup var client: ClientOptions

    func run() async throws {
        let master = client.master
        guard let health = try await API.get(master + "/health").json as? [String: Any],
              let secondaries = health["secondaries"] as? [[String: Any]]
        else { throw fail("\(master)/health did not answer like a replog master") }
        let urls = secondaries.compactMap { $0["url"] as? String }
        let nodes = [master] + urls
        let clusterSize = nodes.count

        say("replog demo against \(master): the master and \(urls.count) secondaries")
        for url in urls {
            let delay = (try await API.get(url + "/health").json as? [String: Any])?["delayMs"] as? Int ?? 0
            say("  secondary \(url): replication delay \(delay) ms")
        }

        say("\n1. Blocking replication (iteration 1): without \"w\" the master answers once EVERY node holds the message.")
        let (blocking, blockingMs) = try await timedAppend("demo: blocking append", w: nil)
        say("   seq \(blocking) answered after \(blockingMs) ms: as long as the slowest secondary took.")

        say("\n2. Write concern (iteration 2): \"w\": 1 is answered as soon as the master holds it.")
        let (fast, fastMs) = try await timedAppend("demo: w=1 append", w: 1)
        say("   seq \(fast) answered after \(fastMs) ms. Right now the nodes hold:")
        for node in nodes {
            let held = try await count(node)
            say("     \(node): \(held) message\(held == 1 ? "" : "s")")
        }
        say("   A delayed secondary does not have it yet: the replicas are inconsistent for a while...")
        let convergedMs = try await waitForConvergence(nodes, seq: fast)
        say("   ...and every node holds it \(convergedMs) ms later: eventually consistent.")

        for w in 2...clusterSize {
            let (seq, ms) = try await timedAppend("demo: w=\(w) append", w: w)
            say("   w=\(w): seq \(seq) answered after \(ms) ms (the master and \(w - 1) secondar\(w == 2 ? "y" : "ies") held it).")
        }

        say("\n3. Deduplication: retrying an append with the same \"id\" appends nothing.")
        let id = "demo-\(UUID().uuidString.prefix(8))"
        let first = try await API.post(master + "/messages", json: ["message": "demo: idempotent", "w": 1, "id": id])
        let retry = try await API.post(master + "/messages", json: ["message": "demo: idempotent", "w": 1, "id": id])
        say("   first: \(first.text)\n   retry: \(retry.text)  (same seq)")

        say("\n4. Total order: every node lists the same messages in the same order.")
        let last = (try await API.get(master + "/health").json as? [String: Any])?["seq"] as? Int ?? 0
        _ = try await waitForConvergence(nodes, seq: last)
        var lists: [String] = []
        for node in nodes { lists.append(try await API.get(node + "/messages").text) }
        say(Set(lists).count == 1 ? "   identical on all \(nodes.count) nodes (\(last) messages)." : "   the nodes differ: that is a bug, please report it.")
        say("\nNext: kill a secondary (kill -9 PID from the cluster banner), append with w=1, restart it, and watch it catch up.")
    }

    private func say(_ line: String) { announce(line) }

    private func timedAppend(_ message: String, w: Int?) async throws -> (seq: Int, ms: Int) {
        var body: [String: Any] = ["message": message]
        if let w { body["w"] = w }
        let started = ContinuousClock.now
        let reply = try await API.post(client.master + "/messages", json: body)
        let elapsed = ContinuousClock.now - started
        guard reply.status == 201, let seq = (reply.json as? [String: Any])?["seq"] as? Int else {
            throw fail("append failed: \(reply.status) \(reply.text)")
        }
        return (seq, Int(elapsed.milliseconds))
    }

    private func count(_ node: String) async throws -> Int {
        ((try await API.get(node + "/messages").json as? [String: Any])?["messages"] as? [Any])?.count ?? 0
    }

    /// Polls every node until all hold `seq`; returns the milliseconds it took (gives up after 60 s).
    private func waitForConvergence(_ nodes: [String], seq: Int) async throws -> Int {
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(60) {
            var all = true
            for node in nodes where try await count(node) < seq { all = false }
            if all { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return Int((ContinuousClock.now - started).milliseconds)
    }
}

import ArgumentParser
import Foundation
import ReplogCore

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Walk a running cluster through the iterations and explain what happens.",
        discussion: "Start `replog cluster --delay 2s` in another terminal first; the delay makes the effects visible.")

    @OptionGroup var client: ClientOptions

    @Option(name: .customLong("kill-master"), help: "The master's PID (from the cluster banner): the demo ends with a failover, killing it (SIGKILL) and appending through a secondary until a new master answers.")
    var killMaster: Int32?

    func run() async throws {
        let master = client.master
        guard let health = try await API.get(master + "/health").decode(MasterHealthReport.self) else {
            throw fail("\(master)/health did not answer like a replog master")
        }
        let urls = health.secondaries.map(\.url)
        let nodes = [master] + urls
        let clusterSize = nodes.count

        say("replog demo against \(master): the master and \(urls.count) secondaries")
        for url in urls {
            let delay = try await API.get(url + "/health").decode(SecondaryHealthReport.self)?.delayMs ?? 0
            say("  secondary \(url): replication delay \(delay) ms")
        }

        say("\n1. Blocking replication (iteration 1): without \"w\" the master answers once EVERY node holds the message.")
        let (blocking, blockingMs) = try await timedAppend("demo: blocking append", w: nil)
        say("   seq \(blocking) answered after \(blockingMs) ms: as long as the slowest secondary took.")

        say("\n2. Write concern (iteration 2): \"w\": 1 is answered as soon as the master holds it.")
        let (fast, fastMs) = try await timedAppend("demo: w=1 append", w: 1)
        say("   seq \(fast) answered after \(fastMs) ms. Right now the nodes hold:")
        var lagging = 0
        for node in nodes {
            let held = try await count(node)
            if held < fast { lagging += 1 }
            say("     \(node): \(held) message\(held == 1 ? "" : "s")\(held < fast ? " (not seq \(fast) yet)" : "")")
        }
        // Say what was measured: without --delay the secondaries are usually done already.
        if lagging > 0 {
            say("   \(lagging) of \(nodes.count) nodes do not have it yet: the replicas are inconsistent for a while...")
            let convergedMs = try await waitForConvergence(nodes, seq: fast)
            say("   ...and every node holds it \(convergedMs) ms later: eventually consistent.")
        } else {
            say("   Every node holds it already: replication was faster than this look. Start the cluster with")
            say("   --delay 2s to watch the replicas disagree for a while, then agree (eventual consistency).")
        }

        for w in 2...clusterSize {
            let (seq, ms) = try await timedAppend("demo: w=\(w) append", w: w)
            say("   w=\(w): seq \(seq) answered after \(ms) ms (the master and \(w - 1) secondar\(w == 2 ? "y" : "ies") held it).")
        }

        say("\n3. Deduplication: retrying an append with the same \"id\" appends nothing.")
        let id = "demo-\(UUID().uuidString.prefix(8))"
        let body = AppendRequest(message: "demo: idempotent", w: 1, id: id)
        let first = try await API.post(master + "/messages", body)
        let retry = try await API.post(master + "/messages", body)
        say("   first: \(first.text)\n   retry: \(retry.text)  (same seq)")

        say("\n4. Total order: every node lists the same messages in the same order.")
        let last = try await API.get(master + "/health").decode(MasterHealthReport.self)?.seq ?? 0
        _ = try await waitForConvergence(nodes, seq: last)
        var lists: [String] = []
        for node in nodes { lists.append(try await API.get(node + "/messages").text) }
        say(Set(lists).count == 1 ? "   identical on all \(nodes.count) nodes (\(last) messages)." : "   the nodes differ: that is a bug, please report it.")
        if let epoch = health.epoch {
            try await failover(from: master, epoch: epoch, secondaries: urls)
        }
        say("\nNext: kill a secondary (kill -9 PID from the cluster banner), append with w=1, restart it, and watch it catch up.")
    }

    /// Chapter 5, on a cluster with failover: kill the master and time the election.
    private func failover(from master: String, epoch: Int, secondaries: [String]) async throws {
        say("\n5. Failover: \(master) is the master of epoch \(epoch); when it dies, the secondaries elect one of themselves.")
        guard let pid = killMaster, !secondaries.isEmpty else {
            say("   Run the demo with --kill-master PID (the master's pid from the banner) to watch it happen.")
            return
        }
        say("   Killing the master (kill -9 \(pid)) and appending with w=2 through \(secondaries[0]), which redirects to the master...")
        guard kill(pid, SIGKILL) == 0 else { throw fail("cannot kill pid \(pid): \(String(cString: strerror(errno)))") }
        let started = ContinuousClock.now
        let body = AppendRequest(message: "demo: after the failover", w: 2, id: "demo-failover-\(UUID().uuidString.prefix(8))")
        var answer: API.Reply?
        while ContinuousClock.now - started < .seconds(30) {
            // 503 while the election runs; the id makes the retries safe.
            if let reply = await API.tryPost(secondaries[0] + "/messages", body), reply.status == 201 {
                answer = reply
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let took = Int((ContinuousClock.now - started).milliseconds)
        guard let answer, let seq = answer.decode(AppendResult.self)?.seq else {
            say("   No new master within 30 s: is a majority of the nodes up?")
            return
        }
        // Role, epoch and master, whichever role the node has now.
        struct View: Decodable { let epoch: Int?; let master: String? }
        let view = try await API.get(secondaries[0] + "/health").decode(View.self)
        say("   \(view?.master ?? "a new master") was elected (epoch \(view?.epoch ?? epoch + 1)) and took seq \(seq), \(took) ms after the kill.")
        say("   Restart the old master with its command from the banner: it comes back as a secondary and catches up.")
    }

    private func say(_ line: String) { announce(line) }

    private func timedAppend(_ message: String, w: Int?) async throws -> (seq: Int, ms: Int) {
        let started = ContinuousClock.now
        let reply = try await API.post(client.master + "/messages", AppendRequest(message: message, w: w))
        let elapsed = ContinuousClock.now - started
        guard reply.status == 201, let seq = reply.decode(AppendResult.self)?.seq else {
            throw fail("append failed: \(reply.status) \(reply.text)")
        }
        return (seq, Int(elapsed.milliseconds))
    }

    private func count(_ node: String) async throws -> Int {
        try await API.get(node + "/messages").decode(MessagesPage.self)?.messages.count ?? 0
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

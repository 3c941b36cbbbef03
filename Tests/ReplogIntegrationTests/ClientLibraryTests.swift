import Foundation
import ReplogClient
import ReplogCore
import ReplogProcess
import ReplogTestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `ReplogClient`, the library applications link, against real nodes; and the two example
/// programs in `Examples/`, as a reader would run them.
@Suite(.timeLimit(.minutes(1)))
struct ClientLibraryTests {
    /// Runs an example program built next to `replog`; its stdout once it has ended.
    private func runExample(_ name: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> String {
        let executable = NodeProcess.binary.deletingLastPathComponent().appendingPathComponent(name).path
        let process = try await ChildProcess(
            executable: executable, arguments: arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
        let status = await process.waitForExit()
        #expect(status == 0, "\(name): \(process.log)")
        return process.stdout
    }

    @Test func theExamplesProduceAndConsumeThroughAnyNode() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        // A secondary first: the producer finds the master by itself.
        let produced = try await runExample("ReplogProducerExample", [s1.url, master.url])
        #expect(produced == (1...5).map { "appended seq \($0): order \($0) paid\n" }.joined() + "appended seqs 6...8 as one batch\n")
        let consumed = try await runExample("ReplogConsumerExample", [s2.url], environment: ["COUNT": "8"])
        #expect(consumed == (1...8).map { "\($0): order \($0) paid\n" }.joined())
    }

    @Test func anAppendGoesOnToTheNextNodeAndARetryWithItsIDAppendsNothing() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        let dead = "http://127.0.0.1:\(try freePort())"
        let log = ReplogClient(nodes: [dead, s1.url, master.url])
        let first = try await log.append("paid", w: 2, id: "order-1")
        let retried = try await log.append("paid", w: 2, id: "order-1")
        #expect(first == AppendResult(seq: 1, message: "paid", w: 2))
        #expect(retried == first)
        #expect(try await log.list() == [LogEntry(seq: 1, message: "paid")])
        // A batch is retried the same way, with one key for all of it.
        let batch = try await log.append(batch: ["a", "b"], w: 2, id: "batch-1")
        #expect(batch == BatchAppendResult(firstSeq: 2, lastSeq: 3, w: 2))
        #expect(try await log.append(batch: ["a", "b"], w: 2, id: "batch-1") == batch)
        #expect(try await log.list(from: 2).map(\.message) == ["a", "b"])
    }

    /// Retention on the real binary: `/health` shows the first kept seq, a list from seq 1 is
    /// `410`, and a follower of the whole log starts where the log now starts.
    @Test func aFollowerOfTheWholeLogStartsWhereRetentionLeftIt() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary(port: 0, ["--retain-messages", "5", "--segment-bytes", "200"])
        let master = try await cluster.startMaster(
            secondaries: [s1.url], LocalCluster.fastHeartbeats + ["--retain-messages", "5", "--segment-bytes", "200"])
        let log = ReplogClient(nodes: [master.url])
        for index in 1...30 { _ = try await log.append("m\(index)", w: 2) }
        // Records of "m1" to "m30" take 18 or 19 bytes, so the 200-byte segments hold seqs
        // 1-11, 12-21 and 22-30, and keeping 5 messages drops the first two. Wait for that
        // end state, not for the first drop: a pass that ran during the appends drops only
        // the first segment, and the next pass, a second later, the second one.
        let first = 22
        try await eventually("retention dropped the log's first two segments on both nodes") {
            guard case .master(let health) = try await log.health(), health.firstSeq == first,
                  case .secondary(let s1Health) = try await log.health(of: s1.url), s1Health.firstSeq == first
            else { return false }
            return true
        }
        do {
            _ = try await log.list(from: 1)
            Issue.record("a list of what retention dropped was answered")
        } catch ReplogClientError.refused(let status, let answer) {
            #expect(status == 410 && answer.contains("\"firstSeq\":\(first)"), "\(answer)")
        }
        var followed: [Int] = []
        for try await entry in log.follow(from: 1).prefix(2) { followed.append(entry.seq) }
        #expect(followed == [first, first + 1])
    }

    @Test func finalAnswersAreThrownAtOnceAndNoNodeIsUnavailable() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        let log = ReplogClient(nodes: [master.url], configuration: .init(retryFor: .seconds(30)))
        await #expect(throws: ReplogClientError.self) { try await log.append("x", w: 9) }
        do {
            _ = try await log.append("x", w: 9)
        } catch ReplogClientError.refused(let status, let answer) {
            #expect(status == 400 && answer.contains("must be between 1 and 2"), "\(answer)")
        }
        _ = try await log.append("a", w: 2, id: "k")
        do {
            _ = try await log.append("b", w: 2, id: "k")
            Issue.record("a reused key with another message was accepted")
        } catch ReplogClientError.refused(let status, _) {
            #expect(status == 409)
        }

        let dead = "http://127.0.0.1:\(try freePort())"
        let nobody = ReplogClient(nodes: [dead], configuration: .init(retryFor: .milliseconds(300)))
        do {
            _ = try await nobody.append("lost")
            Issue.record("an append to no node succeeded")
        } catch ReplogClientError.unavailable(let reason) {
            #expect(reason.contains("cannot reach \(dead)/messages: connection refused"), "\(reason)")
        }
    }

    @Test func aFollowerGoesOnAtTheNextNodeWithoutGapOrRepeat() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        let log = ReplogClient(nodes: [master.url])
        for message in ["a", "b"] { _ = try await log.append(message, w: 3) }

        let interruptions = Locked<[String]>([])
        var follower = ReplogClient(nodes: [s1.url, s2.url]).follow(from: 1) { reason, next in
            interruptions.withLock { $0.append("\(next): \(reason)") }
        }.makeAsyncIterator()
        #expect(try await follower.next() == LogEntry(seq: 1, message: "a"))
        #expect(try await follower.next() == LogEntry(seq: 2, message: "b"))
        s1.process.signal(SIGKILL)
        _ = try await s1.process.waitForExit()
        _ = try await log.append("c", w: 2)
        #expect(try await follower.next() == LogEntry(seq: 3, message: "c"))
        #expect(interruptions.withLock { $0.first?.hasPrefix("3: ") } == true, "\(interruptions.withLock { $0 })")
    }
}

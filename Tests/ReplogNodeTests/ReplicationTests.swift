import ReplogCore
import ReplogTestKit
import Synchronization
import Testing
@testable import ReplogNode

/// Iterations 1–2 on the in-memory transport: blocking replication, write concern,
/// replicas that disagree under delay and then converge. Time is a manual clock.
@Suite(.timeLimit(.minutes(1)))
struct ReplicationTests {
    /// The course's harness: delay master→s1 5 s, `append("m1")` blocks 5 s; delay master→s2
    /// 6 s, `append("m2")` blocks 6 s; remove delays, `append("m3")` does not block.
    @Test func courseHarnessScenario() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication { () async throws in
            cluster.transport.setDelay(.seconds(5), to: "s1")
            let m1 = Task { try await cluster.append("m1") }
            await cluster.clock.waitForSleepers(1)  // the delivery to s1 is in flight
            cluster.clock.advance(by: .milliseconds(4_999))
            #expect(cluster.clock.sleeperCount == 1, "m1 must still be waiting for s1")
            cluster.clock.advance(by: .milliseconds(1))
            #expect(try await m1.join().seq == 1)

            cluster.transport.setDelay(.zero, to: "s1")
            cluster.transport.setDelay(.seconds(6), to: "s2")
            let started = cluster.clock.now
            let m2 = Task { try await cluster.append("m2") }
            await cluster.clock.waitForSleepers(1)
            cluster.clock.advance(by: .seconds(6))
            #expect(try await m2.join().seq == 2)
            #expect(cluster.clock.now - started == .seconds(6))

            cluster.transport.setDelay(.zero, to: "s2")
            let beforeM3 = cluster.clock.now
            #expect(try await cluster.append("m3").seq == 3)
            #expect(cluster.clock.now == beforeM3, "m3 must not wait for the clock")
        }
        let expected = ["m1", "m2", "m3"].enumerated().map { LogEntry(seq: $0.offset + 1, message: $0.element) }
        #expect(try cluster.logs() == [expected, expected, expected])
    }

    /// w=1 is answered by the master alone; w=2 once one secondary holds it; w=3 (and
    /// omitted w) once both do. Meanwhile the delayed secondary visibly lags.
    @Test func writeConcernCountsTheMasterAndEachSecondary() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication { () async throws in
            cluster.transport.setDelay(.seconds(2), to: "s2")

            let w1 = try await cluster.append("w1", w: 1)
            #expect(w1 == Master.AppendResult(seq: 1, message: "w1", w: 1))

            let w2 = try await cluster.append("w2", w: 2)  // s1 answers at once
            #expect(w2.seq == 2)
            #expect(try cluster.replica("s1").read(from: 1, limit: 10).count >= 1)
            #expect(try cluster.replica("s2").read(from: 1, limit: 10).isEmpty, "s2 is 2 s behind")

            let w3 = Task { try await cluster.append("w3", w: 3) }
            try await cluster.advance(by: .seconds(2)) { cluster.replica("s2").replicaState.seq == 3 }
            #expect(try await w3.join().seq == 3)
            cluster.transport.setDelay(.zero, to: "s2")
            #expect(try await cluster.append("all").w == 3, "omitted w means every node")
        }
        #expect(Set(try cluster.logs().map { $0.map(\.message) }) == [["w1", "w2", "w3", "all"]])
    }

    /// A w=3 append stuck behind an unreachable secondary blocks only its own client.
    @Test func clientsNeverWaitForEachOther() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication { () async throws in
            cluster.transport.setPartitioned(true, "s2")
            let stuck = Task { try await cluster.append("needs everyone", w: 3) }
            await cluster.clock.waitForSleepers(1)  // seq 1 failed to reach s2, whose stream backs off
            #expect(try await cluster.append("fast", w: 1).seq == 2)
            #expect(try await cluster.append("majority", w: 2).seq == 3)

            cluster.transport.setPartitioned(false, "s2")
            await cluster.clock.waitForSleepers(1)  // s2's stream is backing off
            cluster.clock.advance(by: .seconds(1))
            #expect(try await stuck.join().seq == 1)
        }
        #expect(Set(try cluster.logs()).count == 1)
    }

    /// Replication is pipelined: a second append does not wait for the first one's batch to
    /// come back from a slow secondary; both are in flight at once and answered together.
    @Test func slowSecondaryGetsBatchesInParallel() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication { () async throws in
            cluster.transport.setDelay(.seconds(2), to: "s2")
            let first = Task { try await cluster.append("a", w: 3) }
            await cluster.clock.waitForSleepers(1)
            let second = Task { try await cluster.append("b", w: 3) }
            await cluster.clock.waitForSleepers(2)  // both batches are on their way to s2
            cluster.clock.advance(by: .seconds(2))
            #expect(try await first.join().seq == 1)
            #expect(try await second.join().seq == 2)
            #expect(cluster.clock.now == .seconds(2), "answered after one delay, not two")
        }
    }

    /// With a linger, `w=1` appends that nobody waits on leave together in one request; an
    /// append that needs acknowledgements ends the linger at once.
    @Test func lingerBatchesAppendsNobodyWaitsFor() async throws {
        let cluster = TestCluster(replicationLinger: .milliseconds(5))
        try await cluster.withReplication { () async throws in
            for message in ["a", "b", "c"] { _ = try await cluster.append(message, w: 1) }
            await cluster.clock.waitForSleepers(2)  // each stream holds its small batch back
            #expect(cluster.transport.deliveryCount == 0)
            cluster.clock.advance(by: .milliseconds(5))
            try await cluster.advance(by: .milliseconds(1)) { cluster.replica("s2").replicaState.seq == 3 }
            #expect(cluster.transport.deliveryCount == 2, "one request per secondary for all three")

            let started = cluster.clock.now
            _ = try await cluster.append("d", w: 1)
            await cluster.clock.waitForSleepers(2)
            #expect(try await cluster.append("needs everyone", w: 3).seq == 5)
            #expect(cluster.clock.now == started, "w=3 did not wait for the linger")
        }
    }

    /// A secondary that answers heartbeats but fails every replication request says why in
    /// the master's health; the reason goes away with the first delivery that succeeds.
    @Test func failingReplicationShowsInHealthUntilADeliverySucceeds() async throws {
        let cluster = TestCluster()
        cluster.restartEmpty("s2", settings: SecondarySettings(errorRate: 1))  // stores, then answers an error
        let problem = { @Sendable in cluster.master.health.secondaries.first { $0.url == "s2" }?.problem?.description }
        try await cluster.withReplication(heartbeats: true) { () async throws in
            #expect(try await cluster.append("a", w: 2).seq == 1)
            try await cluster.advance(by: .milliseconds(10)) { problem() != nil }
            #expect(problem()?.hasPrefix("replication requests fail: ") == true, "\(problem() ?? "nil")")
            // Heartbeats keep succeeding meanwhile; they must not hide the failure.
            try await cluster.advance(by: .milliseconds(100)) { cluster.master.health.secondaries[1].lastContact != nil }
            #expect(problem() != nil)

            cluster.restartEmpty("s2")
            try await cluster.advance(by: .milliseconds(10)) { problem() == nil }
            try await cluster.advance(by: .milliseconds(10)) { cluster.replica("s2").replicaState.seq == 1 }
        }
    }

    @Test func invalidWriteConcernAppendsNothing() async throws {
        let cluster = TestCluster()
        for w in [0, 4, -1] {
            await #expect(throws: Master.AppendError.invalidWriteConcern(w: w, clusterSize: 3)) {
                try await cluster.append("x", w: w)
            }
        }
        #expect(cluster.master.store.lastSeq == 0)
    }

    /// 100 concurrent appends get seqs 1…100 exactly once, and all nodes agree on the order.
    @Test func concurrentAppendsGetDistinctDenseSeqs() async throws {
        let cluster = TestCluster()
        let seqs = try await cluster.withReplication { () async throws in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<100 {
                    group.addTask { try await cluster.append("m\(index)", w: index % 3 + 1).seq }
                }
                let seqs = try await group.reduce(into: []) { $0.append($1) }
                _ = try await cluster.append("barrier", w: 3)  // answered once every node holds 1…101
                return seqs
            }
        }
        #expect(seqs.sorted() == Array(1...100))
        let logs = try cluster.logs()
        #expect(logs[0].count == 101)
        #expect(logs.allSatisfy { $0 == logs[0] })
    }
}

import Foundation
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Synchronization
import Testing
@testable import ReplogNode

/// Iteration 3 on the in-memory transport: retries, catch-up, exactly-once, heartbeats,
/// quorum, write timeouts and idempotent retries. Time is a manual clock.
@Suite(.timeLimit(.minutes(1)))
struct FaultToleranceTests {
    /// healthy → suspected after 2 missed heartbeats → unhealthy after 4; both secondaries
    /// unhealthy → read-only (503) while reads work; one back → healthy and writable again.
    @Test func heartbeatsDriveHealthAndQuorum() async throws {
        let cluster = TestCluster(heartbeatInterval: .seconds(1))
        _ = try await cluster.append("before", w: 1)
        cluster.transport.setPartitioned(true, "s1")
        cluster.transport.setPartitioned(true, "s2")
        try await withThrowingTaskGroup(of: Void.self) { group async throws in
            group.addTask { await cluster.master.monitorHeartbeats() }
            func statuses(afterRounds rounds: Int) async -> [PeerStatus] {
                for _ in 0..<rounds {
                    await cluster.clock.waitForSleepers(1)  // a round is done, the loop sleeps
                    cluster.clock.advance(by: .seconds(1))
                }
                await cluster.clock.waitForSleepers(1)
                return cluster.master.health.secondaries.map(\.status)
            }
            #expect(await statuses(afterRounds: 0) == [.healthy, .healthy])  // 1 miss
            #expect(await statuses(afterRounds: 1) == [.suspected, .suspected])  // 2 misses
            #expect(cluster.master.health.readOnly == false, "suspected nodes still count")
            #expect(await statuses(afterRounds: 2) == [.unhealthy, .unhealthy])  // 4 misses
            #expect(cluster.master.health.readOnly)

            await #expect(throws: Master.AppendError.readOnly(Quorum(secondaryStatuses: [PeerStatus.unhealthy, .unhealthy]))) {
                try await cluster.append("refused", w: 1)
            }
            #expect(try cluster.master.read(from: 1, limit: 10).map(\.message) == ["before"], "reads keep working")

            cluster.transport.setPartitioned(false, "s1")
            #expect(await statuses(afterRounds: 1) == [.healthy, .unhealthy])
            #expect(cluster.master.health.readOnly == false)
            #expect(try await cluster.append("after", w: 1).seq == 2)
            group.cancelAll()
        }
    }

    /// A secondary that crashes and comes back with an empty log receives everything,
    /// in order, exactly once.
    @Test func restartedEmptySecondaryCatchesUp() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication(heartbeats: true) { () async throws in
            for index in 1...3 { _ = try await cluster.append("m\(index)", w: 3) }
            cluster.transport.disconnect("s1")  // crash
            for index in 4...6 { _ = try await cluster.append("m\(index)", w: 2) }
            cluster.restartEmpty("s1")
            let barrier = Task { try await cluster.append("m7", w: 3) }
            // Time passes: s1's stream retries after its back-off, or a heartbeat notices the restart.
            try await cluster.advance(by: .seconds(1)) { cluster.replica("s1").replicaState.seq == 7 }
            #expect(try await barrier.join().seq == 7)
        }
        let expected = (1...7).map { LogEntry(seq: $0, message: "m\($0)") }
        #expect(try cluster.replica("s1").read(from: 1, limit: .max) == expected)
        #expect(try cluster.replica("s2").read(from: 1, limit: .max) == expected)
    }

    /// 30 % of replication answers are 500 *after* the secondary stored the batch; every
    /// node still lists 1…N once, in the master's order.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func exactlyOnceUnderInjectedErrors(seed: UInt64) async throws {
        let random = SeededRandom(seed: seed)
        let cluster = TestCluster(
            retryPolicy: RetryPolicy(initialBackoff: .zero, maxBackoff: .zero, maxBackoffWhenUnhealthy: .zero),
            secondarySettings: SecondarySettings(errorRate: 0.3),
            random: { random.next() })
        try await cluster.withReplication { () async throws in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<60 {
                    group.addTask { _ = try await cluster.append("m\(index)", w: index % 3 + 1) }
                }
                try await group.waitForAll()
            }
            _ = try await cluster.append("barrier", w: 3)
        }
        let logs = try cluster.logs()
        #expect(logs[0].map(\.seq) == Array(1...61))
        #expect(logs.allSatisfy { $0 == logs[0] })
    }

    /// `timeout` ends the wait with 504 and the acknowledgements so far; the message stays
    /// in the log and reaches the missing secondary once it is back.
    @Test func timeoutAnswersButKeepsReplicating() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication { () async throws in
            cluster.transport.setPartitioned(true, "s2")
            let waiting = Task { try await cluster.append("slow", w: 3, timeout: .milliseconds(300)) }
            await cluster.clock.waitForSleepers(2)  // the timeout, and s2's back-off
            cluster.clock.advance(by: .milliseconds(300))
            await #expect(throws: Master.AppendError.timedOut(seq: 1, acknowledgements: 2, w: 3, timeout: .milliseconds(300))) {
                try await waiting.join()
            }
            cluster.transport.setPartitioned(false, "s2")
            let next = Task { try await cluster.append("next", w: 3) }
            try await cluster.advance(by: .seconds(1)) { cluster.replica("s2").replicaState.seq == 2 }
            #expect(try await next.join().seq == 2)
        }
        #expect(try cluster.replica("s2").read(from: 1, limit: 10).map(\.message) == ["slow", "next"])
    }

    /// Repeating an append with the same `id` returns the original result and appends nothing.
    @Test func idempotentRetryAppendsOnce() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication { () async throws in
            let first = try await cluster.append("pay 10", w: 2, id: "order-1")
            let retry = try await cluster.append("pay 10", w: 3, id: "order-1")
            let other = try await cluster.append("pay 20", w: 1, id: "order-2")
            #expect(first.seq == 1 && retry.seq == 1 && other.seq == 2)
            #expect(retry.message == "pay 10" && retry.w == 3)
        }
        #expect(try cluster.master.read(from: 1, limit: 10).map(\.message) == ["pay 10", "pay 20"])
    }

    /// A retry that arrives while the master is read-only still gets its original answer.
    @Test func idempotentRetryIsAnsweredWithoutQuorum() async throws {
        let cluster = TestCluster(secondaries: 0)
        let first = try await cluster.append("once", id: "k")
        #expect(try await cluster.append("once", id: "k") == first)
        #expect(cluster.master.store.lastSeq == 1)
    }

    /// A master restarted from its data dir still knows the keys of its latest appends:
    /// the client that lost its answer in the crash retries and appends nothing.
    @Test func idempotentRetryAfterAMasterRestart() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-ids-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        func master() throws -> MasterNode {
            try MasterNode(settings: MasterSettings(secondaries: []), store: try FileLogStore(directory: folder), clock: ManualClock())
        }
        do {
            let before = try master()
            #expect(try await before.master.append(AppendRequest(message: "charge 42", id: "order-42")).seq == 1)
            #expect(try await before.master.append(AppendRequest(message: "no key")).seq == 2)
        }
        let restartedNode = try master()
        let restarted = restartedNode.master
        let retry = try await restarted.append(AppendRequest(message: "charge 42", id: "order-42"))
        #expect(retry == Master.AppendResult(seq: 1, message: "charge 42", w: 1))
        #expect(try await restarted.append(AppendRequest(message: "charge 43", id: "order-43")).seq == 3)
        #expect(try restarted.read(from: 1, limit: 10).map(\.message) == ["charge 42", "no key", "charge 43"])
    }
}

/// The secondary side of ordering: hold-back, duplicates, foreign logs.
@Suite struct SecondaryRoleTests {
    private func entries(_ seqs: Int...) -> [LogEntry] { seqs.map { LogEntry(seq: $0, message: "m\($0)") } }

    /// Deliver 1, 2, 4, then 3: 4 is invisible until 3 arrives.
    @Test func listsOnlyTheContiguousPrefix() async throws {
        let replica = try SecondaryNode().node
        #expect(try await replica.receive(entries(1, 2), of: "log").seq == 2)
        #expect(try await replica.receive(entries(4), of: "log").seq == 2)
        #expect(try replica.read(from: 1, limit: 10).map(\.seq) == [1, 2])
        #expect(try await replica.receive(entries(3), of: "log").seq == 4)
        #expect(try replica.read(from: 1, limit: 10).map(\.seq) == [1, 2, 3, 4])
    }

    @Test func duplicateDeliveryIsAcknowledgedAndNotStoredTwice() async throws {
        let replica = try SecondaryNode().node
        _ = try await replica.receive(entries(1, 2, 3), of: "log")
        #expect(try await replica.receive(entries(2, 3), of: "log").seq == 3)
        #expect(try replica.read(from: 1, limit: 10).map(\.seq) == [1, 2, 3])
    }

    /// A redelivery with another message at a seq it holds: the logs diverged there. It is
    /// refused with that seq, nothing is stored, and the secondary claims what it did.
    @Test func aRedeliveryWithOtherContentIsRefusedAndChangesNothing() async throws {
        let replica = try SecondaryNode().node
        _ = try await replica.receive(entries(1, 2), of: "log")
        let before = replica.replicaState
        await #expect(throws: SecondaryInstance.Diverged(seq: 2)) {
            try await replica.receive([LogEntry(seq: 2, message: "other"), LogEntry(seq: 3, message: "m3")], of: "log")
        }
        #expect(try replica.read(from: 1, limit: 10) == entries(1, 2))
        #expect(replica.replicaState == before)
        let sameLog = InMemoryLogStore()
        try sameLog.append(entries(1, 2))
        #expect(before.hash != nil && before.hash == sameLog.hash(at: 2))
    }

    /// With error rate 1, every answer is an error, yet the entries are stored.
    @Test func injectedErrorsHappenAfterStoring() async throws {
        let replica = try SecondaryNode(settings: SecondarySettings(errorRate: 1)).node
        await #expect(throws: Node.InjectedFailure.self) {
            try await replica.receive(self.entries(1), of: "log")
        }
        #expect(try replica.read(from: 1, limit: 10).map(\.seq) == [1])
    }

    /// A secondary holding one master's log refuses another's instead of mixing them.
    @Test func refusesAnotherMastersLog() async throws {
        let replica = try SecondaryNode().node
        _ = try await replica.receive(entries(1), of: "old")
        await #expect(throws: SecondaryInstance.ForeignLog.self) {
            try await replica.receive(self.entries(1, 2), of: "new")
        }
        #expect(try replica.read(from: 1, limit: 10) == entries(1))
    }
}

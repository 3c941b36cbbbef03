import Foundation
import ReplogCore
import ReplogStorage
import Testing
@testable import ReplogNode

/// Part of a batch is no message: a node neither lists nor acknowledges it, and a node
/// elected master drops it before it appends anything after it.
@Suite(.timeLimit(.minutes(1))) struct BatchReplicationTests {
    private func records(_ range: ClosedRange<Int>, batchEndsAt end: Int? = nil) -> RecordFraming.DecodedRecords {
        .init(entries: range.map { LogEntry(seq: $0, message: "m\($0)") }, continues: range.map { seq in end.map { seq < $0 } ?? false })
    }

    /// Deliveries may split a batch (a hold-back buffer that overflowed, an older master) and
    /// arrive out of order: the secondary claims and lists the batch only once all of it is stored.
    @Test func aSecondaryListsAndClaimsABatchOnlyWhenAllOfItIsHere() async throws {
        let replica = try SecondaryNode(settings: SecondarySettings(), clock: ManualClock()).node
        _ = try await replica.receive(records(1...2), of: "L")
        let firstPart = try await replica.receive(records(3...4, batchEndsAt: 6), of: "L")
        #expect(firstPart.seq == 2, "part of a batch is not acknowledged")
        #expect(replica.replicaState.seq == 2, "nor claimed in a heartbeat answer")
        #expect(try replica.read(from: 1, limit: .max).map(\.seq) == [1, 2], "nor listed")
        let end = try await replica.receive(records(6...6, batchEndsAt: 6), of: "L")  // ahead of the gap: held back
        #expect(end.seq == 2)
        let whole = try await replica.receive(records(5...5, batchEndsAt: 6), of: "L")
        #expect(whole.seq == 6)
        #expect(try replica.read(from: 1, limit: .max).map(\.seq) == Array(1...6))
    }

    /// A node that holds the start of a batch whose end never came (its master died between
    /// two deliveries) and is elected cuts that start before it takes an append: otherwise
    /// its next message would read as the batch's end.
    @Test func aNodeElectedWithPartOfABatchCutsItFirst() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-batch-node-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = InMemoryLogStore()
        try store.append(records(1...1).entries)
        let part = records(2...3, batchEndsAt: 4)
        try store.append(part.entries, ids: [], continues: part.continues)
        let clock = ManualClock()
        let node = try Node(
            settings: Node.Settings(me: "n1", members: ["n1"], master: MasterSettings(secondaries: []), canVote: true, bootstrap: true),
            store: store, commit: GroupCommit(store: store, policy: .always), directory: DataDirectory(path: folder.path, role: "master"),
            transport: InMemoryTransport(clock: clock), clock: clock)
        let running = Task { try await node.run() }
        defer { running.cancel() }
        await node.waitUntilSettled(upTo: .seconds(60))  // the manual clock never ends the wait: the election does
        let master = try #require(node.currentMaster)
        #expect(store.lastSeq == 1 && store.completeSeq == 1)
        let appended = try await master.append(AppendRequest(message: "next", w: 1))
        #expect(appended.seq == 2)
        #expect(try store.read(from: 1, limit: .max).map(\.message) == ["m1", "next"])
    }
}

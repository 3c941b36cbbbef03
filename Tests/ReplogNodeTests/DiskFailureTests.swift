import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOFoundationCompat
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Synchronization
import Testing
@testable import ReplogNode

/// A durable-looking store in memory whose fsync fails while `failing` is set, and that
/// counts the fsyncs it was asked for.
final class FailingDiskStore: LogStore {
    private let inner = InMemoryLogStore()
    private let syncs = Mutex(0)
    let failing = Atomic(false)
    /// Makes `append` fail (a full disk) while set.
    let appendFails = Atomic(false)
    /// Makes `read` fail (a bad sector) while set.
    let readFails = Atomic(false)

    var syncCount: Int { syncs.withLock { $0 } }
    var lastSeq: Int { inner.lastSeq }
    var isDurable: Bool { true }
    func append(_ entries: [LogEntry]) throws(LogStoreError) {
        if appendFails.load(ordering: .relaxed) { throw .io("write 00000000000000000001.seg: No space left on device") }
        try inner.append(entries)
    }
    func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] {
        if readFails.load(ordering: .relaxed) { throw .io("read 00000000000000000001.seg at byte 0: Input/output error") }
        return try inner.read(from: seq, limit: limit)
    }
    func sync() throws(LogStoreError) {
        syncs.withLock { $0 += 1 }
        if failing.load(ordering: .relaxed) { throw .io("fsync 00000000000000000001.seg: Input/output error") }
    }
}

/// A failed fsync is final: after it, Linux may have dropped the pages it could not write,
/// so a later fsync that succeeds proves nothing. A node never tries again, acknowledges
/// nothing more, and says why until it is restarted.
@Suite(.timeLimit(.minutes(1)))
struct DiskFailureTests {
    private static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
    /// A master on `store` with one secondary, on the in-memory transport and a manual clock.
    private static func master(on store: any LogStore) -> (MasterNode, Node, ManualClock) {
        let clock = ManualClock()
        let transport = InMemoryTransport(clock: clock)
        let secondary = try! SecondaryNode(clock: clock)  // no data dir: nothing to fail
        transport.connect(secondary.node, as: "s1")
        let master = try! MasterNode(settings: MasterSettings(secondaries: ["s1"]), store: store, transport: transport, clock: clock, logger: quiet)
        return (master, secondary.replica, clock)
    }

    /// The master serializes appends in production; here a lock does it.
    private static let appendLock = Mutex(())

    @Test func aFailedFsyncIsNeverRetried() async throws {
        let store = FailingDiskStore()
        let commit = GroupCommit(store: store, policy: .always, logger: Self.quiet)
        try store.append([LogEntry(seq: 1, message: "a")])
        store.failing.store(true, ordering: .relaxed)
        await #expect(throws: GroupCommit.Failed.self) { try await commit.makeDurable(through: 1) }
        // The disk works again, but what the failed fsync covered may be gone.
        store.failing.store(false, ordering: .relaxed)
        try store.append([LogEntry(seq: 2, message: "b")])
        await #expect(throws: GroupCommit.Failed.self) { try await commit.makeDurable(through: 2) }
        #expect(store.syncCount == 1, "no fsync after the failed one")
        #expect(commit.durableSeq == 0)
        #expect(commit.failure?.reason == "fsync 00000000000000000001.seg: Input/output error")
    }

    /// Every append waiting on the failed fsync is failed with it, not left hanging.
    @Test func everyWaiterOfTheFailedFsyncIsFailed() async throws {
        let store = FailingDiskStore()
        store.failing.store(true, ordering: .relaxed)
        let commit = GroupCommit(store: store, policy: .always, logger: Self.quiet)
        let failures = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<50 {
                group.addTask {
                    let seq = try Self.appendLock.withLock { _ in
                        let seq = store.lastSeq + 1
                        try store.append([LogEntry(seq: seq, message: "m\(index)")])
                        return seq
                    }
                    do {
                        try await commit.makeDurable(through: seq)
                        return false
                    } catch {
                        return error is GroupCommit.Failed
                    }
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(failures == 50)
        #expect(store.syncCount == 1)
    }

    @Test func theMasterRefusesAppendsAndShowsNothingUndurable() async throws {
        let store = FailingDiskStore()
        let (node, replica, _) = Self.master(on: store)
        let master = node.master
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await master.runReplicationStreams() }
            defer { group.cancelAll() }
            _ = try await master.append(AppendRequest(message: "kept", w: 2))
            store.failing.store(true, ordering: .relaxed)
            for message in ["lost?", "after"] {
                await #expect {
                    _ = try await master.append(AppendRequest(message: message, w: 1))
                } throws: { error in
                    guard case .storeFailed(let reason) = error as? Master.AppendError else { return false }
                    return reason.contains("restart it")
                }
            }
        }
        store.failing.store(false, ordering: .relaxed)
        await #expect(throws: Master.AppendError.self) { try await master.append(AppendRequest(message: "disk back", w: 1)) }
        #expect(store.lastSeq == 2, "the append after the failure wrote nothing")
        #expect(store.syncCount == 2, "one good fsync, one failed, none after")
        #expect(try master.read(from: 1, limit: 10).map(\.message) == ["kept"], "seq 2 was never durable")
        #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["kept"])
        #expect(master.commit.durableSeq == 1)
        let health = master.health
        #expect(health.readOnly)
        #expect(health.storageFailure?.contains("Input/output error") == true)
    }

    @Test func aSecondaryStoresNothingMoreAndTheMasterSaysWhy() async throws {
        let store = FailingDiskStore()
        let replica = try SecondaryNode(store: store, clock: ManualClock()).node
        _ = try await replica.receive([LogEntry(seq: 1, message: "a")], of: "L")
        store.failing.store(true, ordering: .relaxed)
        await #expect(throws: GroupCommit.Failed.self) { try await replica.receive([LogEntry(seq: 2, message: "b")], of: "L") }
        store.failing.store(false, ordering: .relaxed)
        await #expect(throws: GroupCommit.Failed.self) { try await replica.receive([LogEntry(seq: 3, message: "c")], of: "L") }
        #expect(store.lastSeq == 2, "seq 3 arrived after the failure and was not stored")
        #expect(try replica.read(from: 1, limit: 10).map(\.seq) == [1], "seq 2 was stored but never durable")
        #expect(store.syncCount == 2)
        let state = replica.replicaState
        #expect(state.storageFailure?.contains("Input/output error") == true)
        #expect(state.seq == 1, "a heartbeat answer claims only the durable prefix")

        // The master hears it in the heartbeat answer: the secondary is missing, and why.
        let cluster = TestCluster(thresholds: .init(suspectAfterMisses: 2, unhealthyAfterMisses: 4))
        let answer = ReplicaState(
            seq: state.seq, incarnation: state.incarnation, logID: cluster.master.logID, storageFailure: state.storageFailure)
        for _ in 0..<2 { await cluster.master.onContact("s1", answer) }
        let s1 = cluster.master.health.secondaries[0]
        #expect(s1.status == .suspected)
        #expect(s1.problem?.description.hasPrefix("the disk failed an fsync (") == true)
        #expect(s1.ackedSeq == 0, "a failed disk counts towards no write concern")
    }

    /// A write the store refuses (a full disk) is not final, unlike a failed fsync: once
    /// there is room, the master's resend is stored, and nothing was acknowledged before.
    @Test func aSecondaryTakesTheResendAfterAFailedWrite() async throws {
        let store = FailingDiskStore()
        let replica = try SecondaryNode(store: store, clock: ManualClock()).node
        store.appendFails.store(true, ordering: .relaxed)
        await #expect(throws: LogStoreError.self) {
            try await replica.receive([LogEntry(seq: 1, message: "a"), LogEntry(seq: 2, message: "b")], of: "L")
        }
        #expect(replica.replicaState.seq == 0)
        store.appendFails.store(false, ordering: .relaxed)
        let state = try await replica.receive([LogEntry(seq: 1, message: "a"), LogEntry(seq: 2, message: "b")], of: "L")
        #expect(state.seq == 2)
        #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["a", "b"])
        #expect(replica.commit.failure == nil)
    }

    /// A full disk on a master with a file log: the append whose write the disk refused gets
    /// `500`, later ones are refused (nothing of them kept) while the disk stays full, and the
    /// first append after there is room tries the write again and goes on. The refused
    /// message lands then, in its place: like a `504`, a `500` may still be in the log.
    @Test func aMasterRefusesAppendsWhileTheDiskIsFullAndGoesOnOnceThereIsRoom() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-disk-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let disk = FillableDisk(full: true)
        let store = try FileLogStore(directory: folder, options: .init(writeFile: disk.write))
        let node = try MasterNode(settings: MasterSettings(secondaries: ["s1"]), store: store, clock: ManualClock(), logger: Self.quiet)
        let master = node.master
        for message in ["a", "b"] {
            await #expect { try await master.append(AppendRequest(message: message, w: 1)) } throws: { error in
                guard case .storeFailed(let reason) = error as? Master.AppendError else { return false }
                return reason.contains("No space left on device")
            }
        }
        #expect(master.health.storageFailure == nil, "a full disk is not final")
        disk.makeRoom()
        let appended = try await master.append(AppendRequest(message: "c", w: 1))
        #expect(appended.seq == 2)
        #expect(try master.read(from: 1, limit: 10).map(\.message) == ["a", "c"])
    }

    /// A segment that an append closed is fsynced by the next group commit, off the master's
    /// lock. If that fsync fails, the append fails and the node shows the failure like any other.
    @Test func aFailedFsyncWhileClosingASegmentIsReportedToo() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-disk-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let diskFails = Atomic(false)
        let store = try FileLogStore(directory: folder, options: .init(segmentSize: 10) { descriptor in
            guard diskFails.load(ordering: .relaxed) else { return FileLogStore.systemFsync(descriptor) }
            errno = EIO
            return -1
        })
        let node = try MasterNode(settings: MasterSettings(secondaries: ["s1"]), store: store, clock: ManualClock(), logger: Self.quiet)
        let master = node.master
        _ = try await master.append(AppendRequest(message: "a", w: 1))
        #expect(master.health.storageFailure == nil)
        diskFails.store(true, ordering: .relaxed)
        await #expect(throws: Master.AppendError.self) { try await master.append(AppendRequest(message: "b", w: 1)) }
        #expect(master.health.storageFailure?.contains("Input/output error") == true, "\(master.health)")
        #expect(master.health.readOnly)
    }

    /// A log the master cannot read back is never taken for a short one: the list answers
    /// 500 with the reason, and replication backs off, says why, and delivers once the
    /// read works again.
    @Test func aFailedReadIsAnErrorNotAShortLog() async throws {
        let store = FailingDiskStore()
        let (node, replica, clock) = Self.master(on: store)
        let master = node.master
        _ = try await master.append(AppendRequest(message: "a", w: 1))
        store.readFails.store(true, ordering: .relaxed)
        try await Application(router: node.router()).test(.router) { client in
            try await client.execute(uri: "/messages", method: .get) { response in
                #expect(response.status == .internalServerError)
                #expect((json(response.body)["error"] as? String)?.hasPrefix("the log store could not be read: read ") == true)
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await master.runReplicationStreams() }
            defer { group.cancelAll() }
            let append = Task { try await master.append(AppendRequest(message: "b", w: 2)) }
            await clock.waitForSleepers(1)  // the stream failed to read and backs off
            #expect(master.health.secondaries[0].problem?.description.contains("Input/output error") == true, "\(master.health)")
            let before = try replica.read(from: 1, limit: 10)
            #expect(before.isEmpty)
            store.readFails.store(false, ordering: .relaxed)
            clock.advance(by: .seconds(60))
            let appended = try await append.join()
            #expect(appended.seq == 2)
            let after = try replica.read(from: 1, limit: 10)
            #expect(after.map(\.message) == ["a", "b"])
        }
    }

    @Test func theHTTPAnswersSayWhy() async throws {
        let store = FailingDiskStore()
        store.failing.store(true, ordering: .relaxed)
        let node = try MasterNode(settings: MasterSettings(secondaries: ["s1"]), store: store, clock: ManualClock(), logger: Self.quiet)
        let master = node.master
        try await Application(router: node.router()).test(.router) { client in
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: #"{"message": "x", "w": 1}"#)) { response in
                #expect(response.status == .internalServerError)
                #expect(json(response.body)["error"] as? String
                    == "the log store refused the append: " + (master.commit.failure?.description ?? "(no failure recorded)"))
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(json(response.body)["readOnly"] as? Bool == true)
                #expect((json(response.body)["storageFailure"] as? String)?.contains("Input/output error") == true)
            }
        }

        let disk = FailingDiskStore()
        let secondary = try SecondaryNode(store: disk, clock: ManualClock())
        disk.failing.store(true, ordering: .relaxed)
        let batch = #"{"log": "L", "entries": [{"seq": 1, "message": "a"}]}"#
        try await Application(router: secondary.router()).test(.router) { client in
            try await client.execute(uri: "/replicate", method: .post, body: ByteBuffer(string: batch)) { response in
                #expect(response.status == .internalServerError)
                #expect((json(response.body)["error"] as? String)?.hasPrefix("the disk failed an fsync") == true)
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect((json(response.body)["storageFailure"] as? String)?.contains("Input/output error") == true)
            }
        }
    }
}

import Foundation
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Synchronization
import Testing
@testable import ReplogNode

/// A file store that counts its fsyncs and can hold them back.
final class ObservedStore: LogStore {
    let inner: FileLogStore
    private let syncs = Mutex(0)
    private let gate = Mutex(true)

    init(directory: URL) throws { inner = try FileLogStore(directory: directory) }

    var syncCount: Int { syncs.withLock { $0 } }
    var lastSeq: Int { inner.lastSeq }
    var isDurable: Bool { true }
    func append(_ entries: [LogEntry]) throws(LogStoreError) { try inner.append(entries) }
    func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] { try inner.read(from: seq, limit: limit) }
    func sync() throws(LogStoreError) {
        syncs.withLock { $0 += 1 }
        try inner.sync()
    }
    func flush() throws(LogStoreError) { try inner.flush() }
}

/// A store in memory whose fsync blocks until the test opens the gate.
final class GatedSyncStore: LogStore {
    private let inner = InMemoryLogStore()
    private let gate = DispatchSemaphore(value: 0)
    /// Yields each time an fsync starts (and blocks).
    let syncStarted: AsyncStream<Void>
    private let syncStartedContinuation: AsyncStream<Void>.Continuation

    init() { (syncStarted, syncStartedContinuation) = AsyncStream.makeStream() }

    var lastSeq: Int { inner.lastSeq }
    var isDurable: Bool { true }
    func append(_ entries: [LogEntry]) throws(LogStoreError) { try inner.append(entries) }
    func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] { try inner.read(from: seq, limit: limit) }
    func hash(at seq: Int) -> String? { inner.hash(at: seq) }
    private let syncs = Mutex(0)
    var syncCount: Int { syncs.withLock { $0 } }
    private let failing = Mutex(false)
    func sync() throws(LogStoreError) {
        syncs.withLock { $0 += 1 }
        syncStartedContinuation.yield()
        gate.wait()
        if failing.withLock({ $0 }) { throw .io("the disk failed") }
    }
    /// Lets the fsync that waits finish, or fail (`failing`: it and every later one).
    func openGate(failing: Bool = false) {
        if failing { self.failing.withLock { $0 = true } }
        gate.signal()
    }
}

/// A store in memory that tells, batch by batch, which seqs it was given.
final class AppendObservedStore: LogStore {
    private let inner = InMemoryLogStore()
    let appended: AsyncStream<[Int]>
    private let appendedContinuation: AsyncStream<[Int]>.Continuation

    init() { (appended, appendedContinuation) = AsyncStream.makeStream() }

    var lastSeq: Int { inner.lastSeq }
    func append(_ entries: [LogEntry]) throws(LogStoreError) {
        try inner.append(entries)
        if !entries.isEmpty { appendedContinuation.yield(entries.map(\.seq)) }
    }
    func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] { try inner.read(from: seq, limit: limit) }
}

@Suite(.timeLimit(.minutes(1)))
struct GroupCommitTests {
    /// 200 concurrent appends share fsyncs instead of paying one each, and each is
    /// answered only after an fsync that covers it.
    @Test func concurrentAppendsShareFsyncs() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-gc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try ObservedStore(directory: folder)
        let commit = GroupCommit(store: store, policy: .always)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<200 {
                group.addTask {
                    let seq = try Self.appendNext(store, "m\(index)")
                    try await commit.makeDurable(through: seq)
                    #expect(commit.durableSeq >= seq)
                }
            }
            try await group.waitForAll()
        }
        #expect(commit.durableSeq == 200)
        #expect(store.syncCount >= 1)
        #expect(store.syncCount < 200, "fsyncs must be shared, got \(store.syncCount)")
    }

    @Test func neverAndIntervalDoNotWaitForDisk() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-gc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try ObservedStore(directory: folder)
        for policy in [FsyncPolicy.never, .interval] {
            let commit = GroupCommit(store: store, policy: policy)
            let seq = try Self.appendNext(store, "x")
            try await commit.makeDurable(through: seq)
            #expect(commit.durableSeq == seq)
        }
        #expect(store.syncCount == 0)
    }

    /// Under `never` and `interval` an append is answered once it is written (no fsync):
    /// a file store's `append` only fills memory, so `makeDurable` waits for the write, and
    /// a crash of the process (another process reads the files) loses nothing answered.
    @Test func neverAndIntervalAnswerOnlyWhatIsWritten() async throws {
        for policy in [FsyncPolicy.never, .interval] {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-gc-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: folder) }
            let store = try FileLogStore(directory: folder)
            let commit = GroupCommit(store: store, policy: policy)
            try store.append([LogEntry(seq: 1, message: "a")])
            #expect(commit.durableSeq == 0, "\(policy): not written yet")
            try await commit.makeDurable(through: 1)
            #expect(commit.durableSeq == 1)
            #expect(try FileLogStore(directory: folder).read(from: 1, limit: 9).map(\.message) == ["a"], "\(policy)")
        }
    }

    /// A write the disk refuses fails the appends waiting for it, but is not final like a
    /// failed fsync: the next append tries again, and once there is room the log goes on.
    @Test func aRefusedWriteFailsItsWaitersButIsNotFinal() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-gc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let disk = FillableDisk(full: true)
        let store = try FileLogStore(directory: folder, options: .init(writeFile: disk.write))
        let commit = GroupCommit(store: store, policy: .always)
        try store.append([LogEntry(seq: 1, message: "a")])
        await #expect(throws: LogStoreError.self) { try await commit.makeDurable(through: 1) }
        #expect(commit.failure == nil && commit.durableSeq == 0)
        disk.makeRoom()
        await commit.retryRefusedWrite()
        #expect(store.refusedWrite == nil)
        try store.append([LogEntry(seq: 2, message: "b")])
        try await commit.makeDurable(through: 2)
        #expect(commit.durableSeq == 2)
    }

    /// The master replicates only what is durable: a secondary never holds a message the
    /// master could lose in a crash. The stream starts while seq 2 waits for its fsync, so
    /// its first batch must stop at seq 1.
    @Test func masterReplicatesOnlyDurableEntries() async throws {
        let store = GatedSyncStore()
        try store.append([LogEntry(seq: 1, message: "durable before the master starts")])
        let clock = ManualClock()
        let transport = InMemoryTransport(clock: clock)
        let secondaryStore = AppendObservedStore()
        let secondary = try SecondaryNode(store: secondaryStore, clock: clock)
        let replica = secondary.replica
        transport.connect(secondary.node, as: "s1")
        let node = try MasterNode(settings: MasterSettings(secondaries: ["s1"]), store: store, transport: transport, clock: clock)
        let master = node.master
        #expect(master.commit.durableSeq == 1)
        let result = try await withThrowingTaskGroup(of: Master.AppendResult?.self) { group in
            group.addTask { try await master.append(AppendRequest(message: "durable", w: 1)) }
            // Written but not yet flushed: the stream must not send it.
            for await _ in store.syncStarted { break }
            #expect(store.lastSeq == 2 && master.commit.durableSeq == 1)
            group.addTask {
                await master.runReplicationStreams()
                return nil
            }
            var batches = secondaryStore.appended.makeAsyncIterator()
            let first = await batches.next()
            #expect(first == [1], "the first batch stops at the durable prefix")
            store.openGate()
            if first == [1] { #expect(await batches.next() == [2], "seq 2 follows once its fsync is done") }
            var result: Master.AppendResult?
            while let next = try await group.next() {
                if let next { result = next }
                group.cancelAll()
            }
            return try #require(result)
        }
        #expect(result.seq == 2)
        #expect(store.syncCount >= 1)
        #expect(try replica.read(from: 1, limit: 10).map(\.seq) == [1, 2], "both are durable now and replicated in order")
    }

    /// With failover the master's fsync and the replication overlap: a secondary gets the
    /// entry while the master's fsync still runs. But no client hears of it before that
    /// fsync is done, so the master counts itself towards `w` only then. Here the fsync
    /// fails: one secondary holds the entry, and the `w=2` append must fail all the same.
    @Test(.timeLimit(.minutes(1))) func anElectedMasterSendsBeforeItsFsyncButAnswersOnlyAfterIt() async throws {
        let store = GatedSyncStore()
        let clock = ManualClock()
        let stamps = EpochStamps()
        let transport = InMemoryTransport(clock: clock, stamps: stamps)
        transport.connect(try SecondaryNode(clock: clock).node, as: "s1")
        let node = try Node(
            settings: Node.Settings(me: "m", members: ["m", "s1"], master: MasterSettings(secondaries: []), canVote: false, bootstrap: true),
            store: store, commit: GroupCommit(store: store, policy: .always), directory: nil, transport: transport, stamps: stamps, clock: clock)
        let running = Task { try await node.run() }
        defer { running.cancel() }
        await node.waitUntilSettled(upTo: .seconds(60))  // the manual clock never ends the wait: the takeover does
        let master = try #require(node.currentMaster)
        let outcome = await withTaskGroup(of: Result<Master.AppendResult, Master.AppendError>?.self) { group in
            group.addTask {
                do throws(Master.AppendError) {
                    return .success(try await master.append(AppendRequest(message: "m", w: 2)))
                } catch {
                    return .failure(error)
                }
            }
            // The master counted s1's answer (a delivery's or a heartbeat's): bounded by the
            // test's time limit.
            while master.health.secondaries.first?.ackedSeq ?? 0 < 1, !Task.isCancelled { await Task.yield() }
            #expect(master.commit.durableSeq == 0, "s1 holds seq 1 while the master's fsync still runs")
            // Nor is it committed: the master's own copy counts only once it is durable.
            #expect(node.commitPoint.learned == 0)
            #expect(master.commitSeq == 0)
            store.openGate(failing: true)
            var outcome: Result<Master.AppendResult, Master.AppendError>?
            while let next = await group.next() {
                if let next {
                    outcome = next
                    group.cancelAll()
                }
            }
            return outcome
        }
        guard case .failure(.storeFailed) = outcome else {
            Issue.record("a w=2 append that only s1 holds durably was answered \(String(describing: outcome))")
            return
        }
    }

    /// A heartbeat answer counts towards `w` like an acknowledgement: while a delivery waits
    /// for its fsync, the secondary neither claims nor lists it.
    @Test func aSecondaryClaimsAndListsOnlyWhatIsDurable() async throws {
        let store = GatedSyncStore()
        let replica = try SecondaryNode(store: store, clock: ManualClock()).node
        async let delivered = replica.receive([LogEntry(seq: 1, message: "a")], of: "L")
        for await _ in store.syncStarted { break }
        #expect(store.lastSeq == 1, "stored…")
        #expect(replica.replicaState.seq == 0, "…but not durable yet")
        #expect(try replica.read(from: 1, limit: 10).isEmpty)
        store.openGate()
        #expect(try await delivered.seq == 1)
        #expect(replica.replicaState.seq == 1)
        #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["a"])
    }

    private static func appendNext(_ store: ObservedStore, _ message: String) throws -> Int {
        // Appends are serialized by the master in production; here a lock does it.
        try appendLock.withLock { _ in
            let seq = store.lastSeq + 1
            try store.append([LogEntry(seq: seq, message: message)])
            return seq
        }
    }

    private static let appendLock = Mutex(())
}

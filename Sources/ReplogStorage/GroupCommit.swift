import CoreMetrics
import Logging
import Metrics
import ReplogCore
import ServiceLifecycle
import Synchronization

/// When a node flushes its log to disk (`--fsync`).
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// Before anything is acknowledged or replicated. Concurrent appends share one fsync.
    case always
    /// In the background every `GroupCommit.interval`; a crash may lose the last moments.
    case interval
    /// Never explicitly; the operating system writes back when it likes.
    case never
}

/// Makes appended entries durable, sharing one fsync among all callers that wait at
/// the same time (group commit). It is also the store's one writer: a file store's
/// `append` only adds to memory, and the leader's `sync` (or, under `interval` and `never`,
/// `flush`) writes everything appended so far in one go, on the thread pool.
///
/// The first caller to find no fsync running becomes the leader: it runs one fsync, which
/// covers every entry written before it started, wakes everyone it covered, and hands the
/// lead to a caller that arrived too late to be covered. No caller waits for more than two
/// fsyncs, however busy the node is.
///
/// A failed fsync is final. After one, Linux may already have dropped the dirty pages it
/// could not write and marked them clean, so a later fsync that succeeds proves nothing
/// about them (PostgreSQL's "fsyncgate"; etcd and PostgreSQL stop the process). From then
/// on nothing becomes durable and every caller gets `Failed`; the node must be restarted,
/// and recovery reads what is really on disk.
public final class GroupCommit: Service {
    public static let interval: Duration = .milliseconds(100)

    /// The store failed an fsync earlier; nothing becomes durable until the node restarts.
    public struct Failed: Error, Equatable, CustomStringConvertible {
        /// The error of the fsync that failed.
        public let reason: String
        public var description: String {
            "the disk failed an fsync (\(reason)); this node makes nothing durable any more: "
                + "restart it, and it recovers from what is really on disk"
        }
    }

    private struct State {
        var durableSeq: Int
        /// Who runs the next fsync, and who waits for one.
        var rounds = GroupRounds()
        var failure: Failed?
    }

    public let store: any LogStore
    public let policy: FsyncPolicy
    /// Where writes, fsyncs and reads of a disk run (off the cooperative threads).
    public let io: BlockingIO
    private let clock: any NodeClock
    private let state: Mutex<State>
    /// Set once with `State.failure`, read without the lock on every append.
    private let failed = Atomic(false)
    /// Counts cuts of the log and restarts of it, raised under the lock with `durableSeq`
    /// and read without it on every append (`cutCount`): an fsync that started before one
    /// vouches for nothing written after it.
    private let cuts = Atomic(0)
    private let fsyncDuration: Timer
    /// 1 once an fsync failed (`replog_storage_failed`), for alerting.
    private let storageFailed: Gauge
    private let logger: Logger

    public init(
        store: any LogStore, policy: FsyncPolicy, io: BlockingIO = .threadPool, clock: any NodeClock = SystemClock(),
        logger: Logger = Logger(label: "replog.storage"), metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.store = store
        self.policy = policy
        self.io = io
        self.clock = clock
        self.logger = logger
        self.fsyncDuration = Timer(label: "replog_fsync_duration_seconds", factory: metricsFactory)
        self.storageFailed = Gauge(label: "replog_storage_failed", factory: metricsFactory)
        storageFailed.record(0)
        // What recovery found on disk is durable already.
        self.state = Mutex(State(durableSeq: store.completeSeq))
    }

    /// Why this node makes nothing durable any more, if an fsync failed: one run by this
    /// group commit, or one the store ran itself (closing a segment).
    public var failure: Failed? {
        if failed.load(ordering: .acquiring) { return state.withLock { $0.failure } }
        guard let reason = store.failedSync else { return nil }
        return fail(LogStoreError.io(reason))
    }

    /// Whether callers wait for the disk at all: for a store that keeps nothing, no.
    private var waitsForDisk: Bool { store.isDurable }

    /// The highest seq that may leave this node (be replicated or acknowledged): never
    /// inside a batch (`LogStore.completeSeq`), since part of a batch is no message. Under
    /// `always` it is fsynced; under `interval` and `never`, written (a crash of the process
    /// loses none of it).
    public var durableSeq: Int {
        waitsForDisk ? min(state.withLock { $0.durableSeq }, store.completeSeq) : store.completeSeq
    }

    /// Up to `limit` entries from `seq` on, stopping at the durable prefix.
    public func readDurable(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] {
        try durableEntries(from: seq, limit: limit)
    }

    private func durableEntries(from seq: Int, limit: Int, maxBytes: Int = .max) throws(LogStoreError) -> [LogEntry] {
        let durable = durableSeq
        guard seq <= durable else { return [] }
        return try store.read(from: seq, limit: min(limit, durable - max(seq, 1) + 1), maxBytes: maxBytes)
    }

    /// `readDurable`, on `io` when the store reads from a disk (off the cooperative threads),
    /// stopping before the entry that would take the page past `maxBytes` as records (the
    /// first entry always comes, however large).
    public func readDurable(from seq: Int, limit: Int, maxBytes: Int = .max) async throws(LogStoreError) -> [LogEntry] {
        guard store.readsFromDisk else { return try durableEntries(from: seq, limit: limit, maxBytes: maxBytes) }
        return try await io.run { () throws(LogStoreError) in try self.durableEntries(from: seq, limit: limit, maxBytes: maxBytes) }
    }

    /// `store.readRecords`: at once when nothing of it has to come from the disk (recent
    /// records, which a replication stream mostly reads, are in memory or the page cache),
    /// otherwise on `io`, so that a secondary catching up on old records never holds a
    /// cooperative thread while the disk seeks.
    public func readRecords(from seq: Int, limit: Int, maxBytes: Int) async throws(LogStoreError) -> RecordBatch? {
        if case .some(let batch) = try store.readRecordsWithoutWaiting(from: seq, limit: limit, maxBytes: maxBytes) { return batch }
        return try await io.run { () throws(LogStoreError) in try self.store.readRecords(from: seq, limit: limit, maxBytes: maxBytes) }
    }

    /// Whether the disk refused the last write (a full disk): the store then refuses appends
    /// until a write succeeds, so call `retryRefusedWrite` before the next one.
    public var writeWasRefused: Bool { store.refusedWrite != nil }

    /// Tries the refused write again, so that room on the disk is noticed by the next
    /// append rather than never.
    public func retryRefusedWrite() async {
        _ = try? await io.run { () throws(LogStoreError) in try self.store.flush() }
    }

    /// Returns once every entry up to `seq` is durable: fsynced under `always`, written under
    /// `interval` and `never` (at once for a store that keeps nothing).
    /// - Throws: `Failed` once an fsync has failed, whatever the policy; the store's
    ///   `refusedWrite` when the disk refuses the write (not final).
    public func makeDurable(through seq: Int) async throws {
        guard waitsForDisk else {
            if let failure { throw failure }
            return
        }
        let role = try await withCheckedThrowingContinuation { (continuation: GroupRounds.Waiter) in
            let now = state.withLock { state -> Result<GroupRounds.Role, Failed>? in
                if state.durableSeq >= seq { return .success(.covered) }
                if let failure = state.failure { return .failure(failure) }
                return state.rounds.join(seq, continuation).map { .success($0) }
            }
            if let now { continuation.resume(with: now.mapError { $0 as any Error }) }
        }
        if role == .lead { try await lead() }
    }

    /// How many times the log was cut or started again: an entry appended before a change of
    /// this count may no longer be in the log, whatever `durableSeq` says of its seq.
    public var cutCount: Int { cuts.load(ordering: .acquiring) }

    /// The log was started again after `seq` (`LogStore.restart(at:)`, durable by itself):
    /// everything up to `seq` counts as durable, there being nothing to lose there.
    public func restarted(at seq: Int) {
        state.withLock { state in
            state.durableSeq = seq
            cuts.add(1, ordering: .releasing)
        }
    }

    /// The log was cut after `seq` (the store made the cut durable itself).
    public func truncated(after seq: Int) {
        state.withLock { state in
            state.durableSeq = min(state.durableSeq, seq)
            cuts.add(1, ordering: .releasing)
        }
    }

    private func lead() async throws {
        // Everything written before this read is covered by the fsync below (up to the last
        // whole batch: the rest of an open one is not durable until its end is).
        let (target, cutsBefore) = (store.completeSeq, cutCount)
        let started = clock.now
        defer { if policy == .always { fsyncDuration.recordNanoseconds((clock.now - started).nanoseconds) } }
        do {
            try await io.run { [policy] in try policy == .always ? self.store.sync() : self.store.flush() }
        } catch {
            // A failed fsync is final (see above). A refused write is not (the bytes stay,
            // and the store tries again), nor is anything else (the thread pool shut down):
            // those fail only the callers waiting now.
            let failure: any Error = (error as? LogStoreError)?.isFinal == true ? fail(error) : error
            let waiters = state.withLock { $0.rounds.failed() }
            for waiter in waiters { waiter.resume(throwing: failure) }
            throw failure
        }
        let (covered, nextLeader) = state.withLock { state in
            // After a cut, `target` may name entries written since, which this fsync missed.
            if cutCount == cutsBefore { state.durableSeq = max(state.durableSeq, target) }
            return state.rounds.finished(through: state.durableSeq)
        }
        for waiter in covered { waiter.resume(returning: .covered) }
        nextLeader?.resume(returning: .lead)
    }

    /// Records the first failed fsync for good and returns it.
    private func fail(_ error: any Error) -> Failed {
        let (failure, isFirst, durableSeq) = state.withLock { state in
            let isFirst = state.failure == nil
            if isFirst { state.failure = Failed(reason: "\(error)") }
            return (state.failure!, isFirst, state.durableSeq)
        }
        failed.store(true, ordering: .releasing)
        if isFirst {
            storageFailed.record(1)
            logger.critical("fsync failed: this node makes nothing durable any more; restart it", metadata: [
                "replog.error": "\(error)", "replog.durableSeq": "\(durableSeq)",
            ])
        }
        return failure
    }

    /// With the `interval` policy, flushes in the background; otherwise waits for shutdown.
    /// Either way, what is still unwritten at shutdown is written (a message whose append
    /// was answered "shutting down" stays in the log).
    public func run() async throws {
        guard policy == .interval, store.isDurable else {
            try? await gracefulShutdown()
            if store.isDurable, failure == nil { try? await io.run { try self.store.flush() } }
            return
        }
        while !Task.isCancelled, !Task.isShuttingDownGracefully, failure == nil {
            try? await clock.sleep(for: Self.interval)
            do {
                try await io.run { try self.store.sync() }
            } catch let error as LogStoreError where error.isFinal {
                _ = fail(error)
            } catch is LogStoreError {
                continue  // a refused write: the next round tries again
            } catch {
                return  // the thread pool shut down: so does the node
            }
        }
        if failure == nil { try? store.sync() }
    }
}

extension LogStoreError {
    /// Whether this error ends the node's durability for good: a failed fsync (or any other
    /// disk error of a sync), but not a write the disk refused, whose bytes are still there.
    var isFinal: Bool {
        if case .refusedWrite = self { false } else { true }
    }
}

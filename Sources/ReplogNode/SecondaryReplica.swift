import CoreMetrics
import Foundation
import Logging
import Metrics
import ReplogCore
import ReplogStorage
import Synchronization

/// What `--delay` and `--error-rate` do to a secondary, and its hold-back limit.
public struct SecondarySettings: Sendable {
    /// Each replication request waits this long before it is stored, listed and acknowledged.
    public var delay: Duration
    /// Probability of answering 500 *after* storing a replication request.
    public var errorRate: Double
    /// How far ahead of its contiguous prefix a secondary buffers out-of-order entries.
    public var holdBackCapacity: Int
    /// Longest a long poll (`GET /messages?wait=`) waits here, whatever it asks for.
    public var maxLongPoll: Duration

    public init(delay: Duration = .zero, errorRate: Double = 0, holdBackCapacity: Int = 100_000, maxLongPoll: Duration = .seconds(60)) {
        self.delay = delay
        self.errorRate = errorRate
        self.holdBackCapacity = holdBackCapacity
        self.maxLongPoll = maxLongPoll
    }
}

/// The secondary role of a node (`Node`, which every `replog secondary` runs as):
/// carries out what its `SecondaryInstance` decides about each delivery (record the log it
/// follows, start the log again, store, make durable) and answers with what the instance
/// says it may claim. Only a node makes one.
public final class SecondaryReplica: Sendable {
    /// The secondary stored the entries but was told (by `--error-rate`) to fail the request.
    public struct InjectedFailure: Error, Equatable {
        public var state: ReplicaState { stored.state }
        public let stored: Stored
    }

    /// What a delivery left in the store, as its store step saw it (under the lock that
    /// orders deliveries and cuts): what the failover rules ask of it (`HistoryAdoption`).
    public struct Stored: Sendable, Equatable {
        /// What it may answer with.
        public var state: ReplicaState
        /// Its hash at the seq asked for (`mark`) once stored, before the fsync.
        public var markHash: String?
        /// The last seq the store held just before this delivery's entries: read when they
        /// were appended, not when the request came, as a cut may run between the two.
        public var storedBefore: Int
        /// Whether this delivery started the log again at the master's start.
        public var startedAgain: Bool
    }

    public typealias ForeignLog = SecondaryInstance.ForeignLog
    public typealias Diverged = SecondaryInstance.Diverged

    /// Where this secondary last started its log again, behind the master's retention.
    public var restartedAt: Int? { protected.withLock { $0.instance.restartedAt } }

    public let store: any LogStore
    /// Flushes the log; nothing is acknowledged before it is durable.
    public let commit: GroupCommit
    public let settings: SecondarySettings
    public let incarnation: String
    private let clock: any NodeClock
    /// The protocol state, and the disk work under way; the store is appended to under the
    /// same lock, so that the store's order is the instance's.
    private let protected: Mutex<Protected>
    private let random: @Sendable () -> Double
    private let onFollow: (@Sendable (String) throws -> Void)?
    private let metrics: SecondaryMetrics
    private let logger: Logger
    /// Wakes long-polling readers as the durable prefix grows.
    let watch: LogWatch

    /// - Parameters:
    ///   - logID: the master log `store` already holds (from the data dir), if any.
    ///   - onFollow: called, before anything is acknowledged, when the replica starts
    ///     following a master log, so the choice survives a restart.
    ///   - random: source of numbers in `0..<1` for `errorRate`; tests pass a fixed sequence.
    init(
        store: any LogStore = InMemoryLogStore(),
        fsync: FsyncPolicy = .always,
        io: BlockingIO = .threadPool,
        logID: String? = nil,
        settings: SecondarySettings = SecondarySettings(),
        clock: any NodeClock = SystemClock(),
        incarnation: String = UUID().uuidString,
        onFollow: (@Sendable (String) throws -> Void)? = nil,
        logger: Logger = Logger(label: "replog.storage"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        commit: GroupCommit? = nil,
        watch: LogWatch? = nil
    ) {
        self.store = store
        self.commit = commit ?? GroupCommit(store: store, policy: fsync, io: io, clock: clock, logger: logger, metricsFactory: metricsFactory)
        self.metrics = SecondaryMetrics(factory: metricsFactory)
        self.logger = logger
        self.settings = settings
        self.clock = clock
        self.incarnation = incarnation
        self.onFollow = onFollow
        self.random = random
        self.protected = Mutex(Protected(
            instance: SecondaryInstance(
                heldThrough: store.lastSeq, logID: logID, incarnation: incarnation, holdBackCapacity: settings.holdBackCapacity)))
        self.watch = watch ?? LogWatch(durable: self.commit.durableSeq)
    }

    /// What this secondary holds now: its durable contiguous prefix. A heartbeat answer
    /// counts towards `w` like an acknowledgement, so it must not claim entries that are
    /// stored but still waiting for their fsync. While the log is rewritten (`DiskWork`), what
    /// it claimed as the work began.
    public var replicaState: ReplicaState {
        let storageFailure = commit.failure?.description
        var state = protected.withLock { $0.diskWork?.claimed ?? claimed(by: $0.instance) }
        state.storageFailure = storageFailure
        return state
    }

    /// What `instance` may claim of the store now. Read under the lock that stores, so the
    /// durable prefix is never past the stored one.
    private func claimed(by instance: SecondaryInstance, atMost limit: Int = .max) -> ReplicaState {
        let seq = min(instance.claim(completeSeq: .max, durableSeq: commit.durableSeq), limit)
        return ReplicaState(seq: seq, incarnation: instance.incarnation, logID: instance.logID, hash: store.hash(at: seq))
    }

    /// The running hash of its log at `seq`, if it holds (and lists) that seq.
    public func hash(at seq: Int) -> String? {
        seq <= replicaState.seq ? store.hash(at: seq) : nil
    }

    /// Entries received out of order and waiting for a gap to fill.
    public var heldBackCount: Int { protected.withLock { $0.instance.heldBackCount } }

    /// Accepts a delivery of master log `logID`: entries may be duplicated or out of order.
    /// - Parameter adopt: see `SecondaryInstance.Delivery.adopt`.
    /// - Throws: `ForeignLog` when this secondary holds another log; `OlderEpoch` when a
    ///   later master already delivered here; `InjectedFailure`
    ///   (after storing) when `errorRate` says so; `GroupCommit.Failed` once its disk failed
    ///   an fsync (nothing is stored any more then).
    public func receive(_ entries: [LogEntry], ids: [String?] = [], of logID: String, adopt: Bool = false) async throws -> ReplicaState {
        try await receive(RecordFraming.DecodedRecords(entries: entries, ids: ids), of: logID, adopt: adopt)
    }

    /// Like `receive(_:ids:of:adopt:)`, with the records' batch marks: a batch counts (is
    /// acknowledged, listed, claimed) only once all of it is here.
    /// - Parameter epoch: with failover, the epoch of the master that sent them
    ///   (`SecondaryInstance.Delivery.epoch`).
    public func receive(
        _ records: RecordFraming.DecodedRecords, of logID: String, adopt: Bool = false, epoch: Int? = nil
    ) async throws -> ReplicaState {
        try await receive(records, of: logID, adopt: adopt, epoch: epoch, hashAt: nil).state
    }

    /// Like `receive(_:of:adopt:epoch:)`, and returns its hash at `mark` as it was once the
    /// delivery was stored, before its fsync: a retention pass that runs meanwhile may drop
    /// that seq, and with it what proves that this log holds the master's there
    /// (`HistoryAdoption`; the real-node simulation, seed 1109).
    public func receive(
        _ records: RecordFraming.DecodedRecords, of logID: String, adopt: Bool, epoch: Int?, hashAt mark: Int?
    ) async throws -> Stored {
        if settings.delay > .zero {
            try await clock.sleep(for: settings.delay)
        }
        if let failure = commit.failure { throw failure }
        if commit.writeWasRefused { await commit.retryRefusedWrite() }
        let delivery = SecondaryInstance.Delivery(
            logID: logID, entries: records.entries, ids: records.ids, continues: records.continues,
            start: records.start.map { ($0.firstSeq, $0.hash) }, adopt: adopt, epoch: epoch)
        let stored = try await store(delivery, start: records.start, hashAt: mark)
        try await commit.makeDurable(through: stored.state.seq)
        watch.advanced(to: min(stored.state.seq, commit.durableSeq))
        if settings.errorRate > 0, random() < settings.errorRate {
            metrics.injectedFailures.increment()
            throw InjectedFailure(stored: stored)
        }
        return stored
    }

    /// Stores what `delivery` makes ready, once what its admission names is on disk.
    private func store(_ delivery: SecondaryInstance.Delivery, start: LogStart?, hashAt mark: Int?) async throws -> Stored {
        while true {
            let step = try protected.withLock { protected throws -> DeliveryStep in
                guard protected.diskWork == nil else { return .waitForDiskWork }
                let admission = try protected.instance.admit(delivery, log: StoreLog(store: store))
                guard admission.follow == nil || onFollow == nil, admission.startAgainAt == nil else {
                    protected.diskWork = DiskWork(claimed: claimed(by: protected.instance))
                    return .diskWork(admission, heldThrough: protected.instance.contiguousSeq)
                }
                return .stored(try stored(delivery, admitted: admission, in: &protected.instance, hashAt: mark))
            }
            let (admission, heldThrough): (SecondaryInstance.Admission, Int)
            switch step {
            case .stored(let stored): return stored
            case .waitForDiskWork:
                await diskWorkDone()
                continue
            case .diskWork(let admitted, let held): (admission, heldThrough) = (admitted, held)
            }
            // Rare (once per master log, or once the master's retention passed this log): on
            // the storage's thread pool, while this replica's other deliveries wait.
            do {
                try await commit.io.value { [store, commit, watch, onFollow] in
                    if let follow = admission.follow { try onFollow?(follow) }
                    if admission.startAgainAt != nil, let start {
                        try store.restart(at: start)
                        commit.restarted(at: start.firstSeq - 1)
                        watch.cut(to: start.firstSeq - 1)
                    }
                }
            } catch {
                endDiskWork { _ in }
                throw error
            }
            if admission.startAgainAt != nil, let start {
                logger.warning("restarted the log at the master's first kept seq: it no longer holds what this node lacked", metadata: [
                    "replog.firstSeq": "\(start.firstSeq)", "replog.heldThrough": "\(heldThrough)",
                ])
            }
            return try endDiskWork { try stored(delivery, admitted: admission, in: &$0, hashAt: mark) }
        }
    }

    /// `delivery`, admitted and its admission carried out: stored (not yet durable).
    private func stored(
        _ delivery: SecondaryInstance.Delivery, admitted admission: SecondaryInstance.Admission, in instance: inout SecondaryInstance,
        hashAt mark: Int?
    ) throws -> Stored {
        let storedBefore = store.lastSeq
        let ready = try instance.onDelivery(delivery, admitted: admission, log: StoreLog(store: store))
        do {
            try store.append(ready.entries, ids: ready.ids, continues: ready.continues)
        } catch {
            instance.notStored(ready)
            throw error
        }
        metrics.storedEntries.increment(by: ready.entries.count)
        metrics.duplicateEntries.increment(by: ready.duplicates)
        metrics.lastSeq.record(instance.contiguousSeq)
        let seq = instance.claim(completeSeq: store.completeSeq)
        return Stored(
            state: ReplicaState(seq: seq, incarnation: instance.incarnation, logID: delivery.logID, hash: store.hash(at: seq)),
            markHash: mark.flatMap { store.hash(at: $0) }, storedBefore: storedBefore, startedAgain: admission.startAgainAt != nil)
    }

    /// Failover: cuts every entry after `seq` (the master's log parts from this one there)
    /// and returns them; held-back entries go too. Durable before it returns, rewritten on the
    /// storage's thread pool while this replica's deliveries wait. See
    /// `SecondaryInstance.cut(after:masterNextHash:heldNextHash:committed:lastSeq:)`.
    /// - Parameters:
    ///   - epoch: with failover, the epoch of the master that asks.
    ///   - stillWanted: asked under the lock as the cut is decided; false cuts nothing.
    ///   - onCut: told where the log was cut and what it holds now, under the lock, before
    ///     any delivery that waited for the cut goes on (what rests on the cut is recorded
    ///     before the log grows again).
    /// - Throws: `OlderEpoch` when a later master already delivered here.
    /// - Returns: what was cut.
    public func truncate(
        after seq: Int, unlessNextHash nextHash: String? = nil, keeping committed: Int = 0, epoch: Int? = nil,
        if stillWanted: () -> Bool = { true }, onCut: (_ after: Int, _ holdingThrough: Int) -> Void = { _, _ in }
    ) async throws -> [LogEntry] {
        while true {
            let decided: Int?? = try protected.withLock { protected throws(SecondaryInstance.OlderEpoch) -> Int?? in
                guard protected.diskWork == nil else { return nil }
                guard stillWanted(),
                    let cut = try protected.instance.cut(
                        after: seq, masterNextHash: nextHash, heldNextHash: store.hash(at: seq + 1), committed: committed, lastSeq: store.lastSeq,
                        epoch: epoch)
                else { return .some(nil) }
                // Meanwhile it claims no more than what the cut keeps.
                protected.diskWork = DiskWork(claimed: claimed(by: protected.instance, atMost: cut))
                return cut
            }
            guard let decided else {
                await diskWorkDone()
                continue
            }
            guard let cutAfter = decided else { return [] }
            let cut: [LogEntry]
            do {
                cut = try await commit.io.value { [store, commit, watch] in
                    let cut = try store.truncate(after: cutAfter)
                    commit.truncated(after: cutAfter)
                    watch.cut(to: cutAfter)
                    return cut
                }
            } catch {
                endDiskWork { _ in }
                throw error
            }
            endDiskWork { instance in
                let lastSeq = store.lastSeq
                instance.wasCut(holdingThrough: lastSeq)
                if !cut.isEmpty { onCut(cutAfter, lastSeq) }
            }
            return cut
        }
    }

    // MARK: Disk work

    private enum DeliveryStep {
        case stored(Stored)
        /// Carry out the admission off the lock; it held `heldThrough` before.
        case diskWork(SecondaryInstance.Admission, heldThrough: Int)
        case waitForDiskWork
    }

    /// The protocol state, and what rewrites the log now.
    private struct Protected {
        var instance: SecondaryInstance
        var diskWork: DiskWork?
    }

    /// The log is being rewritten off the lock (a master log's id recorded, the log started
    /// again, a cut): deliveries and cuts wait for it, and heartbeats get what it claimed
    /// as the work began (it never claims more than the work leaves it).
    private struct DiskWork {
        var claimed: ReplicaState
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    /// Returns once no disk work runs (at once if none does).
    private func diskWorkDone() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let parked = protected.withLock { protected in
                guard protected.diskWork != nil else { return false }
                protected.diskWork!.waiting.append(continuation)
                return true
            }
            if !parked { continuation.resume() }
        }
    }

    /// Ends the disk work with `done` (under the lock) and lets the waiting go on.
    private func endDiskWork<T: Sendable, E: Error>(_ done: (inout SecondaryInstance) throws(E) -> T) throws(E) -> T {
        var waiting: [CheckedContinuation<Void, Never>] = []
        defer { for continuation in waiting { continuation.resume() } }
        return try protected.withLock { (protected: inout Protected) throws(E) -> T in
            waiting = protected.diskWork?.waiting ?? []
            protected.diskWork = nil
            return try done(&protected.instance)
        }
    }

    /// Returns once a read at `level` shows something at `seq` or later, or after `timeout`.
    public func waitForEntries(from seq: Int, level: ReadLevel = .committed, upTo timeout: Duration) async {
        await watch.wait(for: seq, level: level, upTo: min(timeout, settings.maxLongPoll), on: clock)
    }

    /// The visible log: the contiguous prefix, as far as it is durable here (like the
    /// master, a secondary never lists what a crash or a failed fsync could take back), and
    /// by default as far as it is committed (what a failover could take back is not shown).
    public func read(from seq: Int, limit: Int, level: ReadLevel = .committed) throws(LogStoreError) -> [LogEntry] {
        try commit.readDurable(from: seq, limit: watch.limit(limit, from: seq, level: level))
    }

    /// `read(from:limit:level:)` for readers over HTTP, a page at a time (`listingPageBytes`):
    /// off the cooperative threads when the log is on disk.
    public func list(from seq: Int, limit: Int, level: ReadLevel = .committed) async throws(LogStoreError) -> [LogEntry] {
        try await commit.readDurable(from: seq, limit: watch.limit(limit, from: seq, level: level), maxBytes: listingPageBytes)
    }

    /// The highest seq no failover can replace, as this node's readers see it.
    public var commitSeq: Int { watch.commitSeq }
}

/// The store as the secondary's rules read it.
private struct StoreLog: HeldLog {
    let store: any LogStore

    func hash(at seq: Int) -> String? { store.hash(at: seq) }

    func messages(in seqs: ClosedRange<Int>) throws -> [Int: String] {
        let held = try store.read(from: seqs.lowerBound, limit: seqs.count)
        return Dictionary(uniqueKeysWithValues: held.map { ($0.seq, $0.message) })
    }
}

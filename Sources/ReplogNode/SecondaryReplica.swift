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

/// A secondary's replication logic, free of HTTP: holds back out-of-order entries,
/// drops duplicates, stores the contiguous prefix, and acknowledges what it holds.
public final class SecondaryReplica: Sendable {
    /// The secondary stored the entries but was told (by `--error-rate`) to fail the request.
    public struct InjectedFailure: Error, Equatable {
        public let state: ReplicaState
    }

    /// The delivery belongs to another master log than the one this secondary holds.
    public struct ForeignLog: Error, Equatable, CustomStringConvertible {
        public let held: String
        public let offered: String
        public var description: String {
            "this secondary holds master log \(held), not \(offered): the master lost its log "
                + "(restarted without --data-dir?); restart this secondary with an empty log to follow the new one"
        }
    }

    /// The delivery has another message at a seq this secondary already holds: the two
    /// logs diverged there, and storing nothing is the only safe answer.
    public struct Diverged: Error, Equatable, CustomStringConvertible {
        public let seq: Int
        public var description: String {
            "diverged at seq \(seq): this secondary holds another message there than the master sends; "
                + "stop it, empty its log and restart it"
        }
    }

    private struct State {
        var holdBack: HoldBackBuffer
        var logID: String?
        /// The idempotency keys of held-back entries, by seq, until they are stored with them.
        var heldBackIDs: [Int: String] = [:]
        /// Seqs received ahead of the contiguous prefix whose records continue a batch.
        var heldBackContinuing: Set<Int> = []
        /// Where this secondary last started its log again because it had fallen behind the
        /// master's first kept seq (retention), if it did since it started.
        var restartedAt: Int?
        /// How many times it started its log again.
        var logRestarts = 0
        /// The epoch of the master whose entries wait in the hold-back buffer (failover).
        var heldBackEpoch: Int?
    }

    /// Where this secondary last started its log again, behind the master's retention.
    public var restartedAt: Int? { state.withLock { $0.restartedAt } }

    /// How many times this secondary started its log again at its master's start.
    public var logRestarts: Int { state.withLock { $0.logRestarts } }

    /// The incarnation it answers with: a log started again is news to the master as a new
    /// process is (what it holds now is the truth, and its stream resends from there), or
    /// requests sent before the restart would leave a gap that no answer shows the master.
    private func incarnation(after logRestarts: Int) -> String {
        logRestarts == 0 ? incarnation : "\(incarnation)+\(logRestarts)"
    }

    public let store: any LogStore
    /// Flushes the log; nothing is acknowledged before it is durable.
    public let commit: GroupCommit
    public let settings: SecondarySettings
    public let incarnation: String
    private let clock: any NodeClock
    private let state: Mutex<State>
    private let random: @Sendable () -> Double
    private let onFollow: @Sendable (String) throws -> Void
    private let metrics: SecondaryMetrics
    private let logger: Logger
    /// Wakes long-polling readers as the durable prefix grows.
    let watch: LogWatch

    /// - Parameters:
    ///   - logID: the master log `store` already holds (from the data dir), if any.
    ///   - onFollow: called, before anything is acknowledged, when the replica starts
    ///     following a master log, so the choice survives a restart.
    ///   - random: source of numbers in `0..<1` for `errorRate`; tests pass a fixed sequence.
    public init(
        store: any LogStore = InMemoryLogStore(),
        fsync: FsyncPolicy = .always,
        io: BlockingIO = .threadPool,
        logID: String? = nil,
        settings: SecondarySettings = SecondarySettings(),
        clock: any NodeClock = SystemClock(),
        incarnation: String = UUID().uuidString,
        onFollow: @escaping @Sendable (String) throws -> Void = { _ in },
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
        let holdBack = HoldBackBuffer(contiguousSeq: store.lastSeq, capacity: settings.holdBackCapacity)
        self.state = Mutex(State(holdBack: holdBack, logID: logID))
        self.watch = watch ?? LogWatch(durable: self.commit.durableSeq)
    }

    /// What this secondary holds now: its durable contiguous prefix. A heartbeat answer
    /// counts towards `w` like an acknowledgement, so it must not claim entries that are
    /// stored but still waiting for their fsync.
    public var replicaState: ReplicaState {
        let storageFailure = commit.failure?.description
        return state.withLock {
            // Read under the lock that stores, so the durable prefix is never past the stored one.
            let seq = min($0.holdBack.contiguousSeq, commit.durableSeq)
            return ReplicaState(
                seq: seq, incarnation: incarnation(after: $0.logRestarts), logID: $0.logID, storageFailure: storageFailure,
                hash: store.hash(at: seq))
        }
    }

    /// The running hash of its log at `seq`, if it holds (and lists) that seq.
    public func hash(at seq: Int) -> String? {
        seq <= replicaState.seq ? store.hash(at: seq) : nil
    }

    /// Entries received out of order and waiting for a gap to fill.
    public var heldBackCount: Int { state.withLock { $0.holdBack.heldBackCount } }

    /// Accepts a delivery of master log `logID`: entries may be duplicated or out of order.
    /// - Parameter adopt: with failover, the master of this node's epoch decides which log
    ///   the cluster holds: a replica that holds another one (a master of an earlier epoch
    ///   wrote it, and nobody else holds it) follows the master's, whose hash comparison
    ///   then cuts what differs. Without failover another log is refused.
    /// - Throws: `ForeignLog` when this secondary holds another log; `InjectedFailure`
    ///   (after storing) when `errorRate` says so; `GroupCommit.Failed` once its disk failed
    ///   an fsync (nothing is stored any more then).
    public func receive(_ entries: [LogEntry], ids: [String?] = [], of logID: String, adopt: Bool = false) async throws -> ReplicaState {
        try await receive(RecordFraming.DecodedRecords(entries: entries, ids: ids), of: logID, adopt: adopt)
    }

    /// Like `receive(_:ids:of:adopt:)`, with the records' batch marks: a batch counts (is
    /// acknowledged, listed, claimed) only once all of it is here.
    /// - Parameter epoch: with failover, the epoch of the master that sent them. Entries an
    ///   earlier epoch's master sent and that still wait for a gap to fill are dropped
    ///   first: the new master may hold other entries at those seqs, and its own would
    ///   otherwise release them behind its first (the real-node simulation, seed 4667).
    public func receive(
        _ records: RecordFraming.DecodedRecords, of logID: String, adopt: Bool = false, epoch: Int? = nil
    ) async throws -> ReplicaState {
        let (entries, ids, continues) = (records.entries, records.ids, records.continues)
        if settings.delay > .zero {
            try await clock.sleep(for: settings.delay)
        }
        if let failure = commit.failure { throw failure }
        if commit.writeWasRefused { await commit.retryRefusedWrite() }
        let replicaState = try state.withLock { state in
            if let held = state.logID, held != logID, state.holdBack.contiguousSeq > 0, !adopt {
                throw ForeignLog(held: held, offered: logID)
            }
            if state.logID != logID {
                try onFollow(logID)  // rare: once per master log, so done under the lock
                state.logID = logID
            }
            if let epoch, epoch != state.heldBackEpoch {
                if state.holdBack.heldBackCount > 0 {
                    state.holdBack = HoldBackBuffer(contiguousSeq: state.holdBack.contiguousSeq, capacity: settings.holdBackCapacity)
                    state.heldBackIDs = [:]
                    state.heldBackContinuing = []
                }
                state.heldBackEpoch = epoch
            }
            // The master no longer holds what this secondary lacks before its first kept seq
            // (retention), or this secondary's log parts from the master's before it (a
            // deposed master's tail), or nothing here shows it holds the master's log through
            // there (its own start is later): start the log again there, as a Kafka follower
            // does. Only a log with the master's hash at the seq before the start goes on.
            if let start = records.start, store.hash(at: start.firstSeq - 1) != start.hash {
                let before = state.holdBack.contiguousSeq
                try store.restart(at: start)
                commit.restarted(at: start.firstSeq - 1)
                watch.cut(to: start.firstSeq - 1)
                state.holdBack = HoldBackBuffer(contiguousSeq: start.firstSeq - 1, capacity: settings.holdBackCapacity)
                state.heldBackIDs = [:]
                state.heldBackContinuing = []
                state.restartedAt = start.firstSeq
                state.logRestarts += 1
                logger.warning("restarted the log at the master's first kept seq: it no longer holds what this node lacked", metadata: [
                    "replog.firstSeq": "\(start.firstSeq)", "replog.heldThrough": "\(before)",
                ])
            }
            // Storing under the same lock keeps the store's order equal to the buffer's.
            let before = state.holdBack.contiguousSeq
            try refuseOtherContent(entries.filter { $0.seq <= before })
            let ready = state.holdBack.receive(entries)
            // Keys travel with their entries: a master elected later answers a retry of one.
            for (index, id) in ids.enumerated() where index < entries.count && entries[index].seq > before {
                if let id { state.heldBackIDs[entries[index].seq] = id }
            }
            // So do batch marks: a batch is whole here only once its last record is stored.
            for (index, mark) in continues.enumerated() where mark && index < entries.count && entries[index].seq > before {
                state.heldBackContinuing.insert(entries[index].seq)
            }
            let readyIDs = ready.map { state.heldBackIDs[$0.seq] }
            let readyContinues = state.heldBackContinuing.isEmpty ? [] : ready.map { state.heldBackContinuing.contains($0.seq) }
            do {
                try store.append(ready, ids: readyIDs, continues: readyContinues)
                let contiguous = state.holdBack.contiguousSeq
                if !state.heldBackIDs.isEmpty {
                    state.heldBackIDs = state.heldBackIDs.filter { $0.key > contiguous && $0.key <= contiguous + settings.holdBackCapacity }
                }
                if !state.heldBackContinuing.isEmpty {
                    state.heldBackContinuing = state.heldBackContinuing.filter { $0 > contiguous && $0 <= contiguous + settings.holdBackCapacity }
                }
            } catch {
                // Not stored (a full disk): not received either, or the buffer would drop
                // the master's resend as a duplicate and acknowledge what the store lacks.
                state.holdBack.rewind(to: before)
                throw error
            }
            metrics.storedEntries.increment(by: ready.count)
            metrics.duplicateEntries.increment(by: entries.count { $0.seq <= before })
            metrics.lastSeq.record(state.holdBack.contiguousSeq)
            // Part of a batch is no message: claim up to the last whole one.
            let seq = min(state.holdBack.contiguousSeq, store.completeSeq)
            return ReplicaState(seq: seq, incarnation: incarnation(after: state.logRestarts), logID: logID, hash: store.hash(at: seq))
        }
        try await commit.makeDurable(through: replicaState.seq)
        watch.advanced(to: min(replicaState.seq, commit.durableSeq))
        if settings.errorRate > 0, random() < settings.errorRate {
            metrics.injectedFailures.increment()
            throw InjectedFailure(state: replicaState)
        }
        return replicaState
    }

    /// Failover: cuts every entry after `seq` (the master's log parts from this one there)
    /// and returns them; held-back entries go too. Durable before it returns.
    /// - Parameter committed: what this node learned was committed, which no later master's
    ///   log parts from: never cut (a master asks for less when its retention dropped its
    ///   own hash at the seq after it).
    public func truncate(after seq: Int, unlessNextHash nextHash: String? = nil, keeping committed: Int = 0) throws(LogStoreError) -> [LogEntry] {
        try state.withLock { (state: inout State) throws(LogStoreError) -> [LogEntry] in
            // It already holds the master's entry after `seq`, so the master's log up to there:
            // the request was decided on an older answer.
            if let nextHash, store.hash(at: seq + 1) == nextHash { return [] }
            let seq = max(seq, min(committed, store.lastSeq))
            let cut = try store.truncate(after: seq)
            commit.truncated(after: seq)
            watch.cut(to: seq)
            state.holdBack = HoldBackBuffer(contiguousSeq: store.lastSeq, capacity: settings.holdBackCapacity)
            state.heldBackIDs = [:]
            state.heldBackContinuing = []
            return cut
        }
    }

    /// Throws `Diverged` when a redelivered entry differs from what is stored at its seq. A
    /// redelivery is rare (a lost answer, a retry), so reading it back costs little.
    private func refuseOtherContent(_ held: [LogEntry]) throws {
        let seqs = held.map(\.seq).filter { $0 >= 1 }  // a seq below 1 is no entry (the route refuses it)
        guard let first = seqs.min(), let last = seqs.max() else { return }
        let stored = Dictionary(uniqueKeysWithValues: try store.read(from: first, limit: last - first + 1).map { ($0.seq, $0.message) })
        for entry in held where stored[entry.seq].map({ $0 != entry.message }) == true {
            throw Diverged(seq: entry.seq)
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

extension SecondaryReplica {
    /// A secondary on its data dir, or in memory without one: it follows the master log the
    /// folder holds, and records a new one there before it acknowledges anything of it, so
    /// that the choice survives a restart.
    public convenience init(
        store: any LogStore, fsync: FsyncPolicy, directory: DataDirectory?, settings: SecondarySettings = SecondarySettings(),
        logger: Logger = Logger(label: "replog.storage"), commit: GroupCommit? = nil
    ) {
        let followed = Mutex(directory)
        self.init(
            store: store, fsync: fsync, logID: directory?.metadata.log, settings: settings,
            onFollow: { log in try followed.withLock { try $0?.setLog(log) } }, logger: logger, commit: commit)
    }
}

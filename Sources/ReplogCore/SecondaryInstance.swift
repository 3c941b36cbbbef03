/// What a node's rules read of its own log, as etcd raft's `Storage` interface: the shell's
/// store, read where a rule needs it and never written through.
public protocol HeldLog {
    /// Its running hash at `seq`, if it holds that seq.
    func hash(at seq: Int) -> String?
    /// Its messages at `seqs`, by seq.
    func messages(in seqs: ClosedRange<Int>) throws -> [Int: String]
}

/// A secondary's protocol rules as a value: which master log it follows, which deliveries
/// it refuses, when it starts its log again, what it stores in which order with which keys
/// and batch marks, and what it may claim to hold.
///
/// It does no I/O. A delivery is two events, because what must reach the disk first (rarely
/// anything) can fail before the value has changed:
///
/// ```
/// admit(delivery, log:)        → Admission: record the log id, start the log again
///                                (the shell does both, in that order, if named)
/// onDelivery(delivery, admitted:, log:)
///                              → Ready: append these; notStored(_:) if the append failed
/// claim(completeSeq:durableSeq:) → the seq it answers with
/// ```
public struct SecondaryInstance: Sendable {
    /// The delivery belongs to another master log than the one this secondary holds.
    public struct ForeignLog: Error, Equatable, CustomStringConvertible {
        public let held: String
        public let offered: String
        public init(held: String, offered: String) {
            self.held = held
            self.offered = offered
        }
        public var description: String {
            "this secondary holds master log \(held), not \(offered): the master lost its log "
                + "(restarted without --data-dir?); restart this secondary with an empty log to follow the new one"
        }
    }

    /// The delivery has another message at a seq this secondary already holds: the two
    /// logs diverged there, and storing nothing is the only safe answer.
    public struct Diverged: Error, Equatable, CustomStringConvertible {
        public let seq: Int
        public init(seq: Int) { self.seq = seq }
        public var description: String {
            "diverged at seq \(seq): this secondary holds another message there than the master sends; "
                + "stop it, empty its log and restart it"
        }
    }

    /// The delivery comes from the master of an epoch older than one that already delivered
    /// here (failover): it was sent before that master was deposed, and storing it would put
    /// its entries behind the newer master's.
    public struct OlderEpoch: Error, Equatable {
        public let epoch: Int
        /// The epoch of the latest master that delivered here.
        public let latest: Int
        public init(epoch: Int, latest: Int) {
            self.epoch = epoch
            self.latest = latest
        }
    }

    /// What a delivery makes ready to store: the entries that are now contiguous, in seq
    /// order, with their keys and batch marks (either may be empty: none of them has one).
    public struct Ready: Sendable, Equatable {
        public var entries: [LogEntry]
        public var ids: [String?]
        public var continues: [Bool]
        /// The contiguous prefix before these: where to go back to if they are not stored.
        public var after: Int
        /// How many delivered entries it held already.
        public var duplicates: Int
    }

    /// A master's delivery: its entries (duplicated or out of order, perhaps), with their
    /// keys and batch marks by position (either may be shorter than `entries`).
    public struct Delivery: Sendable {
        public var logID: String
        public var entries: [LogEntry]
        public var ids: [String?]
        public var continues: [Bool]
        /// The master's first kept seq and its hash at the seq before, when the master sent
        /// them: its retention dropped what comes before.
        public var start: (firstSeq: Int, link: String)?
        /// With failover, the master of this node's epoch decides which log the cluster
        /// holds: a replica that holds another one (a master of an earlier epoch wrote it,
        /// and nobody else holds it) follows the master's, whose hash comparison then cuts
        /// what differs. Without failover another log is refused.
        public var adopt: Bool
        /// With failover, the epoch of the master that sent it.
        public var epoch: Int?

        public init(
            logID: String, entries: [LogEntry], ids: [String?] = [], continues: [Bool] = [], start: (firstSeq: Int, link: String)? = nil,
            adopt: Bool = false, epoch: Int? = nil
        ) {
            self.logID = logID
            self.entries = entries
            self.ids = ids
            self.continues = continues
            self.start = start
            self.adopt = adopt
            self.epoch = epoch
        }
    }

    /// What must be on disk before anything of a delivery is stored, in this order.
    public struct Admission: Sendable, Equatable {
        /// Record this master log as the one the node follows, so the choice survives a restart.
        public var follow: String?
        /// Start the log again at the master's first kept seq (the delivery's `start`).
        public var startAgainAt: Int?
    }

    /// The master log it follows (`nil` while it holds nothing of any).
    public private(set) var logID: String?
    /// Where it last started its log again, behind the master's first kept seq, if it did.
    public private(set) var restartedAt: Int?
    /// How many times it started its log again.
    public private(set) var logRestarts = 0
    private var holdBack: HoldBackBuffer
    /// The idempotency keys of held-back entries, by seq, until they are stored with them.
    private var heldBackIDs: [Int: String] = [:]
    /// Seqs received ahead of the contiguous prefix whose records continue a batch.
    private var heldBackContinuing: Set<Int> = []
    /// The epoch of the latest master that delivered (failover): held-back entries are its
    /// own, and a delivery of an earlier epoch is refused.
    private var latestEpoch: Int?
    private let baseIncarnation: String

    /// - Parameters:
    ///   - heldThrough: the last seq its store holds.
    ///   - logID: the master log its store holds, if any.
    ///   - incarnation: the random id of this run of the process.
    ///   - holdBackCapacity: how far ahead of its contiguous prefix it keeps entries.
    public init(heldThrough: Int, logID: String?, incarnation: String, holdBackCapacity: Int) {
        self.holdBack = HoldBackBuffer(contiguousSeq: heldThrough, capacity: holdBackCapacity)
        self.logID = logID
        self.baseIncarnation = incarnation
    }

    /// Every seq through this one was received and stored.
    public var contiguousSeq: Int { holdBack.contiguousSeq }

    /// Entries received out of order and waiting for a gap to fill.
    public var heldBackCount: Int { holdBack.heldBackCount }

    /// The incarnation it answers with: a log started again is news to the master as a new
    /// process is (what it holds now is the truth, and its stream resends from there), or
    /// requests sent before the restart would leave a gap that no answer shows the master.
    public var incarnation: String {
        logRestarts == 0 ? baseIncarnation : "\(baseIncarnation)+\(logRestarts)"
    }

    // MARK: A delivery

    /// What a delivery needs on disk first: the master log's id, when it is news here, and a
    /// log started again, when the delivery starts where this log cannot go on.
    /// - Throws: `OlderEpoch` when a later master already delivered here; `ForeignLog` when
    ///   it holds entries of another log and may not adopt it.
    public func admit(_ delivery: Delivery, log: some HeldLog) throws -> Admission {
        try servesEpoch(delivery.epoch)
        if let held = logID, held != delivery.logID, contiguousSeq > 0, !delivery.adopt {
            throw ForeignLog(held: held, offered: delivery.logID)
        }
        var admission = Admission(follow: logID != delivery.logID ? delivery.logID : nil)
        if let start = delivery.start,
            startsAgain(at: start.firstSeq, masterLink: start.link, heldLink: log.hash(at: start.firstSeq - 1))
        {
            admission.startAgainAt = start.firstSeq
        }
        return admission
    }

    /// Takes a delivery once the shell carried out its admission, and returns what is now
    /// ready to store. Keys and batch marks travel with their entries: a master elected later
    /// answers a retry of one, and a batch is whole here only once its last record is stored.
    /// - Throws: `Diverged` when a redelivered entry differs from what it holds (it then
    ///   keeps nothing of the delivery), or what `log` threw reading those.
    public mutating func onDelivery(_ delivery: Delivery, admitted: Admission, log: some HeldLog) throws -> Ready {
        if let follow = admitted.follow { logID = follow }
        deliveredBy(epoch: delivery.epoch)
        if let firstSeq = admitted.startAgainAt { startedAgain(at: firstSeq) }
        let stored = try heldSeqs(of: delivery.entries).map { try log.messages(in: $0) } ?? [:]
        return try receive(delivery.entries, ids: delivery.ids, continues: delivery.continues, stored: stored)
    }

    // MARK: Whose entries

    /// Refuses a request of the master of `epoch` (a delivery, a cut) once a later master
    /// delivered here.
    private func servesEpoch(_ epoch: Int?) throws(OlderEpoch) {
        if let epoch, let latestEpoch, epoch < latestEpoch {
            throw OlderEpoch(epoch: epoch, latest: latestEpoch)
        }
    }

    /// A delivery of the master of `epoch` (failover). Entries an earlier epoch's master
    /// sent and that still wait for a gap to fill are dropped: the new master may hold other
    /// entries at those seqs, and its own would otherwise release them behind its first
    /// (the real-node simulation, seed 4667).
    private mutating func deliveredBy(epoch: Int?) {
        guard let epoch, epoch != latestEpoch else { return }
        if holdBack.heldBackCount > 0 {
            dropHeldBack(keepingThrough: contiguousSeq)
        }
        latestEpoch = epoch
    }

    // MARK: Starting the log again

    /// Whether to start the log again at the master's `firstSeq`: the master no longer holds
    /// what this node lacks before its first kept seq (retention), or this node's log parts
    /// from the master's before it (a deposed master's tail), or nothing here shows it holds
    /// the master's log through there (its own start is later). Only a log with the master's
    /// link at the seq before the start goes on, as a Kafka follower's does.
    /// - Parameters:
    ///   - masterLink: the master's hash at `firstSeq - 1`.
    ///   - heldLink: this node's hash at `firstSeq - 1`, if it holds that seq.
    private func startsAgain(at firstSeq: Int, masterLink: String, heldLink: String?) -> Bool {
        heldLink != masterLink
    }

    /// The store started again: it holds nothing before `firstSeq`.
    private mutating func startedAgain(at firstSeq: Int) {
        dropHeldBack(keepingThrough: firstSeq - 1)
        restartedAt = firstSeq
        logRestarts += 1
    }

    // MARK: Receiving

    /// The seqs of `entries` it already holds, whose messages it reads back to compare. A
    /// redelivery is rare (a lost answer, a retry), so reading it back costs little.
    private func heldSeqs(of entries: [LogEntry]) -> ClosedRange<Int>? {
        // A seq below 1 is no entry (the route refuses it).
        let seqs = entries.lazy.map(\.seq).filter { $0 >= 1 && $0 <= contiguousSeq }
        guard let first = seqs.min(), let last = seqs.max() else { return nil }
        return first...last
    }

    /// The delivery's entries, which may be duplicated or out of order: what is now ready to
    /// store.
    /// - Parameter stored: the messages it holds at `heldSeqs(of: entries)`.
    private mutating func receive(
        _ entries: [LogEntry], ids: [String?], continues: [Bool], stored: [Int: String]
    ) throws(Diverged) -> Ready {
        let before = contiguousSeq
        var duplicates = 0
        for entry in entries where entry.seq <= before {
            duplicates += 1
            if let held = stored[entry.seq], held != entry.message { throw Diverged(seq: entry.seq) }
        }
        let ready = holdBack.receive(entries)
        for (index, id) in ids.enumerated() where index < entries.count && entries[index].seq > before {
            if let id { heldBackIDs[entries[index].seq] = id }
        }
        for (index, mark) in continues.enumerated() where mark && index < entries.count && entries[index].seq > before {
            heldBackContinuing.insert(entries[index].seq)
        }
        let readyIDs = ready.map { heldBackIDs[$0.seq] }
        let readyContinues = heldBackContinuing.isEmpty ? [] : ready.map { heldBackContinuing.contains($0.seq) }
        forgetStored()
        return Ready(
            entries: ready, ids: readyIDs, continues: readyContinues, after: before, duplicates: duplicates)
    }

    /// The store refused what `receive` made ready (a full disk): it counts as never
    /// received, or the buffer would drop the master's resend as a duplicate and the node
    /// would acknowledge what its store lacks.
    public mutating func notStored(_ ready: Ready) {
        holdBack.rewind(to: ready.after)
    }

    /// The seq it may claim to hold: its contiguous prefix, as far as the last whole batch
    /// (part of a batch is no message) and as far as it is durable (an answer counts towards
    /// `w`, so it must not claim entries still waiting for their fsync).
    public func claim(completeSeq: Int, durableSeq: Int = .max) -> Int {
        min(contiguousSeq, completeSeq, durableSeq)
    }

    // MARK: Cutting (failover)

    /// Where to cut when a master says its log parts from this one after `seq`, or nil when
    /// there is nothing to cut: it already holds the master's entry after `seq`, so the
    /// master's log up to there (the request was decided on an older answer).
    /// - Parameters:
    ///   - masterNextHash: the master's hash at `seq + 1`, if it sent one.
    ///   - heldNextHash: this node's hash at `seq + 1`, if it holds that seq.
    ///   - committed: what this node learned was committed, which no later master's log
    ///     parts from: never cut (a master asks for less when its retention dropped its own
    ///     hash at the seq after it).
    ///   - lastSeq: the last seq its store holds.
    /// - Throws: `OlderEpoch` when the master of `epoch` asks after a later master delivered
    ///   here: what it would cut may be that master's acknowledged entries.
    public func cut(
        after seq: Int, masterNextHash: String?, heldNextHash: String?, committed: Int, lastSeq: Int, epoch: Int? = nil
    ) throws(OlderEpoch) -> Int? {
        try servesEpoch(epoch)
        if let masterNextHash, heldNextHash == masterNextHash { return nil }
        return max(seq, min(committed, lastSeq))
    }

    /// The store was cut: it holds `1...lastSeq`, and nothing is held back.
    public mutating func wasCut(holdingThrough lastSeq: Int) {
        dropHeldBack(keepingThrough: lastSeq)
    }

    private mutating func dropHeldBack(keepingThrough seq: Int) {
        holdBack = HoldBackBuffer(contiguousSeq: seq, capacity: holdBack.capacity)
        heldBackIDs = [:]
        heldBackContinuing = []
    }

    /// Keys and marks of entries now stored (or too far ahead to be held) are forgotten.
    private mutating func forgetStored() {
        let contiguous = contiguousSeq
        let limit = contiguous + holdBack.capacity
        if !heldBackIDs.isEmpty {
            heldBackIDs = heldBackIDs.filter { $0.key > contiguous && $0.key <= limit }
        }
        if !heldBackContinuing.isEmpty {
            heldBackContinuing = heldBackContinuing.filter { $0 > contiguous && $0 <= limit }
        }
    }
}

/// When a member takes on its master's epoch history (failover).
///
/// A log that holds the master's through its last epoch start, and nothing past it but what
/// this master sent, holds that start too, and is recorded so before the answer leaves (a
/// vote depends on it: `FailoverInstance.onSynced`).
///
/// "Nothing past it but what this master sent" matters: a deposed master that comes back
/// holds the new master's log up to its start, then entries of its own epoch. Taking on the
/// new history there would date those entries to the new epoch, and the node could win the
/// next election without what the new master's majority acknowledged (the real-node
/// simulation, seed 2064). So the start is taken on only when no entry past it was stored
/// before the request came, or after this master cut the rest; from then on everything past
/// it comes from this master.
///
/// A log the request started again at the master's start (retention) holds nothing but what
/// this master sent, and the master's log up to its start (its link): past the epoch's
/// start already, it holds that start without a hash to show for it. Otherwise the node
/// would date the master's entries to an older epoch and vote for a shorter log than its own
/// (the real-node simulation, seed 1564).
public struct HistoryAdoption: Sendable, Equatable {
    /// The epoch whose master's log this node's log is known to be a prefix of: every entry
    /// past that master's start came from it.
    public private(set) var prefixOfEpoch: Int?

    public init() {}

    /// What the store showed around one request of the master of `epoch`.
    public struct Served: Sendable, Equatable {
        /// The epoch of the master that sent the request.
        public var epoch: Int
        /// The master's last epoch start (from its stamp).
        public var masterStart: EpochHistory.Start?
        /// The master's hash at its start (from its stamp).
        public var masterStartHash: String?
        /// This node's last recorded epoch start.
        public var recordedStart: EpochHistory.Start?
        /// The seq this node answered with: it holds the master's log through there.
        public var heldThrough: Int
        /// The last seq it stored before the request came.
        public var storedBefore: Int
        /// Whether the request started its log again at the master's start (retention).
        public var startedAgain: Bool
        /// The first seq its log holds.
        public var firstSeq: Int

        public init(
            epoch: Int, masterStart: EpochHistory.Start?, masterStartHash: String?, recordedStart: EpochHistory.Start?,
            heldThrough: Int, storedBefore: Int, startedAgain: Bool, firstSeq: Int
        ) {
            self.epoch = epoch
            self.masterStart = masterStart
            self.masterStartHash = masterStartHash
            self.recordedStart = recordedStart
            self.heldThrough = heldThrough
            self.storedBefore = storedBefore
            self.startedAgain = startedAgain
            self.firstSeq = firstSeq
        }
    }

    /// Whether `served` may ask for this node's hash at the start of the master of `epoch`
    /// (`masterStart`): only while its log is not known to be that master's. The shell reads
    /// that hash as a delivery is stored, and a hash costs a string: not on every delivery.
    public func needsStartHash(epoch: Int, masterStart: EpochHistory.Start?, recordedStart: EpochHistory.Start?) -> Bool {
        guard let masterStart else { return false }
        return !knows(masterStart, of: epoch, recorded: recordedStart)
    }

    /// Whether this log is known to hold the start of the master of `epoch`: it recorded
    /// that start, or it is known to be that master's log.
    private func knows(_ start: EpochHistory.Start, of epoch: Int, recorded: EpochHistory.Start?) -> Bool {
        prefixOfEpoch == epoch || recorded == start
    }

    /// Whether the node takes on the master's history through `heldThrough` after serving
    /// its request.
    /// - Parameter heldHash: this node's hash at a seq, if it holds it (asked only while the
    ///   node's log is not known to be the master's, which is rare).
    public mutating func served(_ facts: Served, heldHash: (Int) -> String?) -> Bool {
        guard let start = facts.masterStart, facts.heldThrough >= start.after else { return false }
        if knows(start, of: facts.epoch, recorded: facts.recordedStart) { return true }
        let holdsStart =
            heldHash(start.after) == facts.masterStartHash || (facts.startedAgain && facts.firstSeq - 1 >= start.after)
        guard facts.storedBefore <= start.after || facts.startedAgain, holdsStart else { return false }
        prefixOfEpoch = facts.epoch
        return true
    }

    /// Where to cut a tail this node cannot date, if it holds one: entries past the master's
    /// start that its run found on disk (`foundThrough`: the end of that log, lowered by every
    /// cut since) and that `served` did not take on, in a log that holds the master's start
    /// (their hashes there agree). An earlier run may have stored the master's entries there
    /// and stopped before it recorded their epoch (the log and the election record are two
    /// files), or it held a deposed master's tail. Either way the node must neither claim
    /// them (they would count towards `w`) nor vote as if they were of an older epoch: it
    /// cuts them, and the master sends its own again. A log that parts from the master's at
    /// or before its start is the master's divergence search's to cut.
    /// - Parameters:
    ///   - facts: what `served` was told, and answered `false` to.
    ///   - heldHash: this node's hash at a seq, if it holds it.
    public func undatedTail(_ facts: Served, foundThrough: Int, heldHash: (Int) -> String?) -> Int? {
        guard let start = facts.masterStart, foundThrough > start.after, !knows(start, of: facts.epoch, recorded: facts.recordedStart),
            !facts.startedAgain, heldHash(start.after) == facts.masterStartHash
        else { return nil }
        return start.after
    }

    /// The master of `epoch` had this node cut its log after `seq`, and it now holds
    /// `1...lastSeq`: what is left is that master's log up to where the two agreed (it
    /// searched for that seq by comparing hashes), and everything past it comes from it.
    public mutating func cut(after seq: Int, holdingThrough lastSeq: Int, epoch: Int) {
        if lastSeq == seq { prefixOfEpoch = epoch }
    }
}

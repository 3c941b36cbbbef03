/// A failover node's protocol state as one value: what it keeps on disk (its election
/// record, and who it is among which members), the election rules once it knows itself
/// (`FailoverInstance`), whether it has heard a master of an epoch, what each member said
/// its epoch is, and whether its log is known to be its master's (`HistoryAdoption`).
///
/// The shell (`Node`) feeds it events and carries out the directives they return.
/// Whenever `kept` differs from what the shell last saved, the shell saves it before it
/// answers anything (a vote, an epoch, an epoch start): an answer never leaves on what a
/// restart would forget, and a save that failed is tried again before the next answer.
public struct FailoverMember: Sendable {
    /// What outlives a restart (a node's `election.json`).
    public struct Kept: Codable, Sendable, Equatable {
        public var record: ElectionRecord
        /// This node's URL, as the other members know it.
        public var me: String?
        /// Every member, this node included.
        public var members: [String]

        public init(record: ElectionRecord = ElectionRecord(), me: String? = nil, members: [String] = []) {
            self.record = record
            self.me = me
            self.members = members
        }
    }

    /// What a member does with a master's request.
    public enum MasterRequest: Sendable, Equatable {
        /// A master without failover: serve it as its secondary, as before failover.
        case serveWithoutFailover
        /// Refuse it with this answer (which deposes the sender).
        case refuse(StaleEpochAnswer)
        /// Serve it as a secondary of the master of `epoch`; carry out `directives` (it may
        /// have been the master: step down). `newMaster` is set when it follows another
        /// master now.
        case follow(epoch: Int, directives: [FailoverInstance.Directive], newMaster: String?)
    }

    public private(set) var kept: Kept
    /// The election rules, once this node knows itself among its members.
    public private(set) var instance: FailoverInstance?
    /// Whether any master of an epoch has been heard, or the node has been in an epoch: a
    /// cluster with failover.
    public private(set) var stamped: Bool
    /// As master: the epoch each member said it is in when it last answered.
    public private(set) var memberEpochs: [String: Int] = [:]
    /// Whether its log is known to be its master's.
    public private(set) var adoption = HistoryAdoption()
    /// The end of the log this node's run found on disk, lowered by every cut since: entries
    /// up to there came from an earlier run (`HistoryAdoption.undatedTail`).
    private var foundThrough: Int
    private let electionTimeout: ClosedRange<Duration>
    private let seed: UInt64

    /// - Parameters:
    ///   - foundThrough: the last seq of the log the node's run found on disk.
    ///   - seed: draws the election timeouts (with the clock's `now`, so that each instance
    ///     made anew draws others).
    public init(kept: Kept, foundThrough: Int = 0, electionTimeout: ClosedRange<Duration>, seed: UInt64, now: Duration) {
        self.kept = kept
        self.foundThrough = foundThrough
        self.electionTimeout = electionTimeout
        self.seed = seed
        self.stamped = kept.record.epoch > 0
        makeInstance(now: now)
    }

    /// (Re)creates the election rules once this node knows itself and its cluster.
    private mutating func makeInstance(now: Duration) {
        guard let me = kept.me, kept.members.contains(me) else { return }
        let settings = FailoverInstance.Settings(me: me, members: kept.members, electionTimeout: electionTimeout)
        instance = FailoverInstance(settings: settings, record: kept.record, now: now, seed: seed &+ UInt64(truncatingIfNeeded: now.nanoseconds))
    }

    /// Runs `change` on the election rules (if it knows itself) and keeps their record.
    /// In place: a copy would copy the rules' tables on every member's answer.
    private mutating func update<T>(_ fallback: T, _ change: (inout FailoverInstance) -> T) -> T {
        guard instance != nil else { return fallback }
        let result = change(&instance!)
        kept.record = instance!.record
        return result
    }

    // MARK: Queries

    /// Role, epoch and master for `/health` (nil on a cluster without failover).
    public var status: (role: FailoverInstance.Role, epoch: Int, master: String?)? {
        guard stamped || instance?.role == .master, let instance else { return nil }
        return (instance.role, instance.epoch, instance.master)
    }

    /// Where a client's append goes on a node that is not the master: the master's URL, or
    /// nil while none is known; `.none` on a cluster without failover.
    public var masterForClients: String?? {
        guard stamped, let instance else { return .none }
        return .some(instance.role == .master ? nil : instance.master)
    }

    /// This node's log position for elections, its log ending at `lastSeq`.
    public func position(lastSeq: Int) -> LogPosition { kept.record.history.position(lastSeq: lastSeq) }

    // MARK: A master's requests

    /// A master's request (a delivery, a heartbeat, a cut) stamped `stamp` (nil: unstamped).
    /// `ElectionRecord.contact` decides whether it is heard; a stamp that names this node or
    /// the members otherwise is learned (and kept); `FailoverInstance.onMasterContact`
    /// decides the rest.
    public mutating func onMasterRequest(stamped stamp: EpochStamp?, now: Duration) -> MasterRequest {
        let record = kept.record
        let contact = record.contact(by: stamp, inFailover: stamped, me: kept.me, members: kept.members)
        guard case .hear(let learnsMembers) = contact, let stamp else {
            if contact == .serveWithoutFailover { return .serveWithoutFailover }
            return .refuse(StaleEpochAnswer(epoch: record.epoch, master: stamp == nil ? nil : instance?.master))
        }
        stamped = true
        if learnsMembers {
            kept.me = stamp.you
            kept.members = stamp.members
            makeInstance(now: now)
        }
        guard instance != nil else { return .follow(epoch: stamp.epoch, directives: [], newMaster: nil) }
        let before = instance?.master
        let (accepted, directives) = update((false, [])) { $0.onMasterContact(epoch: stamp.epoch, master: stamp.master, now: now) }
        guard accepted else { return .refuse(StaleEpochAnswer(epoch: kept.record.epoch, master: instance?.master)) }
        return .follow(epoch: stamp.epoch, directives: directives, newMaster: before != stamp.master ? stamp.master : nil)
    }

    /// Whether an answer to the master of `epoch` may leave now that everything it claims is
    /// durable here: a refusal if this node moved to a later epoch while the request waited
    /// (it voted in one, or heard that epoch's master). A vote counts only what is durable
    /// here, so one cast while the request's entries waited for their fsync did not count
    /// them: the deposed master must not count them either, or it could answer a `201` for
    /// entries the new master never held (Raft's follower answers with its term, in the same
    /// step as it appends).
    public func refusal(answeringIn epoch: Int) -> StaleEpochAnswer? {
        guard kept.record.epoch > epoch else { return nil }
        return StaleEpochAnswer(epoch: kept.record.epoch, master: instance?.master)
    }

    /// The seq of the master's start at which the shell reads this node's hash as it stores
    /// a delivery of the master stamped `stamp`, if `served` may need it
    /// (`HistoryAdoption.needsStartHash`).
    public func startToHash(for stamp: EpochStamp?) -> Int? {
        guard let stamp, let start = stamp.history.starts.last,
            adoption.needsStartHash(epoch: stamp.epoch, masterStart: start, recordedStart: kept.record.history.starts.last)
        else { return nil }
        return start.after
    }

    /// After serving a request of the master of `epoch`: takes on its epoch history if
    /// `HistoryAdoption` says this node's log holds the master's through its last start.
    /// Returns where to cut a tail the node cannot date (`HistoryAdoption.undatedTail`):
    /// the shell cuts it before it answers, then serves again.
    /// - Parameters:
    ///   - heldThrough: the seq this node answered with.
    ///   - storedBefore: the last seq it stored before the request came.
    ///   - startedAgain: whether the request started its log again (retention).
    ///   - firstSeq: the first seq its log holds.
    ///   - heldHash: its hash at a seq, if it holds it.
    @discardableResult
    public mutating func served(
        epoch: Int, masterHistory: EpochHistory, masterStartHash: String?, heldThrough: Int, storedBefore: Int, startedAgain: Bool,
        firstSeq: Int, heldHash: (Int) -> String?
    ) -> Int? {
        let facts = HistoryAdoption.Served(
            epoch: epoch, masterStart: masterHistory.starts.last, masterStartHash: masterStartHash,
            recordedStart: kept.record.history.starts.last, heldThrough: heldThrough, storedBefore: storedBefore,
            startedAgain: startedAgain, firstSeq: firstSeq)
        guard adoption.served(facts, heldHash: heldHash) else {
            return adoption.undatedTail(facts, foundThrough: foundThrough, heldHash: heldHash)
        }
        update(()) { $0.onSynced(masterHistory: masterHistory, matched: heldThrough) }
        return nil
    }

    /// The master of `epoch` had this node cut its log after `seq` (or it cut a tail it
    /// could not date); it now holds `1...lastSeq`.
    public mutating func cut(after seq: Int, holdingThrough lastSeq: Int, epoch: Int) {
        update(()) { $0.onCut(after: seq) }
        adoption.cut(after: seq, holdingThrough: lastSeq, epoch: epoch)
        foundThrough = min(foundThrough, lastSeq)
    }

    // MARK: Elections

    /// A candidate asks for this node's vote; a node that may not vote refuses.
    public mutating func onVoteRequest(_ request: VoteRequest, log: LogPosition, now: Duration, canVote: Bool) -> VoteAnswer {
        let refused = VoteAnswer(epoch: kept.record.epoch, granted: false, preVote: request.preVote)
        guard canVote else { return refused }
        // A node that never heard a master knows no cluster: it learns the candidate's, as it
        // would a master's from its stamp. Otherwise a master that kept its first epoch and
        // stopped before any member heard of it could never be elected again: it knows its
        // members, and they know nothing to vote with.
        if instance == nil, kept.record.epoch == 0, let members = request.members, let you = request.you,
            members.contains(you), members.contains(request.candidate)
        {
            stamped = true
            kept.me = you
            kept.members = members
            makeInstance(now: now)
        }
        return update(refused) { $0.onVoteRequest(request, log: log, now: now) }
    }

    /// The first election of a node started as master.
    public mutating func bootstrap(now: Duration, log: LogPosition) -> [FailoverInstance.Directive] {
        update([]) { $0.bootstrap(now: now, log: log) }
    }

    /// The election timer: directives, and when to look again.
    public mutating func tick(now: Duration, log: LogPosition, heartbeatInterval: Duration) -> ([FailoverInstance.Directive], Duration) {
        update(([], now + .seconds(1))) { instance in
            let directives = instance.role == .master || now >= instance.electionDeadline ? instance.tick(now: now, log: log) : []
            return (directives, instance.role == .master ? now + heartbeatInterval : instance.electionDeadline)
        }
    }

    public mutating func onVoteAnswer(_ answer: VoteAnswer, from peer: String, log: LogPosition, now: Duration) -> [FailoverInstance.Directive] {
        update([]) { $0.onVoteAnswer(answer, from: peer, log: log, now: now) }
    }

    /// As master: a member answered a request with what it holds. It holds this log through
    /// its seq when that is within this log and their hashes there agree.
    /// - Parameters:
    ///   - lastSeq: the end of this master's log.
    ///   - masterHash: this master's hash at `answer.seq`.
    public mutating func onMemberAnswer(
        from peer: String, _ answer: ReplicaState, lastSeq: Int, masterHash: String?, now: Duration
    ) -> ([FailoverInstance.Directive], Int?) {
        let matched = answer.seq <= lastSeq && answer.hash != nil && answer.hash == masterHash ? answer.seq : nil
        return onMemberAnswer(from: peer, epoch: answer.epoch ?? 0, matched: matched, now: now)
    }

    /// As master: a member answered (`matched`: what it holds of this log, nil when it
    /// refused as a member of a later epoch). Returns the directives, and the epoch in
    /// which this node now takes appends, if it does.
    public mutating func onMemberAnswer(from peer: String, epoch: Int, matched: Int?, now: Duration) -> ([FailoverInstance.Directive], Int?) {
        guard instance != nil else { return ([], nil) }
        memberEpochs[peer] = epoch
        return update(([], nil)) { instance in
            let directives = instance.onMemberAnswer(from: peer, epoch: epoch, matched: matched, now: now)
            return (directives, instance.acceptsAppends(now: now) ? instance.epoch : nil)
        }
    }

    /// Whether this node is still the master of `epoch`. A directive to take over is
    /// carried out once the record it rests on is saved; a node whose disk was slow may have
    /// heard a later epoch meanwhile (the real-node simulation with stalled disks, seed 357:
    /// a master of epoch 2 started while its node was in epoch 3).
    public func isMaster(of epoch: Int) -> Bool {
        instance?.role == .master && instance?.epoch == epoch
    }

    /// This node became master: what members said of earlier epochs is forgotten. Returns
    /// the epoch in which it takes appends at once, if it does: alone, it is its own majority.
    public mutating func becameMaster(now: Duration) -> Int? {
        memberEpochs = [:]
        guard let instance, instance.acceptsAppends(now: now) else { return nil }
        return instance.epoch
    }
}

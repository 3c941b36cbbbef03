/// Automatic failover as a plain value: who is the master, in which epoch, and when a node
/// may vote, stand, take appends or must step down.
///
/// The rules are Raft's election rules (with pre-vote and check-quorum, as etcd runs
/// them), fitted to a log whose entries carry no epoch of their own:
///
/// - **Epochs.** Each master rules one epoch; epoch 1 is the first. A node records the
///   highest epoch it has seen and the node it voted for in it (`ElectionRecord`), and
///   persists both before it answers anything that depends on them.
/// - **Epoch history.** When a master takes over it records "epoch E starts after seq B"
///   (`EpochHistory.Start`), B being the end of its log then. A secondary that holds the
///   master's log through seq M holds every start with `after <= M` as well, and adopts the
///   master's history up to M. A log's position is then (its last epoch, its last seq),
///   compared in that order (`LogPosition`): the start works like Raft's no-op entry of a
///   new term, without taking a seq that readers would see.
/// - **Votes.** A node votes at most once per epoch, only for a candidate whose position is
///   at least its own, and not while it hears from a master (a node that was cut off and
///   comes back must not depose a master the others still hear). Before asking for real
///   votes a candidate asks "would you vote for me?" (pre-vote) without changing anything,
///   so a node that was away does not raise the epoch and disturb the cluster.
/// - **Taking appends.** A new master accepts appends only once a majority (itself
///   included) holds its log through its start (`acceptsAppends`): then every entry of
///   earlier epochs it holds is safe, and any later master must hold them (it needs a
///   majority's votes, and each of those voters holds the start). A master that no majority
///   answered within the election timeout takes no appends (check-quorum: the others may
///   have elected another); one that hears of a later epoch steps down at once.
///
/// The shell feeds it events and carries out its directives: send these vote requests,
/// persist `record` (before answering), start or stop being the master.
public struct FailoverInstance: Sendable {
    public struct Settings: Sendable {
        /// This node's URL, as the other members know it.
        public var me: String
        /// Every member of the cluster, this node included.
        public var members: [String]
        /// A node that has heard from no master for a random time in this range stands for
        /// election; a master that has heard from no majority for its upper bound steps down.
        public var electionTimeout: ClosedRange<Duration>

        public init(me: String, members: [String], electionTimeout: ClosedRange<Duration> = .milliseconds(1_000)...(.milliseconds(2_000))) {
            precondition(members.contains(me), "\(me) must be one of the members \(members)")
            precondition(Set(members).count == members.count, "members must be distinct: \(members)")
            self.me = me
            self.members = members
            self.electionTimeout = electionTimeout
        }

        public var majority: Int { members.count / 2 + 1 }
        public var others: [String] { members.filter { $0 != me } }
    }

    public enum Role: String, Sendable, Equatable, Codable {
        case secondary
        /// Asking whether the others would vote for it (pre-vote): nothing changed yet.
        case preCandidate = "pre-candidate"
        case candidate
        case master
    }

    /// What the shell must do.
    public enum Directive: Sendable, Equatable {
        /// Send this request to every other member; report each answer with `onVoteAnswer`.
        case requestVotes(VoteRequest)
        /// Won the election: persist `record` (it holds the new start), then act as master of
        /// `epoch` with its log ending at `after`.
        case becomeMaster(epoch: Int, after: Int)
        /// Stop acting as master (a later epoch exists, or no majority answers): answer
        /// waiting appends "not the master" and follow whoever wins.
        case stepDown(reason: String)
    }

    public let settings: Settings
    /// What must survive a restart: persist it whenever it changes, before answering.
    public private(set) var record: ElectionRecord
    public private(set) var role = Role.secondary
    /// The master this node follows (itself when it is the master), nil while it knows none.
    public private(set) var master: String?
    /// When the next election may start (for a secondary) on the shell's clock.
    public private(set) var electionDeadline: Duration
    private var lastMasterContact: Duration?
    private var votes: Set<String> = []
    /// As master: the end of its log when it took over, and who holds the log through it.
    private var takeover: (after: Int, holders: Set<String>)?
    /// As master: when each member last answered in this epoch.
    private var lastAnswer: [String: Duration] = [:]
    private var random: SplitMix64

    public init(settings: Settings, record: ElectionRecord, now: Duration, seed: UInt64) {
        self.settings = settings
        self.record = record
        self.random = SplitMix64(seed: seed)
        self.electionDeadline = now
        self.electionDeadline = now + randomTimeout()
    }

    /// The epoch this node is in (the highest it has seen).
    public var epoch: Int { record.epoch }

    /// Whether this node may take appends now: it is the master, a majority holds its log
    /// through its start, and a majority answered it within the election timeout (a master
    /// that was frozen or cut off may have been deposed meanwhile: it waits to hear again).
    public func acceptsAppends(now: Duration) -> Bool {
        takeoverConfirmed && membersHeard(now: now) + 1 >= settings.majority
    }

    /// Why this node may not take an append now, if so.
    public enum AppendRefusal: Sendable, Equatable {
        /// Not the master: the client goes to `master` (`307`), or waits while no master is
        /// known (`503`).
        case notTheMaster(master: String?)
        /// Just elected, and a majority does not yet hold its log through its start. That
        /// takes a heartbeat or so: an append that arrives now waits up to `waitUpTo` for it
        /// rather than failing, and is then refused as `notTheMaster(master: nil)` (`503`).
        case takingOver(waitUpTo: Duration)
        /// The master, but no majority answered it lately (`503` with the quorum).
        case noQuorum(Quorum)
    }

    public func appendRefusal(now: Duration) -> AppendRefusal? {
        guard !acceptsAppends(now: now) else { return nil }
        guard role == .master else { return .notTheMaster(master: master) }
        return takeoverConfirmed ? .noQuorum(quorum(now: now)) : .takingOver(waitUpTo: .seconds(2))
    }

    /// As master: whether a majority holds its log through its start (until then it takes
    /// no appends however many members answer).
    public var takeoverConfirmed: Bool { role == .master && (takeover?.holders.count ?? 0) >= settings.majority }

    /// Where a node that won an election cuts its log before it takes any append, or nil:
    /// part of a batch (a delivery from a master that died before sending the rest) is no
    /// message, and its next append would read as that batch's end.
    /// - Parameters:
    ///   - completeSeq: the end of its log as far as its last whole batch.
    ///   - lastSeq: the last seq its log holds.
    public static func cutBeforeTakeover(completeSeq: Int, lastSeq: Int) -> Int? {
        completeSeq < lastSeq ? completeSeq : nil
    }

    /// As master: the members that answered within the election timeout, as a quorum.
    public func quorum(now: Duration) -> Quorum {
        Quorum(secondaryStatuses: settings.others.map { answered($0, now: now) ? PeerStatus.healthy : .unhealthy })
    }

    /// As master: how many other members answered it within the election timeout.
    private func membersHeard(now: Duration) -> Int {
        settings.others.count { answered($0, now: now) }
    }

    private func answered(_ member: String, now: Duration) -> Bool {
        lastAnswer[member].map { now - $0 < settings.electionTimeout.upperBound } ?? false
    }

    private mutating func randomTimeout() -> Duration {
        let range = settings.electionTimeout
        return range.lowerBound + (range.upperBound - range.lowerBound) * random.unit()
    }

    // MARK: Timers

    /// Call whenever `electionDeadline` passes, and regularly while master (each heartbeat
    /// round). `log` is this node's log position now.
    public mutating func tick(now: Duration, log: LogPosition) -> [Directive] {
        // A master that no majority answers stays master but takes no appends
        // (`acceptsAppends`): the majority may have elected another, whose requests or
        // refusals depose this one as soon as they arrive.
        if role == .master { return [] }
        guard now >= electionDeadline else { return [] }
        // Heard from no master in time (or the last round ended undecided): ask first.
        role = .preCandidate
        master = nil
        votes = [settings.me]
        electionDeadline = now + randomTimeout()
        if settings.members.count == 1 { return win(now: now, log: log, preVote: true) }
        return [.requestVotes(VoteRequest(epoch: record.epoch + 1, candidate: settings.me, log: log, preVote: true))]
    }

    /// The first master of a new cluster takes epoch 1 without an election: it was named
    /// master by its command line, and no other node has a log or a vote yet. Once this
    /// node has seen an epoch, it stands for election at once instead (a whole cluster
    /// restarted: its old master asks first, and wins if its log is as up to date).
    public mutating func bootstrap(now: Duration, log: LogPosition) -> [Directive] {
        guard role == .secondary else { return [] }
        guard record.epoch == 0 else {
            electionDeadline = now
            return []
        }
        record.epoch = 1
        record.votedFor = settings.me
        return win(now: now, log: log, preVote: false)
    }

    // MARK: Votes

    /// Another member asks for this node's (pre-)vote. `log` is this node's log position.
    /// Persist `record` before sending the answer when it changed.
    public mutating func onVoteRequest(_ request: VoteRequest, log: LogPosition, now: Duration) -> VoteAnswer {
        // Stickiness: while a master is heard (or this node is the master), nobody needs a new one.
        let hearsMaster =
            role == .master || (master != nil && lastMasterContact.map { now - $0 < settings.electionTimeout.lowerBound } ?? false)
        if hearsMaster || request.epoch < record.epoch || (request.preVote && request.epoch == record.epoch) {
            // (A pre-vote for this very epoch comes from a node that missed its election.)
            return VoteAnswer(epoch: record.epoch, granted: false, preVote: request.preVote)
        }
        let upToDate = request.log >= log
        if request.preVote {
            return VoteAnswer(epoch: request.epoch, granted: upToDate, preVote: true)
        }
        if request.epoch > record.epoch { _ = adopt(epoch: request.epoch) }  // never the master here (see above)
        let free = record.votedFor == nil || record.votedFor == request.candidate
        guard free, upToDate else { return VoteAnswer(epoch: record.epoch, granted: false, preVote: false) }
        record.votedFor = request.candidate
        electionDeadline = now + randomTimeout()  // give the candidate time to win
        return VoteAnswer(epoch: record.epoch, granted: true, preVote: false)
    }

    /// A member answered this node's vote request.
    public mutating func onVoteAnswer(_ answer: VoteAnswer, from peer: String, log: LogPosition, now: Duration) -> [Directive] {
        if !answer.granted, answer.epoch > record.epoch { return adopt(epoch: answer.epoch) }
        guard answer.granted else { return [] }
        switch role {
        case .preCandidate where answer.preVote && answer.epoch == record.epoch + 1:
            votes.insert(peer)
            return votes.count >= settings.majority ? win(now: now, log: log, preVote: true) : []
        case .candidate where !answer.preVote && answer.epoch == record.epoch:
            votes.insert(peer)
            return votes.count >= settings.majority ? win(now: now, log: log, preVote: false) : []
        default:
            return []  // late, or from an earlier round
        }
    }

    private mutating func win(now: Duration, log: LogPosition, preVote: Bool) -> [Directive] {
        if preVote {
            // A majority would vote: now raise the epoch and ask for real.
            role = .candidate
            record.epoch += 1
            record.votedFor = settings.me
            votes = [settings.me]
            electionDeadline = now + randomTimeout()
            if votes.count >= settings.majority { return win(now: now, log: log, preVote: false) }
            return [.requestVotes(VoteRequest(epoch: record.epoch, candidate: settings.me, log: log, preVote: false))]
        }
        role = .master
        master = settings.me
        lastAnswer = [:]
        record.history.begin(record.epoch, after: log.seq)
        takeover = (log.seq, [settings.me])
        return [.becomeMaster(epoch: record.epoch, after: log.seq)]
    }

    // MARK: Following a master

    /// A request from `master` of `epoch` arrived (replication or heartbeat): `accepted` says
    /// whether to serve it; a refusal answers with this node's epoch, which deposes the
    /// sender. Persist `record` before answering when it changed.
    public mutating func onMasterContact(epoch: Int, master: String, now: Duration) -> (accepted: Bool, directives: [Directive]) {
        guard record.admitsMaster(of: epoch), master != settings.me else { return (false, []) }
        let directives = epoch > record.epoch ? adopt(epoch: epoch) : []
        if role == .master { return (false, []) }  // a second master in one epoch: never (votes are single)
        role = .secondary
        self.master = master
        lastMasterContact = now
        electionDeadline = now + randomTimeout()
        return (true, directives)
    }

    /// This secondary holds the master's log through `matched`: it holds the master's epoch
    /// starts up to there too. Persist `record` before acknowledging when it changed.
    public mutating func onSynced(masterHistory: EpochHistory, matched: Int) {
        let held = masterHistory.through(matched)
        if held != record.history { record.history = held }
    }

    /// This node cut its log after `seq` (entries the master lacks): starts after it go too.
    public mutating func onCut(after seq: Int) {
        record.history = record.history.through(seq)
    }

    // MARK: Being the master

    /// A member answered this master. `epoch` is the member's; `matched`, when it serves this
    /// master, is how far it holds this master's log.
    public mutating func onMemberAnswer(from peer: String, epoch: Int, matched: Int?, now: Duration) -> [Directive] {
        guard role == .master else { return [] }
        if epoch > record.epoch { return adopt(epoch: epoch) }
        guard epoch == record.epoch else { return [] }
        lastAnswer[peer] = now
        if let matched, let after = takeover?.after, matched >= after { takeover?.holders.insert(peer) }
        return []
    }

    /// A later epoch exists: follow it (its master is not known yet). Deposes this node if
    /// it was the master.
    private mutating func adopt(epoch: Int) -> [Directive] {
        let wasMaster = role == .master
        record.epoch = epoch
        record.votedFor = nil
        role = .secondary
        takeover = nil
        master = nil
        return wasMaster ? [.stepDown(reason: "a member is in epoch \(epoch)")] : []
    }
}

/// Where a log ends, as elections compare it: the epoch of its last master, then its last seq.
public struct LogPosition: Sendable, Equatable, Comparable, Codable, CustomStringConvertible {
    public var epoch: Int
    public var seq: Int

    public init(epoch: Int, seq: Int) {
        self.epoch = epoch
        self.seq = seq
    }

    public static func < (a: Self, b: Self) -> Bool { (a.epoch, a.seq) < (b.epoch, b.seq) }
    public var description: String { "epoch \(epoch) seq \(seq)" }
}

/// Which master's epoch started after which seq, oldest first.
public struct EpochHistory: Sendable, Equatable, Codable {
    public struct Start: Sendable, Equatable, Codable {
        public var epoch: Int
        /// The master's last seq when it took over: its epoch's entries come after it.
        public var after: Int

        public init(epoch: Int, after: Int) {
            self.epoch = epoch
            self.after = after
        }
    }

    public private(set) var starts: [Start]

    public init(_ starts: [Start] = []) { self.starts = starts }

    /// The epoch of the latest master whose log this one follows (0: none yet).
    public var lastEpoch: Int { starts.last?.epoch ?? 0 }

    public func position(lastSeq: Int) -> LogPosition { LogPosition(epoch: lastEpoch, seq: lastSeq) }

    /// A master of `epoch` took over with its log ending at `after`.
    public mutating func begin(_ epoch: Int, after: Int) {
        precondition(epoch > lastEpoch, "epochs only grow: \(epoch) after \(lastEpoch)")
        starts.append(Start(epoch: epoch, after: after))
    }

    /// The starts that a log holding this one through `seq` holds.
    public func through(_ seq: Int) -> EpochHistory { EpochHistory(starts.filter { $0.after <= seq }) }
}

/// What a node must remember across restarts to vote safely.
public struct ElectionRecord: Sendable, Equatable, Codable {
    /// The highest epoch this node has seen.
    public var epoch: Int
    /// Whom it voted for in `epoch`.
    public var votedFor: String?
    /// The epoch starts its log holds.
    public var history: EpochHistory

    public init(epoch: Int = 0, votedFor: String? = nil, history: EpochHistory = EpochHistory()) {
        self.epoch = epoch
        self.votedFor = votedFor
        self.history = history
    }

    /// Whether a master of `epoch` may be heard: never one of an epoch older than this node
    /// has seen (it was deposed, whether it knows it or not).
    public func admitsMaster(of epoch: Int) -> Bool { epoch >= self.epoch }

    /// What a member does first with a request of a master (a delivery, a heartbeat, a cut).
    public enum Contact: Sendable, Equatable {
        /// A master without failover: serve it as its secondary, as before failover.
        case serveWithoutFailover
        /// Refuse it with this node's epoch (which deposes the sender).
        case refuse
        /// Hear it (`FailoverInstance.onMasterContact` decides the rest). `learnsMembers`:
        /// the stamp tells this node who it is or who the members are, which it records
        /// before answering.
        case hear(learnsMembers: Bool)
    }

    /// What a member does first with a request stamped `stamp` (nil: unstamped).
    ///
    /// A node of a cluster with failover (`inFailover`: it has heard a master of an epoch,
    /// or been in one) hears only masters of an epoch: a request without a stamp there comes
    /// from a master that was deposed as it sent it (it stops stamping when it steps down),
    /// and answering it would confirm that master to a linearizable read, or store what it
    /// sends (the real-node simulation, seed 324). An older epoch's master teaches nothing,
    /// not even who the members are.
    /// - Parameters:
    ///   - me: this node's URL as it knows it, if it does.
    ///   - members: the members as it knows them.
    public func contact(by stamp: EpochStamp?, inFailover: Bool, me: String?, members: [String]) -> Contact {
        guard let stamp else { return inFailover ? .refuse : .serveWithoutFailover }
        guard admitsMaster(of: stamp.epoch) else { return .refuse }
        return .hear(learnsMembers: me != stamp.you || members != stamp.members)
    }
}

/// "Vote for me in `epoch`": `log` is the candidate's log position.
public struct VoteRequest: Sendable, Equatable, Codable {
    public var epoch: Int
    public var candidate: String
    public var log: LogPosition
    /// Only asking whether the vote would be granted; nothing changes on either side.
    public var preVote: Bool
    /// The candidate's members, and the URL it knows the voter by: a node that never heard
    /// a master learns its cluster from them, as it would from a master's stamp.
    public var members: [String]?
    public var you: String?

    public init(epoch: Int, candidate: String, log: LogPosition, preVote: Bool, members: [String]? = nil, you: String? = nil) {
        self.epoch = epoch
        self.candidate = candidate
        self.log = log
        self.preVote = preVote
        self.members = members
        self.you = you
    }
}

public struct VoteAnswer: Sendable, Equatable, Codable {
    /// The epoch of the vote granted, or the voter's own epoch when refused.
    public var epoch: Int
    public var granted: Bool
    public var preVote: Bool

    public init(epoch: Int, granted: Bool, preVote: Bool) {
        self.epoch = epoch
        self.granted = granted
        self.preVote = preVote
    }
}

/// The master's side of the replication protocol, as a plain value.
///
/// This is swift-cluster-membership's *Instance*: it performs no I/O, reads no clock and
/// holds no lock. The master (the *shell*) feeds it what happened (an append, a secondary's
/// answer, a failed delivery, a missed heartbeat, a timer that ran out) and carries out
/// what it answers: resume these waiting appends, send this range to that secondary, linger,
/// back off, log this transition. Every rule of replication lives here, in one place:
///
/// - sequencing gates: quorum, shutdown and idempotent retries (`admit`, `onAppend`);
/// - the write concern: which waiting appends an acknowledgement completes (`WriteConcernTracker`);
/// - per secondary: what it holds (`matched`), which process answers (`incarnation`), its
///   health (`PeerHealth`), and its replication stream: how far it was sent, how many
///   requests are in flight, lingering, failures and back-off (`nextStreamStep`).
///
/// - the commit point: the highest seq that no failover can replace (`commitSeq`).
public struct ReplicationInstance: Sendable {
    public typealias WaiterID = WriteConcernTracker.WaiterID

    /// What shapes the protocol; the master's settings map onto it.
    public struct Settings: Sendable {
        /// Names (base URLs) of the secondaries, in configuration order.
        public var secondaries: [String]
        /// Missed heartbeats before `suspected` and before `unhealthy`.
        public var healthThresholds: PeerHealth.Thresholds
        /// Most entries in one replication request.
        public var maxBatchSize: Int
        /// Requests one secondary may have in flight at once.
        public var maxInFlight: Int
        /// How long a small batch that nobody waits for may be held back (`.zero`: never).
        public var replicationLinger: Duration
        /// How many recent client ids are remembered for idempotent retries.
        public var idempotencyWindow: Int

        public init(
            secondaries: [String], healthThresholds: PeerHealth.Thresholds = PeerHealth.Thresholds(),
            maxBatchSize: Int = 1_000, maxInFlight: Int = 4, replicationLinger: Duration = .zero,
            idempotencyWindow: Int = IdempotencyWindow.defaultCapacity
        ) {
            precondition(Set(secondaries).count == secondaries.count, "secondaries must be distinct: \(secondaries)")
            precondition(maxBatchSize >= 1 && maxInFlight >= 1, "need a batch and a request: \(maxBatchSize), \(maxInFlight)")
            self.secondaries = secondaries
            self.healthThresholds = healthThresholds
            self.maxBatchSize = maxBatchSize
            self.maxInFlight = maxInFlight
            self.replicationLinger = replicationLinger
            self.idempotencyWindow = idempotencyWindow
        }

        /// The master plus its secondaries.
        public var clusterSize: Int { 1 + secondaries.count }
    }

    /// Why an append is refused before anything is written.
    public enum Refusal: Error, Equatable {
        /// Not enough nodes are available: the master is read-only.
        case readOnly(Quorum)
        /// The master is shutting down.
        case shuttingDown
        /// The request's `id` was first used, at `seq`, for other messages: the client's
        /// mistake, not a retry.
        case idConflict(id: String, seq: Int)
    }

    /// Where an admitted append goes.
    public enum Admission: Sendable, Equatable {
        /// A new message: store it at `seq`, then report it with `onAppend`.
        case append(seq: Int)
        /// A retry of a known `id` (it repeats what the key was first used for): nothing to
        /// store; wait for the original's write concern.
        case retry(seq: Int)
    }

    /// Whether a retry repeats what its key was first used for: `messages` (a batch's, or
    /// the one message) against what the log holds from the key's seq on (nil: it could not
    /// be read). A failed read is no proof of a conflict, so it counts as a retry, as the
    /// append would; so does a single message that is no longer held.
    public static func retryRepeats(_ messages: [String], isBatch: Bool, stored: [LogEntry]?) -> Bool {
        guard let stored else { return true }
        guard isBatch else { return stored.first.map { $0.message == messages.first } ?? true }
        return stored.map(\.message) == messages
    }

    /// What the master knows about one secondary.
    public struct Peer: Sendable {
        public let url: String
        public fileprivate(set) var health: PeerHealth
        /// Highest seq the secondary holds, as far as the master knows; its stream resumes after it.
        public fileprivate(set) var matched = 0
        /// The process that answered last: a new one may hold less than the old one did.
        public fileprivate(set) var incarnation: String?
        /// When (on the shell's clock) the secondary last answered.
        public fileprivate(set) var lastContact: Duration?
        /// Why the secondary cannot follow this master (another log, a failed disk), if so.
        /// A heartbeat that gets a normal answer clears it.
        public fileprivate(set) var problem: PeerProblem?
        /// Why the last replication round failed, until a request succeeds again. Heartbeats
        /// can succeed while replication fails (a 413, an injected error), so this is kept
        /// apart from `problem`.
        public fileprivate(set) var replicationFailure: String?
        /// Whether the master is finding (or has found) where this secondary's log parts
        /// from its own; a diverged answer starts the search only once.
        fileprivate var divergence = Divergence.none
        /// A catch-up in progress: from which seq, up to which, since when.
        fileprivate var catchUp: (from: Int, target: Int, started: Duration)?
        fileprivate var stream = Stream()

        /// What the shell shows in `/health`: the problem, or else why replication fails.
        public var reportedProblem: PeerProblem? { problem ?? replicationFailure.map { .replicationFails(reason: $0) } }
    }

    fileprivate enum Divergence: Sendable { case none, locating, located }

    /// The replication stream of one secondary.
    ///
    /// Legal phases: `sending` → `lingering` (a small batch nobody waits for is held back)
    /// → `lingerOver` → `sending`; any → `backingOff` once a failed round has drained its
    /// requests in flight → `sending` when the back-off ends (resending from `matched`).
    fileprivate struct Stream: Sendable {
        enum Phase: Sendable { case sending, lingering, lingerOver, backingOff }
        var phase = Phase.sending
        /// Highest seq handed to a request (a rewind moves it back to `matched`).
        var sentThrough = 0
        var inFlight = 0
        /// The first failure of the current round: nothing new is sent until the round's
        /// other requests have come back, then the stream backs off.
        var failure: Failure?
        /// Whether a request of the current round succeeded.
        var deliveredThisRound = false
        /// Failed rounds since the stream last delivered something.
        var failedRounds = 0
    }

    /// A failed replication request.
    public struct Failure: Sendable, Equatable {
        /// What went wrong, for logs and `/health`.
        public let reason: String
        /// The seqs the failed request carried.
        public let seqs: ClosedRange<Int>
        /// Set when the secondary answered that it follows another master log.
        public let foreignLog: Bool

        public init(reason: String, seqs: ClosedRange<Int>, foreignLog: Bool = false) {
            self.reason = reason
            self.seqs = seqs
            self.foreignLog = foreignLog
        }
    }

    /// The next thing a stream should do.
    public enum StreamStep: Sendable, Equatable {
        /// Read up to `limit` entries from `from` on and send them; report with `onSending`.
        case send(from: Int, limit: Int)
        /// Retention dropped what the secondary lacks: read up to `limit` entries from the
        /// log's start and send them marked with it, so that the secondary starts its log
        /// again there; report with `onSending`.
        case sendFromStart(limit: Int)
        /// Hold a small batch back for up to this long, then report `onLingerOver`
        /// (an append that a client waits for ends it early).
        case linger(Duration)
        /// A round failed: wait this many failed rounds' back-off, then report `onBackOffOver`.
        case backOff(attempt: Int, status: PeerStatus, failure: Failure)
        /// Nothing to start now; `waitForData`: an append (or a wake-up) may change that.
        case idle(waitForData: Bool)
    }

    /// What the shell must do after an event, in order.
    public enum Directive: Sendable, Equatable {
        /// These waiting appends have met their write concern: answer them.
        case resume([WaiterID])
        /// A secondary's health changed (log it, update its gauge).
        case statusChanged(peer: String, PeerHealth.Transition)
        /// The master became read-only or writable again.
        case quorumChanged(Quorum)
        /// A secondary answered from a new process.
        case secondaryRestarted(peer: String, seq: Int)
        case catchUpStarted(peer: String, behind: Int)
        case catchUpFinished(peer: String, entries: Int, took: Duration)
        /// A secondary's stream delivered again after failed rounds.
        case replicationRecovered(peer: String, failedRounds: Int)
        /// A secondary was found holding another log than the master's, at or before a seq:
        /// log it as an error, and find the first seq where the two logs part.
        case diverged(peer: String, atOrBefore: Int, problem: PeerProblem)
        /// The secondary came back (or restarted): end its back-off and let its stream look
        /// for work at once.
        case wakeStream(peer: String)
    }

    public let settings: Settings
    /// The master log this instance replicates; a secondary holding another one is refused.
    public let logID: String
    public private(set) var peers: [String: Peer]
    private var tracker: WriteConcernTracker
    private var idempotency: IdempotencyWindow
    private var nextWaiterID = 0
    /// When an append last had to wait for acknowledgements: streams linger only while
    /// the traffic is `w=1`.
    private var lastAppendWithWaiter: Duration?
    public private(set) var shuttingDown = false
    /// With failover, the last seq of earlier epochs in this master's log: entries after it
    /// are its own. Nil without failover (a master that never cuts its log).
    public let epochStart: Int?
    /// The end of the master's own durable prefix.
    private var durableSeq = 0
    /// The highest seq that no failover can replace; it never goes down.
    ///
    /// Without failover, the master's durable seq: nothing ever cuts it. With failover, the
    /// highest seq a majority holds durably (each secondary's `matched` comes from durable
    /// answers whose hash agrees with this log), counted as Raft counts it: only once that
    /// seq is one of this master's own epoch. An older epoch's entry that a majority holds
    /// may still be replaced by a master elected from a log that ends in a later epoch;
    /// once an entry of this epoch is on a majority, no such master can be elected.
    public private(set) var commitSeq = 0

    /// - Parameters:
    ///   - remembered: idempotency keys recovered from the log (oldest first).
    ///   - epochStart: with failover, where this master's epoch starts in its log.
    ///   - committed: a commit point this node already learned (from an earlier master, or
    ///     as one): committed once, committed for good.
    public init(settings: Settings, logID: String, remembered: [RememberedID] = [], epochStart: Int? = nil, committed: Int = 0) {
        self.settings = settings
        self.logID = logID
        self.epochStart = epochStart
        self.commitSeq = committed
        self.tracker = WriteConcernTracker(secondaries: settings.secondaries)
        self.idempotency = IdempotencyWindow(capacity: settings.idempotencyWindow)
        for key in remembered { idempotency.remember(key.id, seq: key.seq) }
        self.peers = Dictionary(uniqueKeysWithValues: settings.secondaries.map {
            ($0, Peer(url: $0, health: PeerHealth(thresholds: settings.healthThresholds)))
        })
    }

    /// Whether the nodes that are not unhealthy form a majority.
    public var quorum: Quorum { Quorum(secondaryStatuses: settings.secondaries.map { peers[$0]!.health.status }) }

    /// Nodes (the master included) that hold the message at `seq`.
    public func holders(of seq: Int) -> Int { tracker.holders(of: seq) }

    // MARK: The commit point

    /// The commit point `url` may learn: no further than this master knows it holds this
    /// log. A member whose log still parts from this one (a deposed master's tail) would
    /// otherwise show its own entries at committed seqs.
    public func commitSeq(for url: String) -> Int { min(commitSeq, peers[url]!.matched) }

    /// The commit point and each member's share of it, as `takeCommitChange` last gave them.
    public private(set) var commitsHandedOn: (seq: Int, members: [String: Int]) = (0, [:])

    /// With failover: the commit point and what each member may learn of it, when either
    /// changed since they were last taken. A member's share goes down when it restarts with
    /// less, so the shell hands them on in the order they were taken: an older share handed
    /// on last would be what every later heartbeat tells the member.
    public mutating func takeCommitChange() -> (seq: Int, members: [String: Int])? {
        guard epochStart != nil else { return nil }
        let members = Dictionary(uniqueKeysWithValues: settings.secondaries.map { ($0, commitSeq(for: $0)) })
        guard commitSeq != commitsHandedOn.seq || members != commitsHandedOn.members else { return nil }
        commitsHandedOn = (commitSeq, members)
        return commitsHandedOn
    }

    /// The master's own log is durable through `seq`.
    public mutating func onDurable(_ seq: Int) {
        durableSeq = max(durableSeq, seq)
        advanceCommit()
    }

    private mutating func advanceCommit() {
        let counted = Self.commitPoint(masterDurable: durableSeq, members: settings.secondaries.map { peers[$0]!.matched }, epochStart: epochStart)
        commitSeq = max(commitSeq, counted)
    }

    /// The commit point a master may count from what it holds durably and what each member
    /// holds of its log (durably, vouched by hash), or 0 when the count proves nothing yet.
    ///
    /// With failover the count proves something only once a majority holds the master's log
    /// through its epoch's start, which is also when the master takes appends. A member
    /// answers for that start only after it recorded the new epoch there (its election
    /// record, `HistoryAdoption`), so every member of that majority refuses its vote to any
    /// later candidate whose log lacks the start: the start works as Raft's no-op entry of a
    /// new term, and everything up to it is committed. Below it, an older epoch's entry on a
    /// majority proves nothing: a master elected from a log of a later epoch may replace it
    /// (Raft's figure 8).
    /// - Parameter epochStart: with failover, where the master's epoch starts in its log
    ///   (nil without failover: the master's durable end is committed).
    public static func commitPoint(masterDurable: Int, members: [Int], epochStart: Int?) -> Int {
        guard let epochStart else { return masterDurable }
        let held = ([masterDurable] + members).sorted(by: >)
        let majorityHolds = held[held.count / 2]
        return majorityHolds >= epochStart ? majorityHolds : 0
    }

    /// Whether an answer for write concern `w` also waits until this node keeps a commit
    /// point that covers the entry: with failover, what a majority acknowledged is committed,
    /// and a reader that asks after the `201` (on this master) must see it.
    public func answerWaitsForCommitPoint(w: Int) -> Bool {
        epochStart != nil && w > settings.clusterSize / 2
    }

    // MARK: Appends

    /// Decides whether an append may go ahead and where; writes nothing.
    /// - Parameters:
    ///   - nextSeq: the seq a new message would get (`lastSeq + 1` of the log).
    ///   - stored: what the log holds from a seq on, at most `count` entries (nil: it could
    ///     not be read). Asked only for a retry, which is rare, to compare it with what its
    ///     key was first used for (`retryRepeats`).
    public func admit(
        _ request: AppendRequest, nextSeq: Int, stored: (_ seq: Int, _ count: Int) -> [LogEntry]?
    ) throws(Refusal) -> Admission {
        if shuttingDown { throw .shuttingDown }
        // A retry is answered even without quorum: it appends nothing.
        if let id = request.id, let seq = idempotency.seq(for: id) {
            let messages = request.messages
            guard Self.retryRepeats(messages, isBatch: request.batch != nil, stored: stored(seq, messages.count)) else {
                throw .idConflict(id: id, seq: seq)
            }
            return .retry(seq: seq)
        }
        let quorum = self.quorum
        guard quorum.isWritable else { throw .readOnly(quorum) }
        return .append(seq: nextSeq)
    }

    /// An admitted append is in the log (or is a retry): count it towards its write concern.
    /// - Parameter count: how many messages it holds (a batch's `id` names its first seq,
    ///   and it waits until `w` nodes hold its last).
    /// - Returns: the waiter to suspend on, or `nil` when `w` nodes hold it already.
    public mutating func onAppend(_ admission: Admission, id: String?, w: Int, now: Duration, count: Int = 1) -> WaiterID? {
        let seq: Int
        switch admission {
        case .append(let appended):
            seq = appended
            if let id { idempotency.remember(id, seq: seq) }
        case .retry(let original):
            seq = original
        }
        let waiter = nextWaiterID
        nextWaiterID += 1
        if tracker.onAppend(waiter, seq: seq + count - 1, required: w) { return nil }
        lastAppendWithWaiter = now
        return waiter
    }

    /// A waiting append stops waiting (timed out, the client left, the disk failed).
    public mutating func onGiveUp(_ waiter: WaiterID, seq: Int) {
        tracker.onGiveUp(waiter, seq: seq)
    }

    /// The master stops: refuse every append from now on.
    public mutating func onShutdown() { shuttingDown = true }

    // MARK: Answers from secondaries

    /// A secondary answered (a heartbeat or a replication request) with what it holds.
    /// - Parameters:
    ///   - lastSeq: the master's last seq (a secondary never holds more of this log).
    ///   - now: the shell's clock.
    ///   - masterHash: the master's hash at `replica.seq`, to compare with the secondary's.
    public mutating func onContact(
        from url: String, _ replica: ReplicaState, lastSeq: Int, masterHash: String? = nil, now: Duration
    ) -> [Directive] {
        if let held = replica.logID, held != logID {
            // It answers, but it follows another log: it can neither count towards `w` nor
            // receive ours. Treat it as missing and say why.
            peers[url]!.problem = .holdsAnotherLog(held: held, master: logID)
            return onHeartbeatMissed(url)
        }
        if let failure = replica.storageFailure {
            // It answers, but it can store nothing: it holds no more than it did, and counts
            // towards neither `w` nor the quorum until it is restarted.
            peers[url]!.problem = .storageFailed(reason: failure)
            return onHeartbeatMissed(url)
        }
        if replica.seq > lastSeq {
            // It holds more than this master ever wrote: a deposed master's tail (failover),
            // which no hash of this log can vouch for. Where it parts is found next.
            guard peers[url]!.divergence == .none else { return onHeartbeatMissed(url) }
            let problem = PeerProblem.holdsMore(extra: replica.seq - lastSeq, masterSeq: lastSeq)
            peers[url]!.problem = problem
            peers[url]!.divergence = .locating
            return [.diverged(peer: url, atOrBefore: replica.seq, problem: problem)] + onHeartbeatMissed(url)
        }
        if let held = replica.hash, let expected = masterHash, held != expected {
            // It answers, but what it holds is not this log: the same seqs with other
            // messages. Whatever it acknowledges is not what the clients wrote, so it counts
            // towards neither `w` nor the quorum.
            // (Once found, where the logs part stays the problem, until an answer agrees again.)
            guard peers[url]!.divergence == .none else { return onHeartbeatMissed(url) }
            let problem = PeerProblem.differsAtOrBefore(seq: replica.seq, hash: held, masterHash: expected)
            peers[url]!.problem = problem
            peers[url]!.divergence = .locating
            return [.diverged(peer: url, atOrBefore: replica.seq, problem: problem)] + onHeartbeatMissed(url)
        }
        var directives: [Directive] = []
        let wasWritable = quorum.isWritable
        var peer = peers[url]!
        let transition = peer.health.onContact()
        peer.lastContact = now
        peer.problem = nil
        peer.divergence = .none
        let restarted = peer.incarnation != nil && peer.incarnation != replica.incarnation
        if peer.incarnation != replica.incarnation {
            // A new process: what it holds now is the truth, even if it is less than before,
            // and its stream resends from there.
            peer.incarnation = replica.incarnation
            peer.matched = min(replica.seq, lastSeq)
            peer.stream.sentThrough = peer.matched
        } else {
            peer.matched = max(peer.matched, min(replica.seq, lastSeq))
        }
        // A secondary that comes back behind is caught up; say when that starts and ends.
        if let running = peer.catchUp, peer.matched >= running.target {
            directives.append(.catchUpFinished(peer: url, entries: running.target - running.from, took: now - running.started))
            peer.catchUp = nil
        } else if peer.catchUp == nil, restarted || transition != nil, peer.matched < lastSeq {
            peer.catchUp = (peer.matched, lastSeq, now)
            directives.append(.catchUpStarted(peer: url, behind: lastSeq - peer.matched))
        }
        peers[url] = peer
        let completed =
            restarted
            ? tracker.onRestart(of: url, holding: peer.matched)
            : tracker.onAck(from: url, seq: peer.matched)
        if !completed.isEmpty { directives.insert(.resume(completed), at: 0) }
        if let transition { directives.append(.statusChanged(peer: url, transition)) }
        if quorum.isWritable != wasWritable { directives.append(.quorumChanged(quorum)) }
        if restarted { directives.append(.secondaryRestarted(peer: url, seq: replica.seq)) }
        if transition != nil || restarted { directives.append(.wakeStream(peer: url)) }
        advanceCommit()
        return directives
    }

    /// A heartbeat got no (usable) answer in time.
    public mutating func onHeartbeatMissed(_ url: String) -> [Directive] {
        var directives: [Directive] = []
        let wasWritable = quorum.isWritable
        if let transition = peers[url]!.health.onHeartbeatMissed() {
            directives.append(.statusChanged(peer: url, transition))
        }
        if quorum.isWritable != wasWritable { directives.append(.quorumChanged(quorum)) }
        return directives
    }

    // MARK: Replication streams

    /// Whether entries leave for the secondaries before the master's own fsync is done.
    ///
    /// Only with failover. Without it, a master that crashes before its fsync comes back
    /// without the entry and gives its seq to another message, while a secondary keeps the
    /// first one. With failover, a node that lost an entry that a majority holds cannot be
    /// elected (its log is shorter than theirs), and an elected master cuts whatever else it
    /// sent from the members' logs. Since the master answers no client before its own fsync,
    /// the guarantees stay; the fsync and the replication just overlap.
    public var sendsBeforeDurable: Bool { Self.sendsBeforeDurable(elected: epochStart != nil) }

    /// `sendsBeforeDurable` of a master that was elected, or not.
    public static func sendsBeforeDurable(elected: Bool) -> Bool { elected }

    /// The last seq that may leave the master: persist before you send, unless
    /// `sendsBeforeDurable`. Static, so that the shell reads only the end the rule needs, and
    /// outside the instance's lock (each end takes a lock of its own).
    /// - Parameters:
    ///   - written: the end of the master's log as far as its last whole batch.
    ///   - durable: the end of its durable prefix.
    public static func sendable(sendsBeforeDurable: Bool, written: @autoclosure () -> Int, durable: @autoclosure () -> Int) -> Int {
        sendsBeforeDurable ? written() : durable()
    }

    /// What the stream of `url` should do next. Call it until it answers `.idle` or
    /// `.backOff`, and again after every event of that stream.
    /// - Parameters:
    ///   - upTo: the last seq that may leave the master: the end of its durable prefix, or
    ///     with failover the end of its log (the master's fsync and replication overlap).
    public mutating func nextStreamStep(for url: String, upTo sendable: Int, now: Duration) -> StreamStep {
        var peer = peers[url]!
        defer { peers[url] = peer }
        if peer.stream.phase == .backingOff { return .idle(waitForData: false) }
        if let failure = peer.stream.failure {
            guard peer.stream.inFlight == 0 else { return .idle(waitForData: false) }
            // The round is over: back off, longer with every round that delivered nothing.
            peer.stream.failedRounds += 1
            peer.stream.phase = .backingOff
            peer.replicationFailure = failure.reason
            // A heartbeat's answer says the same in this master's words (`onContact`): keep
            // those, so that what the master shows does not flip between two wordings.
            if failure.foreignLog { peer.problem = peer.problem ?? .refusesThisLog(reason: failure.reason) }
            return .backOff(attempt: peer.stream.failedRounds, status: peer.health.status, failure: failure)
        }
        peer.stream.sentThrough = max(peer.stream.sentThrough, peer.matched)
        guard peer.stream.inFlight < settings.maxInFlight else { return .idle(waitForData: false) }
        let next = max(peer.stream.sentThrough + 1, logStart)
        let available = min(settings.maxBatchSize, sendable - next + 1)
        guard available > 0 else { return .idle(waitForData: true) }
        // Nobody waits for these yet: hold a small batch back briefly so that it leaves
        // together with the next appends (one request instead of many). Only while the
        // traffic is w=1: no waiter now and none lately.
        let linger = settings.replicationLinger
        if linger > .zero, peer.stream.phase != .lingerOver, available < settings.maxBatchSize,
           tracker.waitingCount == 0, lastAppendWithWaiter.map({ now - $0 > linger * 10 }) ?? true
        {
            if peer.stream.phase == .lingering { return .idle(waitForData: true) }
            peer.stream.phase = .lingering
            return .linger(linger)
        }
        peer.stream.phase = .sending
        return next > peer.stream.sentThrough + 1 ? .sendFromStart(limit: available) : .send(from: next, limit: available)
    }

    /// The first seq the master's log still keeps, as far as the shell said (`onLogStart`).
    private var logStart = 1

    /// Retention moved the start of the master's log: a stream that would send from before
    /// it sends from the start instead (`.sendFromStart`). The shell says so when a read
    /// finds its seq gone, and as the master starts, rather than reading the start at every
    /// step (a lock of the store that appends share).
    public mutating func onLogStart(_ firstSeq: Int) {
        logStart = max(logStart, firstSeq)
    }

    /// The stream sends a request carrying `seqs` (what `.send` asked for, or less).
    public mutating func onSending(to url: String, seqs: ClosedRange<Int>) {
        peers[url]!.stream.inFlight += 1
        // A rewind since `.send` moved the position back: keep that, resend from there.
        if peers[url]!.stream.sentThrough == seqs.lowerBound - 1 { peers[url]!.stream.sentThrough = seqs.upperBound }
    }

    /// The master could not read what `.send` asked for: fail the round like a delivery
    /// (back off, retry, say why in /health), never skip entries.
    public mutating func onReadFailed(for url: String, _ failure: Failure) {
        if peers[url]!.stream.failure == nil { peers[url]!.stream.failure = failure }
    }

    /// A request came back with the secondary's answer.
    public mutating func onDelivered(
        to url: String, _ replica: ReplicaState, lastSeq: Int, masterHash: String? = nil, now: Duration
    ) -> [Directive] {
        var recovered: [Directive] = []
        peers[url]!.stream.inFlight -= 1
        if !peers[url]!.stream.deliveredThisRound {
            peers[url]!.stream.deliveredThisRound = true
            peers[url]!.replicationFailure = nil
            if peers[url]!.stream.failedRounds > 0 {
                recovered.append(.replicationRecovered(peer: url, failedRounds: peers[url]!.stream.failedRounds))
                peers[url]!.stream.failedRounds = 0
            }
        }
        return onContact(from: url, replica, lastSeq: lastSeq, masterHash: masterHash, now: now) + recovered
    }

    /// The first seq where a diverged secondary's log parts from the master's was found
    /// (by comparing hashes at a few seqs): the problem names it.
    public mutating func onDivergenceLocated(_ url: String, seq: Int) -> PeerProblem? {
        guard peers[url]!.divergence == .locating else { return nil }  // it agrees again
        let problem = PeerProblem.differsAt(seq: seq)
        peers[url]!.problem = problem
        peers[url]!.divergence = .located
        return problem
    }

    /// An elected master had `url` cut its log where it parted from the master's: it holds
    /// exactly `1...seq` now, maybe less than it acknowledged (what it cut was not this
    /// master's, or was, if the cut was decided on an older answer). Its stream resends from
    /// there, and later counts use what it holds now; appends already answered stay answered.
    public mutating func onMemberCut(_ url: String, holding seq: Int) -> [Directive] {
        peers[url]!.matched = seq
        peers[url]!.stream.sentThrough = seq
        let completed = tracker.onRestart(of: url, holding: seq)
        return (completed.isEmpty ? [] : [.resume(completed)]) + [.wakeStream(peer: url)]
    }

    /// An elected master could not make a diverged member cut its log: look again at the
    /// member's next answer.
    public mutating func onDivergenceRetry(_ url: String) {
        peers[url]!.divergence = .none
    }

    /// A request failed (no answer, an error status, another log).
    public mutating func onDeliveryFailed(to url: String, _ failure: Failure) {
        peers[url]!.stream.inFlight -= 1
        if peers[url]!.stream.failure == nil { peers[url]!.stream.failure = failure }
    }

    /// The linger that `.linger` started is over: send what is there.
    public mutating func onLingerOver(for url: String) {
        if peers[url]!.stream.phase == .lingering { peers[url]!.stream.phase = .lingerOver }
    }

    /// The back-off that `.backOff` started is over: a new round resends from what the
    /// secondary holds.
    public mutating func onBackOffOver(for url: String) {
        var stream = peers[url]!.stream
        guard stream.phase == .backingOff else { return }
        stream.phase = .sending
        stream.failure = nil
        stream.deliveredThisRound = false
        stream.sentThrough = peers[url]!.matched
        peers[url]!.stream = stream
    }
}

extension ReplicaState {
    /// What this answer shows of a master log whose first kept seq is `firstSeq`. A member
    /// that holds only seqs before that start (retention) cannot be checked against any
    /// hash the master still has: it counts as holding nothing of the log, towards no `w`,
    /// and its stream starts its log again at the start.
    public func vouched(byLogStartingAt firstSeq: Int) -> ReplicaState {
        guard seq > 0, seq < firstSeq - 1 else { return self }
        var unknown = self
        unknown.seq = 0
        unknown.hash = nil
        return unknown
    }
}

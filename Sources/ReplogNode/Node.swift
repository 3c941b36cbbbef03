import CoreMetrics
import Foundation
import Logging
import Metrics
import ReplogCore
import ReplogStorage
import ServiceLifecycle
import Synchronization

/// A node: every `replog` process that serves the log runs one. With failover it is the
/// shell around `FailoverMember` (the election rules of `FailoverInstance`).
///
/// It owns what outlives a change of role (the log, its group commit, the data dir's
/// election record) and runs one of the two roles on top: the secondary (`Node+Secondary`),
/// which follows the master of the current epoch, or a `Master` once this node is elected (or
/// from its start to its end, as the master of a cluster without failover). Elections run
/// here: a timer that fires when no master was heard for the election timeout, vote
/// requests to the other members, and the votes this node casts. The router
/// (`buildNodeRouter`) sends every internal request through this node, so that an old
/// epoch's master is refused whatever role this node has, and the public endpoints to the
/// current role.
public final class Node: Service, Sendable {
    public struct Settings: Sendable {
        /// This node's URL as the others know it: set for the node started as master,
        /// learned from the master's requests otherwise.
        public var me: String?
        /// Every member, this node included (the master's `--secondary` list and itself);
        /// learned from the master on the others.
        public var members: [String]
        public var electionTimeout: ClosedRange<Duration>
        /// What the master does when this node is elected (`secondaries` is filled in).
        public var master: MasterSettings
        public var secondary: SecondarySettings
        /// Whether this node may vote and stand: only with a data dir, where its votes
        /// outlive a restart (a node that forgets whom it voted for could vote twice).
        public var canVote: Bool
        /// Take epoch 1 at once if no epoch was ever seen here (the node started as master).
        public var bootstrap: Bool
        /// The master of a cluster without failover (`replog master`): it runs as master from
        /// its start to its end, with no epochs, and serves no internal endpoint.
        public var masterWithoutFailover: Bool

        public init(
            me: String?, members: [String], electionTimeout: ClosedRange<Duration> = .milliseconds(1_000)...(.milliseconds(2_000)),
            master: MasterSettings, secondary: SecondarySettings = SecondarySettings(), canVote: Bool, bootstrap: Bool
        ) {
            self.me = me
            self.members = members
            self.electionTimeout = electionTimeout
            self.master = master
            self.secondary = secondary
            self.canVote = canVote
            self.bootstrap = bootstrap
            self.masterWithoutFailover = false
        }

        /// The master of a cluster without failover, which replicates to `master.secondaries`.
        public static func withoutFailover(master: MasterSettings) -> Settings {
            var settings = Settings(me: nil, members: [], master: master, canVote: false, bootstrap: false)
            settings.masterWithoutFailover = true
            return settings
        }
    }

    /// The role this node plays now.
    public enum Current: Sendable {
        case secondary
        case master(Master)
    }

    /// A request from a master of an older epoch (`409` with this node's epoch).
    public struct StaleEpoch: Error {
        public let answer: StaleEpochAnswer
    }

    struct State {
        /// The protocol state; `kept` is saved in the data dir whenever it changes.
        var member: FailoverMember
        var current: Current
        /// The secondary's protocol state, the role it plays while `current` is `.secondary`.
        var secondary: SecondaryRole
        /// The master role's protocol state (`Master.withState`).
        var master: Master.Role?
        /// Stops the master this node runs (`runMasters`).
        var masterStop: WakeSignal?
        /// The master log this node holds (`nil` until it follows one).
        var logID: String?
        /// The node's run has ended: it starts no master any more (a vote's answer may
        /// still arrive).
        var stopped = false
        /// How many times the log was cut: an answer whose claim was read before a cut is
        /// read again.
        var cuts = 0
    }

    public let settings: Settings
    public let store: any LogStore
    public let commit: GroupCommit
    let transport: any ReplicationTransport
    /// Where this node's requests as master get their epoch stamp (HTTP only).
    let stamps: EpochStamps?
    let clock: any NodeClock
    let logger: Logger
    let directory: Folder
    /// The protocol state of every role, behind one lock: nothing slow runs under it.
    let state: Mutex<State>
    /// The data dir's `election.json`, written off the lock (`update`).
    let election: KeptValue<FailoverMember.Kept>
    private let seed: UInt64
    let roles: Roles
    let secondaryMetrics: SecondaryMetrics
    /// The jitter of the retries of this node's masters, drawn from `seed` (replayable).
    private let jitter: Mutex<SplitMix64>
    /// The epoch this node had seen when it started.
    private let startEpoch: Int
    /// Wakes readers of the log (long polls, streams) whatever role serves them: one watch
    /// for the node, so that a follower waiting when the role changes is woken by the next.
    let watch: LogWatch
    /// The commit point this node learned, kept in its data dir before readers see it.
    let commitPoint: CommitPoint
    /// A master this node was elected to run, and what stops it.
    private struct Elected: Sendable {
        let master: Master
        let stop: WakeSignal
    }

    /// Masters to run: the node's run runs them, in tasks it owns.
    private let elected: (stream: AsyncStream<Elected>, continuation: AsyncStream<Elected>.Continuation) = AsyncStream.makeStream()
    /// Vote requests to send: the node's run sends them, in tasks it owns.
    private let voteRequests: (stream: AsyncStream<VoteRequest>, continuation: AsyncStream<VoteRequest>.Continuation) = AsyncStream.makeStream()
    /// Advanced to each epoch in which this node, as master, takes appends.
    private let takeovers = LogWatch(durable: 0)
    /// Advanced to each epoch in which this node knows a master (itself or another).
    let mastersKnown = LogWatch(durable: 0)
    private let epochGauge: Gauge
    private let elections: Counter
    private let metricsFactory: any MetricsFactory
    /// Where the tasks this node starts run: the default executor, or the simulation's
    /// (which runs a schedule, every interleaving included, as a function of its seed).
    let taskExecutor: (any TaskExecutor)?

    /// - Parameters:
    ///   - logID: the master log `store` holds, when no data dir says it (tests, simulations).
    ///   - incarnations: the random id of each run of a role (`ReplicaState.incarnation`).
    ///   - random: numbers in `0..<1` for `--error-rate`, and for the retries' jitter of a
    ///     master without failover; simulations pass their seeded ones.
    public init(
        settings: Settings, store: any LogStore, commit: GroupCommit, directory: DataDirectory?, transport: any ReplicationTransport,
        stamps: EpochStamps? = nil, clock: any NodeClock = SystemClock(), logger: Logger = Logger(label: "replog.node"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory, seed: UInt64 = UInt64.random(in: 0...UInt64.max),
        taskExecutor: (any TaskExecutor)? = nil, logID: String? = nil,
        incarnations: @escaping @Sendable () -> String = { UUID().uuidString },
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) throws(DataDirectory.Problem) {
        self.taskExecutor = taskExecutor
        self.settings = settings
        self.store = store
        self.commit = commit
        self.transport = transport
        self.stamps = stamps
        self.clock = clock
        self.logger = logger
        self.seed = seed
        self.jitter = Mutex(SplitMix64(seed: seed ^ 0x6A09_E667_F3BC_C908))
        self.metricsFactory = metricsFactory
        self.directory = Folder(directory)
        let watch = LogWatch(durable: commit.durableSeq, metricsFactory: metricsFactory)
        self.watch = watch
        self.epochGauge = Gauge(label: "replog_epoch", factory: metricsFactory)
        self.elections = Counter(label: "replog_elections_total", factory: metricsFactory)
        var election = try directory?.election ?? DataDirectory.ElectionState()
        self.startEpoch = election.record.epoch
        // A node that has been in an epoch shows its readers what it learned was committed.
        if election.record.epoch > 0, !settings.masterWithoutFailover { watch.followCommitPoint() }
        let kept = try directory?.commitSeq ?? 0
        var keep: (@Sendable (Int) throws -> Void)?
        if directory != nil {
            let folder = self.directory
            keep = { seq in try folder.directory.withLock { directory throws in try directory?.saveCommit(seq) } }
        }
        self.commitPoint = CommitPoint(kept: kept, watch: watch, io: commit.io, logger: logger, keep: keep)
        if let me = settings.me { election.me = me }
        if !settings.members.isEmpty { election.members = settings.members }
        var logID = directory?.metadata.log ?? logID
        self.roles = Roles(incarnations: incarnations, random: random)
        if settings.masterWithoutFailover { logID = try self.directory.masterLog(holding: logID) }
        // A node that has been in an epoch belongs to a cluster with failover, even before it
        // hears a master again (`FailoverMember.stamped`).
        let member = FailoverMember(
            kept: election, foundThrough: store.lastSeq, electionTimeout: settings.electionTimeout, seed: seed, now: clock.now)
        self.secondaryMetrics = SecondaryMetrics(factory: metricsFactory)
        // A master without failover never follows: it draws no incarnation for that role.
        let incarnation = settings.masterWithoutFailover ? "" : roles.incarnations()
        self.state = Mutex(
            State(
                member: member, current: .secondary,
                secondary: Self.secondaryRole(on: store, following: logID, incarnation: incarnation, settings: settings.secondary),
                logID: logID))
        var save: (@Sendable (FailoverMember.Kept) throws -> Void)?
        if directory != nil {
            let folder = self.directory
            save = { kept in try folder.directory.withLock { folder throws in try folder?.saveElection(kept) } }
        }
        self.election = KeptValue(election, io: commit.io, write: save)
        epochGauge.record(election.record.epoch)
        if settings.masterWithoutFailover, let logID {
            let master = Master(
                node: self, settings: settings.master, transport: transport, store: store, clock: clock, logID: logID, logger: logger,
                metricsFactory: metricsFactory, random: random, commit: commit, watch: watch, taskExecutor: taskExecutor)
            let starting = master.startingState(committedBefore: 0)
            state.withLock { install(master, state: starting, stop: WakeSignal(), in: &$0) }
        }
    }

    /// Makes `master` the role this node plays, with its protocol state.
    private func install(_ master: Master, state masterState: Master.State, stop: WakeSignal, in state: inout State) {
        state.current = .master(master)
        state.master = Master.Role(master: ObjectIdentifier(master), state: masterState)
        state.masterStop = stop
    }

    /// What each role this node plays is made with.
    struct Roles: Sendable {
        let incarnations: @Sendable () -> String
        let random: @Sendable () -> Double
    }

    /// The data dir, written to off the node's lock.
    final class Folder: Sendable {
        let directory: Mutex<DataDirectory?>
        /// Whether there is a data dir, which outlives the process.
        let isKept: Bool
        init(_ directory: DataDirectory?) {
            self.directory = Mutex(directory)
            self.isKept = directory != nil
        }

        /// The id of the log this node serves as master: the one it holds, or a new one,
        /// recorded in the data dir before anything of it leaves, so that the secondaries
        /// know the log again after a restart.
        func masterLog(holding held: String?) throws(DataDirectory.Problem) -> String {
            if let held { return held }
            return try directory.withLock { directory throws(DataDirectory.Problem) in try directory?.masterLog() } ?? UUID().uuidString
        }
    }

    // MARK: What the routers ask

    /// The role now.
    public var current: Current { state.withLock { $0.current } }

    /// The master this node runs now, if it is the master.
    public var currentMaster: Master? {
        if case .master(let master) = current { master } else { nil }
    }

    /// Role, epoch and master for `/health` (`nil` fields on a cluster without failover).
    public var status: (role: String?, epoch: Int?, master: String?) {
        guard let status = state.withLock({ $0.member.status }) else { return (nil, nil, nil) }
        return (status.role.rawValue, status.epoch, status.master)
    }

    /// As master: the epoch each member said it is in when it last answered (`/health`,
    /// the status page).
    public var memberEpochs: [String: Int] { state.withLock { $0.member.memberEpochs } }

    /// Where `POST /messages` goes on a node that is not the master: the master's URL, or
    /// nil while none is known; `.none` on a cluster without failover (the old `405`).
    public var masterForClients: String?? { state.withLock { $0.member.masterForClients } }

    // MARK: Reading

    /// Up to `limit` entries from `seq` on, as far as `level` shows (`Master.read`).
    public func read(from seq: Int, limit: Int, level: ReadLevel = .committed) throws(LogStoreError) -> [LogEntry] {
        try commit.readDurable(from: seq, limit: watch.limit(limit, from: seq, level: level))
    }

    /// The highest seq no failover can replace, as this node's readers see it.
    public var commitSeq: Int { watch.commitSeq }

    /// The running hash at `seq`, if this node holds it.
    public func hash(at seq: Int) -> String? {
        switch current {
        case .secondary: seq <= replicaState.seq ? store.hash(at: seq) : nil
        case .master(let master): seq <= master.commit.durableSeq ? store.hash(at: seq) : nil
        }
    }

    /// A candidate asks for this node's vote.
    public func vote(_ request: VoteRequest) async throws -> VoteAnswer {
        let now = clock.now
        let answer = try await update { state in
            state.member.onVoteRequest(request, log: position(in: state), now: now, canVote: settings.canVote)
        }
        if answer.granted, !request.preVote {
            logger.info("voted", metadata: ["replog.candidate": "\(request.candidate)", "replog.epoch": "\(request.epoch)"])
        }
        return answer
    }

    /// This node's log position for elections: its epoch history and its durable end. Read
    /// under the node's lock, in the event that uses it: a delivery that becomes durable and
    /// is answered meanwhile is then either counted by the vote, or refused its answer
    /// (`answering`), never neither. While a cut rewrites the log, it ends where the cut
    /// does: a vote or an election on entries about to go would claim a log this node will
    /// not hold.
    private func position(in state: State) -> LogPosition {
        state.member.position(lastSeq: min(commit.durableSeq, state.secondary.diskWork?.cutAfter ?? .max))
    }

    // MARK: Elections

    public func run() async throws {
        if settings.bootstrap {
            let now = clock.now
            await carryOut(try await update({ state in state.member.bootstrap(now: now, log: position(in: state)) }, directives: { $0 }))
        }
        if case (.master(let master), let stop?) = state.withLock({ ($0.current, $0.masterStop) }), settings.masterWithoutFailover {
            elected.continuation.yield(Elected(master: master, stop: stop))
        }
        await untilShutdown(on: taskExecutor) {
            async let votes: Void = self.sendVoteRequests()
            async let commitPoints: Void = self.commitPoint.run()
            // The master this node runs stops with it, and its loops end before the node's
            // run returns: the service group then closes the transport under no stream.
            async let masters: Void = self.runMasters()
            while !Task.isCancelled {
                let wake = await self.tick()
                do { try await self.clock.sleep(for: max(wake - self.clock.now, .milliseconds(5))) } catch { break }
            }
            await votes
            await commitPoints
            await masters
        }
        state.withLock { $0.stopped = true }
        // Its appends still waiting are answered "shutting down"; one without failover stays
        // the master to the end, one elected goes back to following (one elected as the run
        // ended never ran).
        if settings.masterWithoutFailover { currentMaster?.shutDown() } else { stopMaster() }
    }

    /// Runs each master this node is elected to run until it steps down or the node stops.
    private func runMasters() async {
        await withDiscardingTaskGroup { group in
            for await elected in elected.stream {
                group.addTask(executorPreference: taskExecutor) {
                    await withDiscardingTaskGroup { running in
                        running.addTask(executorPreference: self.taskExecutor) { _ = try? await elected.master.run() }
                        await elected.stop.wait()  // or the node's run is cancelled
                        running.cancelAll()
                    }
                }
            }
        }
    }

    /// Runs the instance's timers; returns when to look again.
    private func tick() async -> Duration {
        let now = clock.now
        guard settings.canVote,
            let (directives, wake) = try? await update(
                { state in state.member.tick(now: now, log: position(in: state), heartbeatInterval: settings.master.heartbeatInterval) },
                directives: \.0)
        else { return now + .seconds(1) }
        await carryOut(directives)
        return wake
    }

    func carryOut(_ directives: [FailoverInstance.Directive]) async {
        for directive in directives {
            switch directive {
            case .requestVotes(let request):
                if !request.preVote {
                    elections.increment()
                    logger.info("election started", metadata: ["replog.epoch": "\(request.epoch)", "replog.log": "\(request.log)"])
                }
                voteRequests.continuation.yield(request)
            case .becomeMaster(let epoch, let after):
                await becomeMaster(epoch: epoch, after: after)
            case .stepDown(let reason):
                stepDown(reason)
            }
        }
    }

    private func stepDown(_ reason: String) {
        guard currentMaster != nil else { return }
        logger.warning("stepped down: no longer the master", metadata: ["replog.reason": "\(reason)"])
        stopMaster()
    }

    /// Asks every other member for its vote on each request, until the node stops.
    private func sendVoteRequests() async {
        await withDiscardingTaskGroup { group in
            for await request in voteRequests.stream {
                let (others, members) = state.withLock { ($0.member.instance?.settings.others ?? [], $0.member.kept.members) }
                for peer in others {
                    // Its members, and its URL for the peer: a peer that never heard a master
                    // learns its cluster from them (`FailoverMember.onVoteRequest`).
                    var request = request
                    (request.members, request.you) = (members, peer)
                    group.addTask(executorPreference: taskExecutor) { await self.askForVote(request, from: peer) }
                }
            }
        }
    }

    private func askForVote(_ request: VoteRequest, from peer: String) async {
        guard let answer = try? await transport.requestVote(request, from: peer, timeout: settings.electionTimeout.lowerBound) else { return }
        let now = clock.now
        await carryOut((try? await update({ state in state.member.onVoteAnswer(answer, from: peer, log: position(in: state), now: now) }, directives: { $0 })) ?? [])
    }

    private func becomeMaster(epoch: Int, after: Int) async {
        let (stopped, stillElected) = state.withLock { ($0.stopped, $0.member.isMaster(of: epoch)) }
        guard !stopped else { return }
        guard stillElected else { return notTakingOver(epoch) }
        // Disk work that a request of the old master began (a cut, a log started again) ends
        // first, and the part of a batch this node holds is cut the same way: the new
        // master's appends must not land in a log that such work still rewrites.
        await diskWorkDone()
        if let complete = FailoverInstance.cutBeforeTakeover(completeSeq: store.completeSeq, lastSeq: store.lastSeq) {
            do {
                let cut = try await cutLog(after: complete).cut
                logger.notice("cut the part of a batch it held", metadata: ["replog.after": "\(complete)", "replog.cut": "\(cut.count)"])
            } catch {
                logger.error("cannot cut the part of a batch it holds; not taking over", metadata: ["replog.error": "\(error)"])
                return
            }
        }
        let (members, me, logID, history) = state.withLock { ($0.member.kept.members, $0.member.kept.me!, $0.logID, $0.member.kept.record.history) }
        let log: String
        do { log = try await commit.io.value { [directory] in try directory.masterLog(holding: logID) } } catch {
            logger.error("cannot record the log id; not taking over", metadata: ["replog.error": "\(error)"])
            return
        }
        watch.followCommitPoint()
        var masterSettings = settings.master
        masterSettings.secondaries = members.filter { $0 != me }
        let startHash = store.hash(at: after)
        let stampsOfEpoch = masterSettings.secondaries.map { peer in
            EpochStamp(epoch: epoch, master: me, members: members, you: peer, history: history, startHash: startHash)
        }
        let master = Master(
            node: self, settings: masterSettings, transport: transport, store: store, clock: clock, logID: log, logger: logger,
            metricsFactory: metricsFactory, random: { [weak self] in self?.jitter.withLock { $0.unit() } ?? 0.5 }, commit: commit,
            elected: Master.Elected(epoch: epoch, start: after), watch: watch, taskExecutor: taskExecutor)
        let starting = master.startingState(committedBefore: min(commitPoint.learned, after))
        let stop = WakeSignal()
        let now = clock.now
        // Checked again where the master is installed: the node may have heard a later epoch
        // (whose master may have begun disk work here) while this one was being set up.
        let taking = state.withLock { state -> Int?? in
            guard state.member.isMaster(of: epoch), state.secondary.diskWork == nil else { return nil }
            install(master, state: starting, stop: stop, in: &state)
            state.logID = log
            return .some(state.member.becameMaster(now: now))
        }
        guard let taking else { return notTakingOver(epoch) }
        stamps?.set(stampsOfEpoch)  // before the master's run sends anything
        elected.continuation.yield(Elected(master: master, stop: stop))
        if let taking { tookOver(in: taking) }
        epochGauge.record(epoch)
        logger.notice("elected master", metadata: [
            "replog.epoch": "\(epoch)", "replog.after": "\(after)", "replog.members": "\(members.joined(separator: ","))",
        ])
    }

    private func notTakingOver(_ epoch: Int) {
        logger.notice("not taking over: this node left the epoch it was elected in", metadata: ["replog.epoch": "\(epoch)"])
    }

    /// Back to following: the master (if any) stops and answers its waiting appends; its
    /// loops end soon after (`runMasters`).
    private func stopMaster() {
        let (master, stop, logID) = state.withLock { state -> (Master?, WakeSignal?, String?) in
            guard case .master(let master) = state.current else { return (nil, nil, nil) }
            defer { state.masterStop = nil }
            return (master, state.masterStop, state.logID)
        }
        guard let master else { return }
        stamps?.set([])
        stop?.signal()
        master.shutDown()
        let role = Self.secondaryRole(on: store, following: logID, incarnation: roles.incarnations(), settings: settings.secondary)
        state.withLock { state in
            state.current = .secondary
            state.secondary = role
        }
    }

    /// Why this node may not take an append now, if so.
    func appendRefusal() -> FailoverInstance.AppendRefusal? {
        let now = clock.now
        return state.withLock { $0.member.instance?.appendRefusal(now: now) }
    }

    /// Returns once this node, as master, takes appends in `epoch` (a majority holds its log
    /// through its start), or after `timeout`.
    func waitForTakeover(in epoch: Int, upTo timeout: Duration) async {
        await takeovers.wait(for: epoch, upTo: timeout, on: clock)
    }

    /// Returns once this node is the master taking appends, or follows one, or after `timeout`.
    public func waitUntilSettled(upTo timeout: Duration) async {
        await mastersKnown.wait(for: max(startEpoch, 1), upTo: timeout, on: clock)
    }

    /// As master, a member answered that it is in a later epoch: this node is deposed.
    func memberIsLater(_ peer: String, epoch: Int) async {
        let now = clock.now
        let (result, version) = record { $0.member.onMemberAnswer(from: peer, epoch: epoch, matched: nil, now: now) }
        await carryOut(memberAnswer: result, recorded: version)
    }

    /// Carries out what the election state made of a member's answer to this node's master
    /// (`FailoverMember.onMemberAnswer`), as `update` does (`kept`): nothing more if the
    /// record it rests on could not be written (the next answer tries again).
    func carryOut(memberAnswer result: ([FailoverInstance.Directive], taking: Int?), recorded version: Int) async {
        guard let (directives, taking) = try? await kept(result, recorded: version, directives: \.0) else { return }
        if let taking { tookOver(in: taking) }
        await carryOut(directives)
    }

    /// This node, as master, takes appends in `epoch`.
    func tookOver(in epoch: Int) {
        takeovers.advanced(to: epoch)
        mastersKnown.advanced(to: epoch)
    }

    // MARK: Persistence

    /// Feeds one event to the protocol state under the lock, then returns its result once
    /// everything the state kept so far is in the data dir: an answer or a directive never
    /// leaves on what a restart would forget (a vote, an epoch, an epoch start, who the
    /// members are), even when an earlier event changed it and its save is still running.
    /// The save runs after the lock is released, on the storage's thread pool. If it fails,
    /// the error is thrown, nothing is answered, and the next event tries the save again.
    ///
    /// Only stepping down is carried out at once, before the save: it rests on nothing
    /// saved, and a master must not go on running in an epoch it has left while the disk
    /// writes. `directives` names the directives of the event's result.
    func update<T>(
        _ event: (inout State) -> T, directives: (T) -> [FailoverInstance.Directive] = { _ in [] }
    ) async throws -> T {
        let (result, version) = record(event)
        return try await kept(result, recorded: version, directives: directives)
    }

    /// The part of `update` after the lock: steps down at once if the result says so, then
    /// returns the result once the election record's `version` is in the data dir.
    func kept<T>(_ result: T, recorded version: Int, directives: (T) -> [FailoverInstance.Directive]) async throws -> T {
        for case .stepDown(let reason) in directives(result) { stepDown(reason) }
        try await election.keep(through: version)
        return result
    }

    /// The part of `update` under the lock: feeds an event to the state; returns its result
    /// and the version of the election record to keep before anything that rests on it leaves.
    func record<T>(_ event: (inout State) -> T) -> (T, version: Int) {
        state.withLock { state in
            let result = event(&state)
            return (result, keep(state.member))
        }
    }

    /// Hands what `member` keeps to the election record, under the lock that changed it;
    /// returns the version to keep before anything that rests on it leaves.
    func keep(_ member: FailoverMember) -> Int {
        let (version, changed) = election.set(member.kept)
        if changed { epochGauge.record(member.kept.record.epoch) }
        return version
    }
}

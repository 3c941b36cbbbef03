import Foundation
import CoreMetrics
import Logging
import Metrics
import ReplogCore
import ReplogStorage
import ServiceLifecycle
import Synchronization

/// The master: orders every append, replicates it to every secondary, and answers the
/// client once `w` nodes hold it.
///
/// Shape of the work:
/// - `append` assigns the next seq and stores the message in one short critical section
///   (the single sequencing point), then waits for acknowledgements without holding anything.
/// - One replication stream per secondary (`run()`) reads from the log and sends everything
///   the secondary misses, in batches, retrying with back-off until it is delivered. Streams
///   read from the store, so a dead secondary costs no memory however long it is away.
/// - A heartbeat loop probes each secondary, moves it between healthy / suspected / unhealthy,
///   and keeps the quorum (and so the read-only flag) up to date.
public final class Master: Service {
    /// The answer to a successful append (`ReplogCore.AppendResult`, the `201` body).
    public typealias AppendResult = ReplogCore.AppendResult

    /// Why an append was not answered with 201.
    public enum AppendError: Error, Equatable {
        /// `w` outside `1...clusterSize`.
        case invalidWriteConcern(w: Int, clusterSize: Int)
        /// Not enough nodes are available: the master is read-only.
        case readOnly(Quorum)
        /// The message is in the log but fewer than `w` nodes acknowledged it in time.
        case timedOut(seq: Int, acknowledgements: Int, w: Int, timeout: Duration)
        /// The master is shutting down; the message (if appended) stays in its log.
        case shuttingDown
        /// The log store refused the append.
        case storeFailed(String)
        /// `id` was first used for another message (at `seq`): a retry must repeat its
        /// message exactly, so this is a client's mistake, not a retry.
        case idConflict(id: String, seq: Int)
        /// Failover: this node is not the master (`master`: who is, when known), or it was
        /// just elected and a majority does not yet hold its log through its start.
        case notTheMaster(master: String?)
    }

    /// What the master knows about one secondary.
    public struct SecondaryHealth: Sendable, Equatable {
        public let url: String
        public let status: PeerStatus
        /// Highest seq the secondary holds, as far as the master knows.
        public let ackedSeq: Int
        /// Messages the secondary is behind the master.
        public let lag: Int
        /// Last successful heartbeat or replication answer.
        public let lastContact: Date?
        /// Why the secondary cannot follow this master, if it cannot.
        public let problem: PeerProblem?
    }

    /// A snapshot for `GET /health`.
    public struct Health: Sendable, Equatable {
        /// The last seq the master lists: the end of its durable prefix.
        public let lastSeq: Int
        /// The first seq it still keeps (retention).
        public var firstSeq = 1
        /// The highest seq no failover can replace (what committed reads show).
        public var commitSeq = 0
        public let quorum: Quorum
        public let secondaries: [SecondaryHealth]
        /// Why the master's disk can make nothing durable any more, if it failed an fsync.
        public let storageFailure: String?
        /// The running hash of the log at `lastSeq` (`HashChain`).
        public let hash: String?
        /// Appends are refused: no quorum, or a failed disk.
        public var readOnly: Bool { !quorum.isWritable || storageFailure != nil }
    }

    public let settings: MasterSettings
    public let store: any LogStore
    /// Flushes the log; nothing leaves the master (reply or replication) before it is durable.
    public let commit: GroupCommit
    /// Identifies this master's log; secondaries refuse deliveries from another log.
    public let logID: String
    let transport: any ReplicationTransport
    let clock: any NodeClock
    let logger: Logger
    let random: @Sendable () -> Double
    let metrics: MasterMetrics
    /// Wakes long-polling readers as the durable prefix grows.
    let watch: LogWatch
    /// Wakes `announceCommits` when what a member may learn of the commit point changed.
    let commitChanged = WakeSignal()
    /// Members found diverged, each with the last seq where their logs may still agree: the
    /// master's run searches where each parts, in tasks it owns (`runDivergenceSearches`).
    let divergedMembers: (stream: AsyncStream<(peer: String, seq: Int)>, continuation: AsyncStream<(peer: String, seq: Int)>.Continuation) =
        AsyncStream.makeStream()
    /// Per secondary: `newData` wakes an idle stream, `recovered` cuts a back-off short,
    /// `urgent` ends a linger because a client now waits for acknowledgements.
    let signals: [String: (newData: WakeSignal, recovered: WakeSignal, urgent: WakeSignal)]
    /// The node that runs this master. Its one lock guards this master's state too
    /// (`withState`), beside the election state that an elected master asks before every
    /// append and tells of every member's answer. Weak: a master's loops may run a moment
    /// longer than its node (a simulated crash drops the node); they then change nothing.
    weak let node: Node?
    /// Set when this master was elected (failover): it asks its node before every append,
    /// reports every member's answer, and cuts a member's log where it parts from its own.
    let elected: Elected?

    /// The epoch an elected master runs in, and the last seq of earlier epochs in its log.
    struct Elected {
        let epoch: Int
        let start: Int
    }

    /// Whether entries leave for the secondaries before the master's own fsync is done
    /// (`ReplicationInstance.sendsBeforeDurable`: with failover).
    let sendsBeforeDurable: Bool

    /// Where the tasks the master starts on its own run (the simulation's executor in tests).
    let taskExecutor: (any TaskExecutor)?
    /// The majority rounds of linearizable reads.
    let readRounds: ReadRounds

    /// Only a node makes one (`Node`, which every process runs): the master role
    /// from its start (without failover) or once elected. It runs once the node installed its
    /// state (`startingState`).
    init(
        node: Node,
        settings: MasterSettings,
        transport: any ReplicationTransport,
        store: any LogStore = InMemoryLogStore(),
        fsync: FsyncPolicy = .always,
        io: BlockingIO = .threadPool,
        clock: any NodeClock = SystemClock(),
        logID: String = UUID().uuidString,
        logger: Logger = Logger(label: "replog.master"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
        commit: GroupCommit? = nil,
        elected: Elected? = nil,
        watch: LogWatch? = nil,
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        self.taskExecutor = taskExecutor
        self.readRounds = ReadRounds(taskExecutor: taskExecutor)
        self.settings = settings
        self.transport = transport
        self.store = store
        self.commit = commit ?? GroupCommit(store: store, policy: fsync, io: io, clock: clock, logger: logger, metricsFactory: metricsFactory)
        self.node = node
        self.elected = elected
        self.metrics = MasterMetrics(settings: settings, factory: metricsFactory)
        self.clock = clock
        self.logID = logID
        self.logger = logger
        self.random = random
        self.sendsBeforeDurable = ReplicationInstance.sendsBeforeDurable(elected: elected != nil)
        self.watch = watch ?? LogWatch(durable: self.commit.durableSeq, metricsFactory: metricsFactory)
        self.signals = Dictionary(uniqueKeysWithValues: settings.secondaries.map { ($0, (WakeSignal(), WakeSignal(), WakeSignal())) })
    }

    // MARK: Appending

    /// Appends a message and waits until `request.w` nodes hold it (every node when `w` is nil).
    ///
    /// A repeated `request.id` appends nothing and answers with the original seq once the
    /// requested write concern holds for it.
    public func append(_ request: AppendRequest) async throws(AppendError) -> AppendResult {
        let appended = try await appendMeasured(request)
        return AppendResult(seq: appended.seqs.lowerBound, message: appended.message, w: appended.w)
    }

    /// Appends a batch (`request.batch`) atomically: all its messages at consecutive seqs, or
    /// none; answered once `request.w` nodes hold all of it. A repeated `request.id` appends
    /// nothing, as for one message.
    public func appendBatch(_ request: AppendRequest) async throws(AppendError) -> BatchAppendResult {
        let appended = try await appendMeasured(request)
        return BatchAppendResult(firstSeq: appended.seqs.lowerBound, lastSeq: appended.seqs.upperBound, w: appended.w)
    }

    /// Where an append went: its seqs, its (first) message as stored, and its write concern.
    private struct Appended {
        let seqs: ClosedRange<Int>
        let message: String
        let w: Int
    }

    private func appendMeasured(_ request: AppendRequest) async throws(AppendError) -> Appended {
        let started = ContinuousClock.now
        do {
            let result = try await appendUnmeasured(request)
            metrics.recordAppend(.ok, w: result.w, duration: ContinuousClock.now - started)
            return result
        } catch {
            metrics.recordAppend(error.outcome, w: nil, duration: ContinuousClock.now - started)
            throw error
        }
    }

    /// Counts a request the router refused before it reached the master (bad JSON, …).
    public func countBadRequest() {
        metrics.recordAppend(.badRequest, w: nil, duration: .zero)
    }

    private func appendUnmeasured(_ request: AppendRequest) async throws(AppendError) -> Appended {
        let w = request.w ?? settings.clusterSize
        guard (1...settings.clusterSize).contains(w) else {
            throw .invalidWriteConcern(w: w, clusterSize: settings.clusterSize)
        }
        // After a failed fsync nothing can become durable: refuse before writing anything.
        if let failure = commit.failure { throw .storeFailed(failure.description) }
        if commit.writeWasRefused { await commit.retryRefusedWrite() }
        if let elected, let refusal {
            guard case .takingOver(let longest) = refusal else { throw AppendError(refusal) }
            await node?.waitForTakeover(in: elected.epoch, upTo: min(request.timeout ?? longest, longest))
            if let again = self.refusal { throw AppendError(again) }
        }
        return try await admitted(request, w: w)
    }

    /// Why its node's election state refuses this elected master an append now, if so.
    private var refusal: FailoverInstance.AppendRefusal? {
        guard let node else { return .notTheMaster(master: nil) }  // the node is gone
        return node.appendRefusal()
    }

    /// An append this master may take: sequence it, store it, wait for `w`.
    private func admitted(_ request: AppendRequest, w: Int) async throws(AppendError) -> Appended {
        let count = request.batch?.count ?? 1
        let cutsBefore = commit.cutCount
        // An elected master's node may have left its epoch since the append asked: it is
        // refused in the step that would admit it.
        let now = clock.now
        let refused = { [elected] (member: borrowing FailoverMember) -> AppendError? in
            elected == nil ? nil : member.instance?.appendRefusal(now: now).map(AppendError.init)
        }
        let admitted = try withState(refusing: refused) { state throws(AppendError) -> (ReplicationInstance.Admission, WaiterID?, Bool) in
            let admission: ReplicationInstance.Admission
            do throws(ReplicationInstance.Refusal) {
                admission = try state.instance.admit(request, nextSeq: store.lastSeq + 1) { seq, count in
                    try? store.read(from: seq, limit: count)
                }
            } catch {
                switch error {
                case .readOnly(let quorum): throw .readOnly(quorum)
                case .shuttingDown: throw .shuttingDown
                case .idConflict(let id, let seq): throw .idConflict(id: id, seq: seq)
                }
            }
            if case .append(let seq) = admission {
                let records = request.records(from: seq)
                do {
                    try store.append(records.entries, ids: records.ids, continues: records.continues)
                } catch {
                    throw .storeFailed("\(error)")
                }
            }
            let waiter = state.instance.onAppend(admission, id: request.id, w: w, now: now, count: count)
            if let waiter { state.waiters.register(waiter) }
            return (admission, waiter, state.instance.answerWaitsForCommitPoint(w: w))
        }
        // The node runs another master now: this one stepped down.
        guard let (admission, waiter, waitsForCommitPoint) = admitted else { throw .shuttingDown }
        let (first, isRetry) =
            switch admission {
            case .append(let seq): (seq, false)
            case .retry(let seq): (seq, true)
            }
        let seq = first + count - 1  // the last of a batch: it waits for all of it
        // With failover the secondaries get the entry while the master's own fsync runs
        // (`sendsBeforeDurable`): the two overlap instead of adding up.
        if !isRetry, sendsBeforeDurable { wakeStreams(hasWaiter: waiter != nil) }
        // No client hears of the entry before it is durable here: the master counts itself
        // towards `w` only after its own fsync, whoever else already holds the entry.
        do {
            try await commit.makeDurable(through: seq)
        } catch {
            if let waiter { discard(waiter, seq: seq) }
            throw .storeFailed("\(error)")
        }
        // A master's log is cut only once it was deposed, and its seqs then hold the new
        // master's entries: the fsync that covers `seq` may no longer cover this append's
        // (the real-node simulation with stalled disks, seed 3961: a 201 for an entry the
        // new master had replaced). Its outcome is unknown to the client, as a 503's is.
        if commit.cutCount != cutsBefore {
            if let waiter { discard(waiter, seq: seq) }
            throw .notTheMaster(master: nil)
        }
        if !isRetry {
            metrics.lastSeq.record(seq)
            madeDurable()
            if !sendsBeforeDurable { wakeStreams(hasWaiter: waiter != nil) }
        }
        if let waiter {
            switch await waitForAcknowledgements(waiter, seq: seq, timeout: request.timeout) {
            case .satisfied:
                break
            case .timedOut:
                let holders = withState { $0.instance.holders(of: seq) } ?? 0
                throw .timedOut(seq: seq, acknowledgements: holders, w: w, timeout: request.timeout ?? .zero)
            case .shutdown:
                throw .shuttingDown
            }
        }
        // A reader that asks after the 201 (on this master) sees it, once the commit point is
        // kept (one small write).
        if waitsForCommitPoint {
            await watch.wait(for: seq, level: .committed, upTo: settings.heartbeatTimeout, on: clock)
        }
        let message = isRetry ? (try? store.read(from: first, limit: 1))?.first?.message ?? request.message : request.message
        return Appended(seqs: first...seq, message: message, w: w)
    }

    /// Tells every replication stream that the log grew; with a waiting client, a stream
    /// that lingers to batch goes at once.
    private func wakeStreams(hasWaiter: Bool) {
        // In configuration order, so that a simulation replays the same interleaving.
        for peer in settings.secondaries {
            signals[peer]!.newData.signal()
            if hasWaiter { signals[peer]!.urgent.signal() }
        }
    }

    private func waitForAcknowledgements(
        _ waiter: WaiterID, seq: Int, timeout: Duration?
    ) async -> WaitOutcome {
        guard let timeout else { return await suspend(waiter, seq: seq) }
        return await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                if (try? await clock.sleep(for: timeout)) != nil { finish(waiter, seq: seq, .timedOut) }
            }
            let outcome = await suspend(waiter, seq: seq)
            group.cancelAll()
            return outcome
        }
    }

    private func suspend(_ waiter: WaiterID, seq: Int) async -> WaitOutcome {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<WaitOutcome, Never>) in
                // A master the node replaced answered its waiters "shutting down" already.
                let outcome = withState { $0.waiters.suspend(waiter, continuation) } ?? .some(.shutdown)
                if let outcome { continuation.resume(returning: outcome) }
            }
        } onCancel: {
            // The client went away: stop counting for it (the message stays in the log).
            finish(waiter, seq: seq, .timedOut)
        }
    }

    /// Forgets a waiter whose append fails before it waits for acknowledgements.
    private func discard(_ waiter: WaiterID, seq: Int) {
        withState { state in
            state.instance.onGiveUp(waiter, seq: seq)
            state.waiters.discard(waiter)
        }
    }

    private func finish(_ waiter: WaiterID, seq: Int, _ outcome: WaitOutcome) {
        let continuation = withState { state in
            state.instance.onGiveUp(waiter, seq: seq)
            return state.waiters.finish(waiter, outcome)
        }
        continuation??.resume(returning: outcome)
    }

    /// The log is durable further: readers of `local` see it, and with failover it may
    /// advance the commit point.
    private func madeDurable() {
        watch.advanced(to: commit.durableSeq)
        if elected != nil {
            handle {
                $0.onDurable(commit.durableSeq)
                return []
            }
        }
    }

    // MARK: Reading

    /// Up to `limit` messages from `seq` on, in total order, as far as `level` shows: only
    /// durable ones (a crash or a failed fsync could still take back the others), and by
    /// default only committed ones (a failover could take back the others).
    public func read(from seq: Int, limit: Int, level: ReadLevel = .committed) throws(LogStoreError) -> [LogEntry] {
        try commit.readDurable(from: seq, limit: watch.limit(limit, from: seq, level: level))
    }

    /// `read(from:limit:level:)` for readers over HTTP, a page at a time (`listingPageBytes`):
    /// off the cooperative threads when the log is on disk.
    public func list(from seq: Int, limit: Int, level: ReadLevel = .committed) async throws(LogStoreError) -> [LogEntry] {
        try await commit.readDurable(from: seq, limit: watch.limit(limit, from: seq, level: level), maxBytes: listingPageBytes)
    }

    /// Returns once a read at `level` shows something at `seq` or later, or after `timeout`.
    public func waitForEntries(from seq: Int, level: ReadLevel = .committed, upTo timeout: Duration) async {
        await watch.wait(for: seq, level: level, upTo: min(timeout, settings.maxLongPoll), on: clock)
    }

    /// The highest seq no failover can replace, as readers see it.
    public var commitSeq: Int { watch.commitSeq }

    public var health: Health {
        // The master's seq is what it lists: its durable prefix. An entry whose fsync is
        // still running (or failed) is not counted, nor as a secondary's lag.
        let lastSeq = commit.durableSeq
        let storageFailure = commit.failure?.description
        let hash = store.hash(at: lastSeq)
        let firstSeq = store.firstSeq
        let (now, date) = (clock.now, clock.date)
        var health = withState { state in
            Health(
                lastSeq: lastSeq,
                quorum: state.instance.quorum,
                secondaries: settings.secondaries.map { url in
                    let peer = state.instance.peers[url]!
                    return SecondaryHealth(
                        url: url, status: peer.health.status, ackedSeq: peer.matched,
                        lag: max(0, lastSeq - peer.matched),
                        lastContact: peer.lastContact.map { date.addingTimeInterval(($0 - now).seconds) },
                        problem: peer.reportedProblem)
                },
                storageFailure: storageFailure, hash: hash)
        } ?? Health(
            lastSeq: lastSeq, quorum: Quorum(secondaryStatuses: settings.secondaries.map { _ in PeerStatus.unhealthy }), secondaries: [],
            storageFailure: storageFailure, hash: hash)
        health.firstSeq = firstSeq
        health.commitSeq = watch.commitSeq
        return health
    }

    // MARK: Running

    /// Runs one replication stream per secondary and the heartbeat loop until graceful
    /// shutdown or cancellation; then answers every waiting append with "shutting down".
    public func run() async throws {
        logger.info("master started", metadata: [
            "replog.secondaries": "\(settings.secondaries.joined(separator: ","))",
            "replog.log": "\(logID)", "replog.lastSeq": "\(store.lastSeq)",
        ])
        // Appends still waiting when the master stops are answered "shutting down" at once
        // (their messages stay in the log), so that the HTTP server can drain quickly.
        defer { shutDown() }
        // A node elected master may hold entries whose fsync never ran: a delivery it got as
        // a secondary from a master that died mid-request. It lists and counts them once
        // they are durable, so make them durable now, not at the next append.
        if commit.durableSeq < store.completeSeq { _ = try? await commit.makeDurable(through: store.completeSeq) }
        madeDurable()
        await untilShutdown(on: taskExecutor) {
            async let heartbeats: Void = self.monitorHeartbeats()
            async let commits: Void = self.announceCommits()
            async let searches: Void = self.runDivergenceSearches()
            await self.runReplicationStreams()
            await heartbeats
            await commits
            await searches
        }
    }

    /// Fails every waiting append with `shuttingDown` and refuses new ones.
    func shutDown() {
        let continuations = withState { state -> [CheckedContinuation<WaitOutcome, Never>] in
            state.instance.onShutdown()
            return state.waiters.finishAll(.shutdown)
        } ?? []
        for continuation in continuations { continuation.resume(returning: .shutdown) }
    }

    /// Runs one replication stream per secondary until cancelled, each where the transport
    /// wants it (over HTTP: on the event loop of its connections to that secondary).
    func runReplicationStreams() async {
        await withDiscardingTaskGroup { group in
            for peer in settings.secondaries {
                group.addTask(executorPreference: transport.executor(for: peer) ?? taskExecutor) { await self.replicate(to: peer) }
            }
        }
    }
}

extension Master.AppendError {
    /// What the client hears when failover refuses an append (one still taking over after
    /// its wait: `notTheMaster(nil)`, a `503`).
    init(_ refusal: FailoverInstance.AppendRefusal) {
        self =
            switch refusal {
            case .notTheMaster(let master): .notTheMaster(master: master)
            case .takingOver: .notTheMaster(master: nil)
            case .noQuorum(let quorum): .readOnly(quorum)
            }
    }

    var outcome: MasterMetrics.Outcome {
        switch self {
        case .invalidWriteConcern: .badRequest
        case .readOnly: .readOnly
        case .timedOut: .timeout
        case .shuttingDown: .shuttingDown
        case .storeFailed: .storeFailed
        case .idConflict: .badRequest
        case .notTheMaster: .readOnly
        }
    }
}

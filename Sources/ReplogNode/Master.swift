import Foundation
import CoreMetrics
import Logging
import Metrics
import ReplogCore
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
    /// The answer to a successful append.
    public struct AppendResult: Codable, Sendable, Equatable {
        public let seq: Int
        public let message: String
        public let w: Int
    }

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
        public let problem: String?
    }

    /// A snapshot for `GET /health`.
    public struct Health: Sendable, Equatable {
        public let lastSeq: Int
        public let quorum: Quorum
        public let secondaries: [SecondaryHealth]
        public var readOnly: Bool { !quorum.isWritable }
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
    let state: Mutex<State>
    /// Per secondary: `newData` wakes an idle stream, `recovered` cuts a back-off short.
    let signals: [String: (newData: WakeSignal, recovered: WakeSignal)]

    public init(
        settings: MasterSettings,
        transport: any ReplicationTransport,
        store: any LogStore = InMemoryLogStore(),
        fsync: FsyncPolicy = .always,
        clock: any NodeClock = SystemClock(),
        logID: String = UUID().uuidString,
        logger: Logger = Logger(label: "replog.master"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        precondition(Set(settings.secondaries).count == settings.secondaries.count,
                     "secondaries must be distinct: \(settings.secondaries)")
        self.settings = settings
        self.transport = transport
        self.store = store
        self.commit = GroupCommit(store: store, policy: fsync, metricsFactory: metricsFactory)
        self.metrics = MasterMetrics(settings: settings, factory: metricsFactory)
        self.clock = clock
        self.logID = logID
        self.logger = logger
        self.random = random
        self.state = Mutex(State(settings: settings))
        self.signals = Dictionary(uniqueKeysWithValues: settings.secondaries.map { ($0, (WakeSignal(), WakeSignal())) })
    }

    // MARK: Appending

    /// Appends a message and waits until `request.w` nodes hold it (every node when `w` is nil).
    ///
    /// A repeated `request.id` appends nothing and answers with the original seq once the
    /// requested write concern holds for it.
    public func append(_ request: AppendRequest) async throws(AppendError) -> AppendResult {
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

    private func appendUnmeasured(_ request: AppendRequest) async throws(AppendError) -> AppendResult {
        let w = request.w ?? settings.clusterSize
        guard (1...settings.clusterSize).contains(w) else {
            throw .invalidWriteConcern(w: w, clusterSize: settings.clusterSize)
        }
        let admission = try state.withLock { state throws(AppendError) -> Admission in
            if state.shuttingDown { throw .shuttingDown }
            if let id = request.id, let seq = state.idempotency.seq(for: id) {
                return state.admit(seq: seq, w: w, isRetry: true)
            }
            let quorum = state.quorum
            guard quorum.isWritable else { throw .readOnly(quorum) }
            let seq = store.lastSeq + 1
            do {
                try store.append([LogEntry(seq: seq, message: request.message)])
            } catch {
                throw .storeFailed("\(error)")
            }
            if let id = request.id { state.idempotency.remember(id, seq: seq) }
            return state.admit(seq: seq, w: w, isRetry: false)
        }
        // Write-ahead: durable on the master before any secondary or client hears of it.
        do {
            try await commit.makeDurable(through: admission.seq)
        } catch {
            if let waiter = admission.waiter {
                state.withLock { state in
                    state.tracker.onGiveUp(waiter, seq: admission.seq)
                    state.waiters.discard(waiter)
                }
            }
            throw .storeFailed("\(error)")
        }
        if !admission.isRetry {
            metrics.lastSeq.record(admission.seq)
            // In configuration order, so that a simulation replays the same interleaving.
            for peer in settings.secondaries { signals[peer]!.newData.signal() }
        }
        if let waiter = admission.waiter {
            switch await waitForAcknowledgements(waiter, seq: admission.seq, timeout: request.timeout) {
            case .satisfied:
                break
            case .timedOut:
                let holders = state.withLock { $0.tracker.holders(of: admission.seq) }
                throw .timedOut(seq: admission.seq, acknowledgements: holders, w: w, timeout: request.timeout ?? .zero)
            case .shutdown:
                throw .shuttingDown
            }
        }
        let message =
            admission.isRetry
            ? store.read(from: admission.seq, limit: 1).first?.message ?? request.message
            : request.message
        return AppendResult(seq: admission.seq, message: message, w: w)
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
                let outcome = state.withLock { $0.waiters.suspend(waiter, continuation) }
                if let outcome { continuation.resume(returning: outcome) }
            }
        } onCancel: {
            // The client went away: stop counting for it (the message stays in the log).
            finish(waiter, seq: seq, .timedOut)
        }
    }

    private func finish(_ waiter: WaiterID, seq: Int, _ outcome: WaitOutcome) {
        let continuation = state.withLock { state in
            state.tracker.onGiveUp(waiter, seq: seq)
            return state.waiters.finish(waiter, outcome)
        }
        continuation?.resume(returning: outcome)
    }

    // MARK: Reading

    /// Up to `limit` messages from `seq` on, in total order.
    public func read(from seq: Int, limit: Int) -> [LogEntry] {
        store.read(from: seq, limit: limit)
    }

    public var health: Health {
        let lastSeq = store.lastSeq
        return state.withLock { state in
            Health(
                lastSeq: lastSeq,
                quorum: state.quorum,
                secondaries: settings.secondaries.map { url in
                    let peer = state.peers[url]!
                    return SecondaryHealth(
                        url: url, status: peer.health.status, ackedSeq: peer.matched,
                        lag: max(0, lastSeq - peer.matched), lastContact: peer.lastContact, problem: peer.problem)
                })
        }
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
        try? await cancelWhenGracefulShutdown {
            async let heartbeats: Void = self.monitorHeartbeats()
            await self.runReplicationStreams()
            await heartbeats
        }
    }

    /// Fails every waiting append with `shuttingDown` and refuses new ones.
    func shutDown() {
        let continuations = state.withLock { state in
            state.shuttingDown = true
            return state.waiters.finishAll(.shutdown)
        }
        for continuation in continuations { continuation.resume(returning: .shutdown) }
    }

    /// Runs one replication stream per secondary until cancelled.
    func runReplicationStreams() async {
        await withDiscardingTaskGroup { group in
            for peer in settings.secondaries {
                group.addTask { await self.replicate(to: peer) }
            }
        }
    }

    /// Probes every secondary each `heartbeatInterval` (at a fixed rate: a slow probe
    /// does not stretch the interval).
    func monitorHeartbeats() async {
        while !Task.isCancelled {
            let roundStarted = clock.now
            await withDiscardingTaskGroup { group in
                for peer in settings.secondaries {
                    group.addTask {
                        do {
                            let replica = try await self.transport.probe(peer, timeout: self.settings.heartbeatTimeout)
                            self.onContact(peer, replica)
                        } catch {
                            self.onHeartbeatMissed(peer, error: error)
                        }
                    }
                }
            }
            let lastSeq = store.lastSeq
            for secondary in health.secondaries { metrics.peers[secondary.url]!.lag.record(max(0, lastSeq - secondary.ackedSeq)) }
            let untilNextRound = roundStarted + settings.heartbeatInterval - clock.now
            do { try await clock.sleep(for: max(untilNextRound, .zero)) } catch { return }
        }
    }

    /// A secondary answered: update what it holds, its health, and the appends it completes.
    func onContact(_ peer: String, _ replica: ReplicaState) {
        if let held = replica.logID, held != logID {
            // It answers, but it follows another log: it can neither count towards `w` nor
            // receive ours. Treat it as missing and say why in /health.
            state.withLock {
                $0.peers[peer]!.problem = "holds master log \(held), not this master's \(logID): restart it with an empty log"
            }
            onHeartbeatMissed(peer, error: TransportError.foreignLog("secondary follows another master log"))
            return
        }
        let lastSeq = store.lastSeq
        let now = ContinuousClock.now
        let (completed, transition, quorumChange, restarted, catchUp) = state.withLock { state in
            let wasWritable = state.quorum.isWritable
            var peer = state.peers[peer]!
            let transition = peer.health.onContact()
            peer.lastContact = Date()
            peer.problem = nil
            let restarted = peer.incarnation != nil && peer.incarnation != replica.incarnation
            if peer.incarnation != replica.incarnation {
                // A new process: what it holds now is the truth, even if it is less than before.
                peer.incarnation = replica.incarnation
                peer.matched = min(replica.seq, lastSeq)
                peer.rewinds += 1
            } else {
                peer.matched = max(peer.matched, min(replica.seq, lastSeq))
            }
            // A secondary that comes back behind is caught up; say when that starts and ends.
            var catchUp: CatchUpEvent?
            if let running = peer.catchUp, peer.matched >= running.target {
                catchUp = .finished(entries: running.target - running.from, took: now - running.started)
                peer.catchUp = nil
            } else if peer.catchUp == nil, restarted || transition != nil, peer.matched < lastSeq {
                peer.catchUp = (peer.matched, lastSeq, now)
                catchUp = .started(behind: lastSeq - peer.matched)
            }
            state.peers[peer.url] = peer
            let completed =
                restarted
                ? state.tracker.onRestart(of: peer.url, holding: peer.matched)
                : state.tracker.onAck(from: peer.url, seq: peer.matched)
            let continuations = completed.compactMap { state.waiters.finish($0, .satisfied) }
            return (continuations, transition, state.quorumChange(since: wasWritable), restarted, catchUp)
        }
        for continuation in completed { continuation.resume(returning: .satisfied) }
        if let transition { logTransition(peer, transition) }
        if let quorumChange { logQuorum(quorumChange) }
        if restarted {
            logger.info("secondary restarted", metadata: ["replog.peer": "\(peer)", "replog.seq": "\(replica.seq)"])
        }
        switch catchUp {
        case .started(let behind):
            logger.info("catch-up started", metadata: ["replog.peer": "\(peer)", "replog.behind": "\(behind)"])
        case .finished(let entries, let took):
            logger.info("catch-up finished", metadata: [
                "replog.peer": "\(peer)", "replog.entries": "\(entries)", "replog.ms": "\(took.milliseconds)",
            ])
        case nil:
            break
        }
        if transition != nil || restarted {
            signals[peer]!.recovered.signal()
            signals[peer]!.newData.signal()
        }
    }

    func onHeartbeatMissed(_ peer: String, error: any Error) {
        let (transition, quorumChange) = state.withLock { state in
            let wasWritable = state.quorum.isWritable
            let transition = state.peers[peer]!.health.onHeartbeatMissed()
            return (transition, state.quorumChange(since: wasWritable))
        }
        logger.trace("heartbeat missed", metadata: ["replog.peer": "\(peer)", "replog.error": "\(error)"])
        if let transition { logTransition(peer, transition) }
        if let quorumChange { logQuorum(quorumChange) }
    }

    private func logTransition(_ peer: String, _ transition: PeerHealth.Transition) {
        metrics.peers[peer]!.show(transition.to)
        logger.info("secondary status changed", metadata: [
            "replog.peer": "\(peer)", "replog.status.from": "\(transition.from)", "replog.status.to": "\(transition.to)",
        ])
    }

    private func logQuorum(_ quorum: Quorum) {
        metrics.readOnly.record(quorum.isWritable ? 0 : 1)
        let metadata: Logger.Metadata = ["replog.quorum.available": "\(quorum.available)", "replog.quorum.required": "\(quorum.required)"]
        if quorum.isWritable { logger.info("quorum regained: master is writable", metadata: metadata) }
        else { logger.info("quorum lost: master is read-only", metadata: metadata) }
    }
}

// MARK: - State

extension Master {
    typealias WaiterID = WriteConcernTracker.WaiterID

    enum CatchUpEvent {
        case started(behind: Int)
        case finished(entries: Int, took: Duration)
    }

    enum WaitOutcome: Sendable, Equatable {
        case satisfied
        case timedOut
        case shutdown
    }

    struct Admission {
        let seq: Int
        let isRetry: Bool
        /// `nil` when the write concern was met at once.
        let waiter: WaiterID?
    }

    struct PeerState {
        let url: String
        var health: PeerHealth
        /// Highest seq the secondary holds, as far as the master knows; streams resume after it.
        var matched = 0
        /// Counts the times `matched` was reset because the secondary restarted, so its
        /// stream knows to resend from there.
        var rewinds = 0
        var incarnation: String?
        var lastContact: Date?
        var problem: String?
        /// A catch-up in progress: from which seq, up to which, since when.
        var catchUp: (from: Int, target: Int, started: ContinuousClock.Instant)?
    }

    struct State {
        var tracker: WriteConcernTracker
        var idempotency: IdempotencyWindow
        var peers: [String: PeerState]
        var waiters = Waiters()
        var nextWaiterID = 0
        var shuttingDown = false

        init(settings: MasterSettings) {
            tracker = WriteConcernTracker(secondaries: settings.secondaries)
            idempotency = IdempotencyWindow(capacity: settings.idempotencyWindow)
            peers = Dictionary(uniqueKeysWithValues: settings.secondaries.map {
                ($0, PeerState(url: $0, health: PeerHealth(thresholds: settings.healthThresholds)))
            })
        }

        var quorum: Quorum { Quorum(secondaryStatuses: peers.values.map(\.health.status)) }

        /// The new quorum if writability changed since `wasWritable`.
        func quorumChange(since wasWritable: Bool) -> Quorum? {
            let quorum = self.quorum
            return quorum.isWritable == wasWritable ? nil : quorum
        }

        mutating func admit(seq: Int, w: Int, isRetry: Bool) -> Admission {
            let id = nextWaiterID
            nextWaiterID += 1
            guard !tracker.onAppend(id, seq: seq, required: w) else {
                return Admission(seq: seq, isRetry: isRetry, waiter: nil)
            }
            waiters.register(id)
            return Admission(seq: seq, isRetry: isRetry, waiter: id)
        }
    }

    /// Appends waiting for acknowledgements. An outcome may arrive before its append has
    /// suspended; it is kept until `suspend` collects it.
    struct Waiters {
        private enum Slot {
            case registered
            case suspended(CheckedContinuation<WaitOutcome, Never>)
            case finished(WaitOutcome)
        }

        private var slots: [WaiterID: Slot] = [:]

        mutating func register(_ id: WaiterID) { slots[id] = .registered }

        /// Parks `continuation`, or returns the outcome if it already arrived.
        mutating func suspend(_ id: WaiterID, _ continuation: CheckedContinuation<WaitOutcome, Never>) -> WaitOutcome? {
            switch slots[id] {
            case .registered:
                slots[id] = .suspended(continuation)
                return nil
            case .finished(let outcome):
                slots[id] = nil
                return outcome
            case .suspended, nil:
                preconditionFailure("waiter \(id) suspended twice or never registered")
            }
        }

        /// Records the first outcome of `id`; returns the continuation to resume, if parked.
        mutating func finish(_ id: WaiterID, _ outcome: WaitOutcome) -> CheckedContinuation<WaitOutcome, Never>? {
            switch slots[id] {
            case .registered:
                slots[id] = .finished(outcome)
                return nil
            case .suspended(let continuation):
                slots[id] = nil
                return continuation
            case .finished, nil:
                return nil  // already decided
            }
        }

        /// Forgets a waiter that will never suspend.
        mutating func discard(_ id: WaiterID) { slots[id] = nil }

        mutating func finishAll(_ outcome: WaitOutcome) -> [CheckedContinuation<WaitOutcome, Never>] {
            var continuations: [CheckedContinuation<WaitOutcome, Never>] = []
            for id in slots.keys.sorted() {
                if let continuation = finish(id, outcome) { continuations.append(continuation) }
            }
            return continuations
        }
    }
}

extension Master.AppendError {
    var outcome: MasterMetrics.Outcome {
        switch self {
        case .invalidWriteConcern: .badRequest
        case .readOnly: .readOnly
        case .timedOut: .timeout
        case .shuttingDown: .shuttingDown
        case .storeFailed: .storeFailed
        }
    }
}

extension Duration {
    /// Whole milliseconds, for logs and JSON.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}

import CoreMetrics
import Logging
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Synchronization
@testable import ReplogNode

/// One seeded fault schedule run against the real `Master` and secondaries (`Node`s).
///
/// The schedule is drawn from the seed: client appends with random `w`, `timeout` and
/// `id` (some of them retries, also across a master restart), secondary crashes and restarts
/// (empty, or from their disk), partitions, a master crash and restart, link delays, loss,
/// duplication, lost answers and injected 500s after store. Every node writes to a
/// `SimulatedDisk` whose fsyncs take simulated time, and every crash is a power loss: the
/// node loses what it had not fsynced, or keeps a torn part of it. After the schedule every fault is healed and the
/// cluster runs until it converges. The invariants are checked at every step and at the
/// end; a violation names the seed, which replays the run exactly.
final class Simulation: Sendable {
    static let secondaries = ["s1", "s2"]
    static let clusterSize = 3
    static let length: Duration = .seconds(20)
    static let heartbeatInterval: Duration = .milliseconds(200)
    static let thresholds = PeerHealth.Thresholds(suspectAfterMisses: 2, unhealthyAfterMisses: 3)

    enum Event: Sendable, CustomStringConvertible {
        case append(message: String, w: Int?, timeout: Duration?, id: String?)
        case crash(String)
        case restart(String, durable: Bool)
        case partition(String, Bool)
        case crashMaster
        case restartMaster

        var description: String {
            switch self {
            case .append(let message, let w, let timeout, let id):
                "append \(message) w=\(w.map(String.init) ?? "all") timeout=\(timeout.map { "\($0)" } ?? "none") id=\(id ?? "none")"
            case .crash(let peer): "crash \(peer)"
            case .restart(let peer, let durable): "restart \(peer) \(durable ? "from disk" : "empty")"
            case .partition(let peer, let on): "partition \(peer) \(on ? "on" : "off")"
            case .crashMaster: "crash master"
            case .restartMaster: "restart master"
            }
        }
    }

    enum Outcome: Sendable {
        case ok(seq: Int)
        case rejected(String)
        case readOnly(unhealthy: [String])
        case timedOut
        case unavailable
    }

    struct Record: Sendable {
        let message: String
        let w: Int?
        let at: Duration
        var outcome: Outcome?
    }

    let seed: UInt64
    let random: SimulationRandom
    let clock = ManualClock()
    let executor = SimulationExecutor()
    let transport: FaultyTransport
    let masterDisk = SimulatedDisk()
    let logID = "sim-log"
    let events: [(at: Duration, event: Event)]
    let faults: FaultyTransport.Faults
    let errorRate: Double
    let linger: Duration
    let fsyncLatency: ClosedRange<Duration>
    let trace: Bool

    private struct State {
        var master: Master?
        var masterTask: Task<Void, Never>?
        var replicas: [String: Node] = [:]
        var disks: [String: SimulatedDisk] = [:]
        var down: Set<String> = []
        var partitioned: Set<String> = []
        /// When each secondary was last down or cut off (now, while it still is).
        var lastFaulty: [String: Duration] = [:]
        var records: [Record] = []
        /// The nodes that have held each message at its seq at some point (checked at every step).
        var heldBy: [String: Set<String>] = [:]
        /// How much of each secondary's log (of which incarnation) and of the master's is checked.
        var checked: [String: (replica: ObjectIdentifier, count: Int)] = [:]
        var masterChecked = 0
        var violations: [String] = []
        var traceLines: [String] = []
    }

    private let state = Mutex(State())

    /// How many unsynced entries a power loss leaves on disk: usually none, sometimes a few.
    private func tornTail() -> Int { random.chance(0.6) ? 0 : random.int(1...3) }

    /// fsyncs take simulated time (0.1–3 ms on a fast disk, 1–40 ms on a slow one), so that
    /// appends, replication and power losses meet entries that are written but not yet
    /// durable (`BlockingIO.simulated`).
    private var fsyncIO: BlockingIO {
        .simulated(clock: clock, random: random, latency: fsyncLatency, executor: executor)
    }

    init(seed: UInt64, trace: Bool = false) {
        self.seed = seed
        self.trace = trace
        random = SimulationRandom(seed: seed)
        transport = FaultyTransport(clock: clock, random: random)
        faults = FaultyTransport.Faults(
            maxDelay: random.duration(.milliseconds(1)...(.milliseconds(120))),
            lossRate: random.chance(0.5) ? random.unit() * 0.3 : 0,
            answerLossRate: random.chance(0.5) ? random.unit() * 0.3 : 0,
            duplicateRate: random.chance(0.5) ? random.unit() * 0.3 : 0)
        errorRate = random.chance(0.4) ? random.unit() * 0.4 : 0
        linger = random.chance(0.5) ? random.duration(.microseconds(100)...(.milliseconds(20))) : .zero
        fsyncLatency = random.chance(0.5) ? .microseconds(100)...(.milliseconds(3)) : .milliseconds(1)...(.milliseconds(40))
        events = Self.schedule(random)
    }

    /// Draws the schedule's events from the generator.
    private static func schedule(_ random: SimulationRandom) -> [(at: Duration, event: Event)] {
        var events: [(at: Duration, event: Event)] = []
        let window: ClosedRange<Duration> = .zero...(length * 0.9)
        // Appends come alone or in bursts (a few milliseconds apart), so that some find
        // the ones before them still waiting for their fsync.
        var appendTimes: [Duration] = []
        for _ in 0..<random.int(10...40) {
            let previous = appendTimes.last
            appendTimes.append(previous != nil && random.chance(0.3) ? previous! + random.duration(.zero...(.milliseconds(10))) : random.duration(window))
        }
        if random.chance(0.4) {
            // Half of the master's crashes strike just after an append: mid-fsync.
            let crash =
                random.chance(0.5)
                ? appendTimes[random.int(0...(appendTimes.count - 1))] + random.duration(.zero...(.milliseconds(20)))
                : random.duration(window)
            let back = crash + random.duration(.milliseconds(10)...(.seconds(2)))
            events += [(crash, .crashMaster), (back, .restartMaster)]
        }
        for peer in secondaries {
            if random.chance(0.6) {
                let crash = random.duration(window)
                events += [(crash, .crash(peer)), (crash + random.duration(.milliseconds(10)...(.seconds(4))), .restart(peer, durable: random.chance(0.5)))]
            }
            if random.chance(0.4) {
                let cut = random.duration(window)
                events += [(cut, .partition(peer, true)), (cut + random.duration(.milliseconds(10)...(.seconds(3))), .partition(peer, false))]
            }
        }
        var ids: [(id: String, message: String, at: Duration)] = []
        for (index, at) in appendTimes.enumerated() {
            let w = [1, 2, 3, nil][random.int(0...3)]
            let timeout = random.chance(0.5) ? random.duration(.milliseconds(20)...(.seconds(3))) : nil
            // Retries reuse an earlier id (and its message), also across a master restart: the
            // master keeps its keys on disk with their entries.
            let earlier = ids.filter { $0.at < at }
            if random.chance(0.2), let original = earlier.isEmpty ? nil : earlier[random.int(0...(earlier.count - 1))] {
                events.append((at, .append(message: original.message, w: w, timeout: timeout, id: original.id)))
            } else {
                let message = "m\(index)"
                let id = random.chance(0.5) ? "id-\(index)" : nil
                if let id { ids.append((id, message, at)) }
                events.append((at, .append(message: message, w: w, timeout: timeout, id: id)))
            }
        }
        return events.sorted { $0.at < $1.at }
    }

    // MARK: Running

    /// Runs the schedule, heals, lets the cluster converge, and returns the violations.
    func run() -> [String] {
        executor.claimThread()
        transport.setFaults(faults)
        for peer in Self.secondaries { startSecondary(peer, durable: false) }
        startMaster()
        var pending = events[...]
        let settleLimit = Self.length + .seconds(60)
        var healed = false
        while clock.now < settleLimit {
            executor.runUntilIdle()
            checkEveryStep()
            while let next = pending.first, next.at <= clock.now {
                pending.removeFirst()
                apply(next.event)
                executor.runUntilIdle()
            }
            if !healed, clock.now >= Self.length {
                heal()
                healed = true
                executor.runUntilIdle()
            }
            if healed, converged() { break }
            let target = [clock.nextDeadline, pending.first?.at, healed ? nil : Self.length].compactMap { $0 }.min()
            guard let target else { break }
            clock.advance(by: max(target - clock.now, .zero))
        }
        checkAtTheEnd(converged: converged())
        stopEverything()
        if let leak = executor.leak { violation(leak) }
        return state.withLock { $0.violations }
    }

    var traceText: String { state.withLock { $0.traceLines.joined(separator: "\n") } }

    private func log(_ line: @autoclosure () -> String) {
        guard trace else { return }
        let line = "[\(clock.now)] \(line())"
        state.withLock { $0.traceLines.append(line) }
    }

    private func violation(_ text: String) {
        log("VIOLATION " + text)
        state.withLock { $0.violations.append("seed \(seed) at \(clock.now): \(text)") }
    }

    private func startSecondary(_ peer: String, durable: Bool) {
        let disk = state.withLock { state -> SimulatedDisk in
            if durable, let disk = state.disks[peer] { return disk }
            let disk = SimulatedDisk()
            state.disks[peer] = disk
            return disk
        }
        // A secondary as `replog secondary` runs it: a node that serves whichever master delivers.
        let store = disk.open()
        let quiet = Logger(label: "sim", factory: { _ in SwiftLogNoOpLogHandler() })
        let node = try! Node(  // no data dir: nothing to fail
            settings: Node.Settings(
                me: nil, members: [], master: MasterSettings(secondaries: []), secondary: SecondarySettings(errorRate: errorRate),
                canVote: false, bootstrap: false),
            store: store,
            commit: GroupCommit(store: store, policy: .always, io: fsyncIO, clock: clock, logger: quiet, metricsFactory: NOOPMetricsHandler.instance),
            directory: nil, transport: transport, clock: clock, logger: quiet, metricsFactory: NOOPMetricsHandler.instance, seed: 0,
            taskExecutor: executor, logID: durable ? logID : nil,
            incarnations: { [clock, random] in "\(peer)-\(clock.now)-\(random.next())" }, random: { [random] in random.unit() })
        guard case .secondary = node.current else { preconditionFailure("a secondary without failover is never elected") }
        state.withLock {
            $0.replicas[peer] = node
            $0.down.remove(peer)
        }
        transport.connect(node, as: peer)
    }

    private func startMaster() {
        // The master as `replog master` runs it: a node that is the master from its start.
        let store = masterDisk.open()
        let quiet = Logger(label: "sim", factory: { _ in SwiftLogNoOpLogHandler() })
        let node = try! Node(  // no data dir: nothing to fail
            settings: .withoutFailover(
                master: MasterSettings(
                    secondaries: Self.secondaries, heartbeatInterval: Self.heartbeatInterval, healthThresholds: Self.thresholds,
                    replicationTimeout: .seconds(1), maxBatchSize: 5, maxInFlight: 3, replicationLinger: linger,
                    retryPolicy: RetryPolicy(initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(500), maxBackoffWhenUnhealthy: .seconds(1)))),
            store: store,
            commit: GroupCommit(store: store, policy: .always, io: fsyncIO, clock: clock, logger: quiet, metricsFactory: NOOPMetricsHandler.instance),
            directory: nil, transport: transport, clock: clock, logger: quiet, metricsFactory: NOOPMetricsHandler.instance, seed: 0,
            taskExecutor: executor, logID: logID, random: { [random] in random.unit() })
        guard let master = node.currentMaster else { preconditionFailure("a master without failover never steps down") }
        let task = Task(executorPreference: executor) {
            async let heartbeats: Void = master.monitorHeartbeats()
            await master.runReplicationStreams()
            await heartbeats
        }
        state.withLock {
            $0.master = master
            $0.masterTask = task
        }
    }

    private func apply(_ event: Event) {
        log(event.description)
        switch event {
        case .append(let message, let w, let timeout, let id):
            append(message: message, w: w, timeout: timeout, id: id)
        case .crash(let peer):
            transport.connect(nil, as: peer)
            state.withLock { $0.disks[peer] }?.powerLoss(keptUnsynced: tornTail())
            state.withLock {
                $0.replicas[peer] = nil  // its disk is closed: nothing to list until it restarts
                $0.down.insert(peer)
                $0.lastFaulty[peer] = clock.now
            }
        case .restart(let peer, let durable):
            startSecondary(peer, durable: durable)
            state.withLock { $0.lastFaulty[peer] = clock.now }
        case .partition(let peer, let on):
            transport.setPartitioned(on, peer)
            state.withLock {
                if on { $0.partitioned.insert(peer) } else { $0.partitioned.remove(peer) }
                $0.lastFaulty[peer] = clock.now
            }
        case .crashMaster:
            let (master, task) = state.withLock { state in
                defer { (state.master, state.masterTask) = (nil, nil) }
                return (state.master, state.masterTask)
            }
            task?.cancel()
            master?.shutDown()  // its waiting clients lose their connection
            let unsynced = masterDisk.unsyncedCount
            masterDisk.powerLoss(keptUnsynced: tornTail())
            if unsynced > 0 { log("the master's power loss takes back up to \(unsynced) unsynced entries") }
            // What the checker saw of the master's log may be gone: look at it again.
            state.withLock { $0.masterChecked = min($0.masterChecked, masterDisk.entries.count) }
        case .restartMaster:
            startMaster()
        }
    }

    private func append(message: String, w: Int?, timeout: Duration?, id: String?) {
        let index = state.withLock { state in
            state.records.append(Record(message: message, w: w, at: clock.now))
            return state.records.count - 1
        }
        guard let master = state.withLock({ $0.master }) else {
            record(index, .unavailable)
            return
        }
        Task(executorPreference: executor) {
            let outcome: Outcome
            do throws(Master.AppendError) {
                let result = try await master.append(AppendRequest(message: message, w: w, id: id, timeout: timeout))
                outcome = .ok(seq: result.seq)
            } catch .readOnly {
                outcome = .readOnly(unhealthy: master.health.secondaries.filter { $0.status == .unhealthy }.map(\.url))
            } catch .timedOut {
                outcome = .timedOut
            } catch .shuttingDown {
                outcome = .unavailable
            } catch .storeFailed {
                outcome = .unavailable  // like a 504: it may or may not be in the log
            } catch {
                outcome = .rejected("\(error)")
            }
            self.record(index, outcome)
        }
    }

    private func record(_ index: Int, _ outcome: Outcome) {
        log("answer to \(state.withLock { $0.records[index].message }): \(outcome)")
        state.withLock { $0.records[index].outcome = outcome }
        checkAnswer(state.withLock { $0.records[index] })
    }

    private func heal() {
        log("heal")
        transport.setFaults(FaultyTransport.Faults(maxDelay: faults.maxDelay))
        for peer in Self.secondaries {
            transport.setPartitioned(false, peer)
            if state.withLock({ $0.down.contains(peer) }) { startSecondary(peer, durable: random.chance(0.5)) }
        }
        state.withLock { $0.partitioned.removeAll() }
        if state.withLock({ $0.master == nil }) { startMaster() }
    }

    private func converged() -> Bool {
        let last = masterDisk.entries.count
        let (replicas, unanswered) = state.withLock { state in
            (Array(state.replicas.values), state.records.contains { $0.outcome == nil })
        }
        return !unanswered && replicas.allSatisfy { $0.replicaState.seq == last }
    }

    private func stopEverything() {
        let (task, master) = state.withLock { ($0.masterTask, $0.master) }
        task?.cancel()
        master?.shutDown()
        executor.runUntilIdle()
    }

    // MARK: Invariants

    /// Every secondary lists a gap-free prefix of the master's log, with the same message at
    /// every seq (total order, no hole, never n+1 before n). Logs only grow, so each step
    /// checks what is new since the last one (all of it again after a restart).
    private func checkEveryStep() {
        let master = masterDisk.entries
        let masterCount = master.count
        let replicas = state.withLock { $0.replicas }
        var held: [(message: String, node: String)] = []
        let masterChecked = state.withLock { $0.masterChecked }
        for entry in master.dropFirst(masterChecked) { held.append((entry.message, "master")) }
        for (peer, replica) in replicas.sorted(by: { $0.key < $1.key }) {
            let identity = ObjectIdentifier(replica)
            let checked = state.withLock { state in state.checked[peer].flatMap { $0.replica == identity ? $0.count : nil } ?? 0 }
            let fresh = try! replica.read(from: checked + 1, limit: .max)
            guard !fresh.isEmpty else { continue }
            if fresh.map(\.seq) != Array((checked + 1)..<(checked + 1 + fresh.count)) {
                violation("\(peer) lists a gap after seq \(checked): \(fresh.map(\.seq))")
            }
            let expected = Array(master.dropFirst(checked).prefix(fresh.count))
            if fresh.count > max(0, masterCount - checked) || fresh != expected {
                violation("\(peer) diverges from the master after seq \(checked): \(fresh) vs \(expected)")
            }
            for entry in fresh { held.append((entry.message, peer)) }
            state.withLock { $0.checked[peer] = (identity, checked + fresh.count) }
        }
        // The durable-prefix rule: nothing leaves the master before its fsync, so no
        // secondary ever has on disk (even unsynced) what a power loss could take from the master.
        let masterDurable = masterDisk.durableSeq
        for (peer, disk) in state.withLock({ $0.disks }).sorted(by: { $0.key < $1.key }) where disk.entries.count > masterDurable {
            violation("\(peer) wrote seq \(disk.entries.count), past the master's durable prefix (seq \(masterDurable))")
        }
        state.withLock { state in
            state.masterChecked = masterCount
            for (message, node) in held { state.heldBy[message, default: []].insert(node) }
        }
        // Every secondary holds a prefix of the master's log (checked above), so the master
        // must never take one for diverged: its hash comparison has no false alarms.
        if let master = state.withLock({ $0.master }) {
            for secondary in master.health.secondaries where secondary.problem?.isDivergence == true {
                violation("\(secondary.url) shown diverged although it holds the master's log: \(secondary.problem!)")
            }
        }
    }

    /// A 201 for `w = k` only after `k` distinct nodes held the message (each acknowledgement
    /// was true when given; an in-memory node may lose its copy later by restarting empty,
    /// before the master hears of it); a 503 only while quorum is really missing.
    private func checkAnswer(_ record: Record) {
        switch record.outcome {
        case .ok(let seq):
            checkEveryStep()  // record who holds it right now
            let w = record.w ?? Self.clusterSize
            let nodes = state.withLock { $0.heldBy[record.message] ?? [] }
            if nodes.count < w { violation("\(record.message) answered 201 for w=\(w) at seq \(seq), but only \(nodes.sorted()) ever held it") }
        case .readOnly(let unhealthy):
            let window = Self.heartbeatInterval * (Self.thresholds.unhealthyAfterMisses + 2) + faults.maxDelay * 2
            let (lastFaulty, faultyNow) = state.withLock { ($0.lastFaulty, $0.down.union($0.partitioned)) }
            for peer in unhealthy where !faultyNow.contains(peer) && (lastFaulty[peer].map { clock.now - $0 > window } ?? true) {
                violation("\(record.message) refused for no quorum, but \(peer) was reachable for the last \(window)")
            }
            if unhealthy.count < Self.clusterSize - (Self.clusterSize / 2 + 1) + 1 {
                violation("\(record.message) refused for no quorum with only \(unhealthy) unhealthy")
            }
        default:
            break
        }
    }

    /// Every acknowledged message is on every node exactly once at its seq, and every node
    /// holds the same sequence (the checker the chaos test uses too).
    private func checkAtTheEnd(converged: Bool) {
        let master = masterDisk.entries
        let (replicas, records) = state.withLock { ($0.replicas, $0.records) }
        if !converged { violation("did not converge: master at \(master.count), replicas at \(replicas.mapValues(\.replicaState.seq))") }
        let history = records.map { record -> HistoryChecker.Record in
            switch record.outcome {
            case .ok(let seq): HistoryChecker.Record(message: record.message, outcome: .ok(seq: seq))
            case .rejected, .readOnly: HistoryChecker.Record(message: record.message, outcome: .refused)
            case .timedOut, .unavailable, nil: HistoryChecker.Record(message: record.message, outcome: .unknown)
            }
        }
        // A refused retry of an id does not say anything about the original append.
        let retried = Set(records.filter { record in records.contains { $0.message == record.message && $0.at != record.at } }.map(\.message))
        let checked = history.filter { $0.outcome != .refused || !retried.contains($0.message) }
        let logs = [("master", master)] + replicas.sorted { $0.key < $1.key }.map { ($0.key, try! $0.value.read(from: 1, limit: .max)) }
        for problem in HistoryChecker.check(checked, logs: logs) { violation(problem) }
    }
}

import CoreMetrics
import Foundation
import Logging
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Synchronization
@testable import ReplogNode

/// One seeded schedule of failovers run against the real node code: 3 or 5 `Node`s,
/// each with its real `Master` or secondary role, `GroupCommit` and data folder (its
/// `election.json`), on a `SimulatedDisk` whose fsyncs take simulated time, talking over a
/// simulated network (`NodeNetwork`) that delays, reorders and loses requests and answers.
///
/// The schedule crashes nodes (every crash is a power loss: what was not fsynced is gone,
/// or a torn part of it stays) and restarts them with their command line, isolates them,
/// the master in 7 faults of 10, while clients append through any node with random `w`,
/// `timeout` and `id` (some retrying an earlier message) and follow one redirect, as
/// `curl -L` does. Then every fault is healed and the cluster runs until it converges.
///
/// Where `FailoverSimulation` models a node around the real election rules, this one runs
/// the node itself: the epoch stamps, the votes it persists, the master's fsync overlapping
/// its replication, the search for where logs part and the cut. Checked at every step and
/// at the end:
///
/// - at most one master per epoch;
/// - no reader is shown an entry that the cluster later replaces: every node's committed
///   reads agree with each other and with the final log, and no node's commit point goes
///   back (not across its restarts either);
/// - in half of the schedules, every linearizable read (through any node, following its
///   redirect) holds every message acknowledged with `w` of a majority before it began;
/// - a `201` for `w` only once `w` nodes held the message at its seq, fsynced;
/// - every `201` with `w` of a majority or more is in the log of every master of a later
///   epoch at its seq;
/// - after healing, one master, every log equal to its log (the same hash chain, so equal
///   where retention dropped entries too), and the history checker finds every
///   majority-acknowledged message once at its seq and nothing twice.
///
/// In half of the schedules every node runs retention (`--retain-messages` 2 to 8, segments
/// of 2 to 4 entries) every 100 ms: secondaries that fall behind the master's first seq,
/// members that part from a new master's log before its start, and crashes in between meet
/// logs started again at another node's start.
final class NodeElectionSimulation: Sendable {
    static let heartbeat: Duration = .milliseconds(50)
    static let electionTimeout: ClosedRange<Duration> = .milliseconds(150)...(.milliseconds(300))
    static let faultyFor: Duration = .seconds(6)
    static let settleLimit: Duration = .seconds(40)
    static let retentionEvery: Duration = .milliseconds(100)

    enum Target: Sendable { case master, anyNode }

    enum Event: Sendable, CustomStringConvertible {
        /// One message, or a batch (`messages.count > 1`) appended atomically.
        case append(messages: [String], w: Int, timeout: Duration, id: String?, via: Int)
        case crash(Target, downFor: Duration)
        case restart(String)
        case isolate(Target, lasts: Duration)
        case reconnect(String)
        /// Its disk stalls: every write and fsync that starts meanwhile waits until it ends
        /// (a disk that hangs for a while, as failing disks and overloaded volumes do).
        case stallDisk(Target, lasts: Duration)
        /// A linearizable read through node `via` (following its redirect to the master).
        case linearizableRead(via: Int)

        var description: String {
            switch self {
            case .append(let messages, let w, let timeout, let id, let via):
                "append \(messages.joined(separator: "+")) w=\(w) timeout=\(timeout) id=\(id ?? "none") via node \(via + 1)"
            case .crash(let target, let downFor): "crash \(target) for \(downFor)"
            case .restart(let name): "restart \(name)"
            case .isolate(let target, let lasts): "isolate \(target) for \(lasts)"
            case .reconnect(let name): "reconnect \(name)"
            case .stallDisk(let target, let lasts): "stall the disk of \(target) for \(lasts)"
            case .linearizableRead(let via): "linearizable read via node \(via + 1)"
            }
        }
    }

    enum Outcome: Sendable {
        case ok(seq: Int)
        case refused(String)
        case unknown(String)
    }

    struct Record: Sendable {
        let message: String
        let w: Int
        var outcome: Outcome?
    }

    let seed: UInt64
    let random: SimulationRandom
    let clock = ManualClock()
    let executor = SimulationExecutor()
    let network: NodeNetwork
    let names: [String]
    var majority: Int { names.count / 2 + 1 }
    let folder: URL
    let trace: Bool
    private let faults: NodeNetwork.Faults
    private let fsyncLatency: ClosedRange<Duration>
    private let disks: [String: SimulatedDisk]
    /// What every node keeps (`--retain-messages`), in the schedules that run retention.
    let retention: RetentionPolicy?
    /// The members that wait this long before they store each delivery (`--delay`).
    let delays: [String: Duration]

    private struct Running {
        let node: Node
        let task: Task<Void, Never>
        let run: Int
    }

    private struct State {
        var events: [(at: Duration, event: Event)] = []
        var running: [String: Running] = [:]
        var runs = 0
        var records: [Record] = []
        /// The nodes that held each message at each seq on disk, fsynced, at some point.
        var heldBy: [String: Set<String>] = [:]
        /// How far each disk was read for `heldBy`, as of which change of it.
        var checked: [String: (changes: Int, count: Int)] = [:]
        /// Acknowledged with `w` of a majority or more: seq → message and the epoch of the
        /// master that acknowledged it.
        var committed: [Int: (message: String, epoch: Int)] = [:]
        var masterOfEpoch: [Int: String] = [:]
        /// The masters (name and epoch) whose log was checked for the committed entries.
        var mastersChecked: Set<String> = []
        /// Logs a node started again at its master's start (retention), and where each
        /// node's known history starts.
        var restartedLogs = 0
        var knownFrom: [String: Int] = [:]
        /// Where the log of each master started, when it was elected with a log started again
        /// (retention): it knew no idempotency key before that seq.
        var restartedMasterStarts: [Int] = []
        var acknowledged = 0
        var linearizableReads = 0
        /// What readers were shown (a committed read of any node): seq → message.
        var shown: [Int: String] = [:]
        /// Per node: how far its committed reads were recorded, and the highest commit point
        /// it showed (across its restarts).
        var shownThrough: [String: Int] = [:]
        var commitShown: [String: Int] = [:]
        /// The batches appended (their messages, in order): each is in a log whole or not at all.
        var batches: [[String]] = []
        /// Each batch message's place in its batch: (index, count).
        var placeInBatch: [String: (index: Int, count: Int)] = [:]
        var violations: [String] = []
        var traceLines: [String] = []
        /// Until when each node's disk is stalled, and how many stalls the schedule ran.
        var stalledUntil: [String: Duration] = [:]
        var stalledDisks = 0
    }

    private let state = Mutex(State())

    /// - Parameters:
    ///   - stalls: whether the schedule may stall disks (the remembered seeds replay the
    ///     schedules that once found a bug, drawn before disks stalled).
    ///   - slowMembers: whether members may store deliveries late (`--delay`; the remembered
    ///     seeds, those of stalls too, replay as they were drawn before).
    init(seed: UInt64, trace: Bool = false, stalls: Bool = true, slowMembers: Bool = true) {
        self.seed = seed
        self.trace = trace
        random = SimulationRandom(seed: seed)
        network = NodeNetwork(clock: clock, random: random)
        names = (1...(random.chance(0.5) ? 3 : 5)).map { "n\($0)" }
        // Retention draws from a generator of its own, so that every other draw of a seed
        // stays as it was before retention came.
        let retentionDraws = SimulationRandom(seed: seed ^ 0x5E7E_4710_0000_0000)
        let segmentEntries = retentionDraws.int(2...4)
        let retention = retentionDraws.chance(0.5) ? RetentionPolicy(messages: retentionDraws.int(2...8)) : nil
        self.retention = retention
        disks = Dictionary(uniqueKeysWithValues: names.map { ($0, SimulatedDisk(segmentEntries: retention == nil ? 64 : segmentEntries)) })
        faults = NodeNetwork.Faults(
            maxDelay: random.duration(.milliseconds(1)...(.milliseconds(30))), lossRate: random.chance(0.5) ? random.unit() * 0.2 : 0)
        fsyncLatency = random.chance(0.5) ? .microseconds(100)...(.milliseconds(3)) : .milliseconds(1)...(.milliseconds(40))
        // tmpfs where there is one: the election record is fsynced at every vote.
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
        folder = base.appendingPathComponent("replog-node-sim-\(ProcessInfo.processInfo.processIdentifier)-\(seed)")
        let batchSizes = SimulationRandom(seed: seed ^ 0xBA7C_4E5_0000_0000)
        var events = Self.schedule(random, batchSizes: batchSizes, nodes: names.count, majority: names.count / 2 + 1)
        // Reads draw from a generator of their own too, and only half of the schedules have
        // them: their rounds draw network delays, so the other half (and most remembered
        // seeds) replay as they did before reads came.
        let readDraws = SimulationRandom(seed: seed ^ 0x4EAD_0000_0000_0000)
        for _ in 0..<(readDraws.chance(0.5) ? readDraws.int(5...20) : 0) {
            events.append((readDraws.duration(.zero...Self.faultyFor), .linearizableRead(via: readDraws.int(0...(names.count - 1)))))
        }
        // Disk stalls draw from a generator of their own, in half of the schedules.
        let stallDraws = SimulationRandom(seed: seed ^ 0xD15C_57A1_0000_0000)
        for _ in 0..<(stalls && stallDraws.chance(0.5) ? stallDraws.int(1...3) : 0) {
            let target = stallDraws.chance(0.3) ? Target.master : .anyNode
            let at = stallDraws.duration(.zero...Self.faultyFor)
            events.append((at, .stallDisk(target, lasts: stallDraws.duration(.milliseconds(100)...(.milliseconds(1_500))))))
        }
        // Slow members draw from a generator of their own, in a third of the schedules: a
        // delivery that waits meets votes, elections and cuts while it waits.
        let slowDraws = SimulationRandom(seed: seed ^ 0x5105_DE1A_0000_0000)
        var delays: [String: Duration] = [:]
        if slowMembers, slowDraws.chance(0.33) {
            for _ in 1...slowDraws.int(1...2) {
                delays[names[slowDraws.int(0...(names.count - 1))]] = slowDraws.duration(.milliseconds(20)...(.milliseconds(400)))
            }
        }
        self.delays = delays
        events.sort { $0.at < $1.at }
        state.withLock { $0.events = events }
    }

    /// Draws the schedule's appends and faults from the generator.
    /// - Parameter batchSizes: a generator of its own, so that adding batches left every
    ///   other draw of a seed as it was.
    private static func schedule(
        _ random: SimulationRandom, batchSizes: SimulationRandom, nodes: Int, majority: Int
    ) -> [(at: Duration, event: Event)] {
        var events: [(at: Duration, event: Event)] = []
        var ids: [(id: String, messages: [String])] = []
        for index in 0..<random.int(20...60) {
            let at = random.duration(.zero...faultyFor)
            let w = [1, majority, nodes, majority][random.int(0...3)]
            let timeout = random.duration(.milliseconds(50)...(.seconds(1)))
            let via = random.int(0...(nodes - 1))
            if random.chance(0.2), let earlier = ids.isEmpty ? nil : ids[random.int(0...(ids.count - 1))] {
                events.append((at, .append(messages: earlier.messages, w: w, timeout: timeout, id: earlier.id, via: via)))
            } else {
                let id = random.chance(0.6) ? "id-\(index)" : nil
                let size = batchSizes.chance(0.3) ? batchSizes.int(2...5) : 1
                let messages = size == 1 ? ["m\(index)"] : (1...size).map { "m\(index).\($0)" }
                if let id { ids.append((id, messages)) }
                events.append((at, .append(messages: messages, w: w, timeout: timeout, id: id, via: via)))
            }
        }
        for _ in 0..<random.int(1...5) {
            let at = random.duration(.milliseconds(500)...faultyFor)
            let target = random.chance(0.7) ? Target.master : .anyNode
            let lasts = random.duration(.milliseconds(50)...(.seconds(2)))
            events.append((at, random.chance(0.6) ? .crash(target, downFor: lasts) : .isolate(target, lasts: lasts)))
        }
        return events.sorted { $0.at < $1.at }
    }

    /// fsyncs take simulated time, so that replication, answers and power losses meet entries
    /// that are written but not yet durable (`BlockingIO.simulated`).
    /// The blocking I/O of one run of a node (fsyncs, its data dir's files), after a disk's
    /// latency. A run that stopped does none any more: a crashed process writes nothing, and
    /// a save it started must not land over what the node's next run saved.
    private func fsyncIO(of name: String, run: Int) -> BlockingIO {
        let disk = BlockingIO.simulated(clock: clock, random: random, latency: fsyncLatency, executor: executor) { [self] in
            let until = state.withLock { $0.stalledUntil[name] } ?? .zero
            return max(until - clock.now, .zero)
        }
        return BlockingIO { [self] work in
            try await disk.run {
                guard self.state.withLock({ $0.running[name]?.run == run }) else { throw CancellationError() }
                try work()
            }
        }
    }

    /// How many unsynced entries a power loss leaves on disk: usually none, sometimes a few.
    private func tornTail() -> Int { random.chance(0.6) ? 0 : random.int(1...3) }

    // MARK: Running

    /// Runs the schedule, heals, lets the cluster converge, and returns the violations.
    func run() -> [String] {
        defer { try? FileManager.default.removeItem(at: folder) }
        executor.claimThread()
        network.setFaults(faults)
        // The secondaries first, then the node started as master, as `replog cluster` does.
        for name in names.dropFirst() + [names[0]] { start(name) }
        var healed = false
        var nextRetention = Self.retentionEvery
        while clock.now < Self.settleLimit {
            executor.runUntilIdle()
            checkEveryStep()
            if let retention, clock.now >= nextRetention {
                applyRetention(retention)
                nextRetention = clock.now + Self.retentionEvery
                executor.runUntilIdle()
                checkEveryStep()
            }
            while let next = state.withLock({ $0.events.first }), next.at <= clock.now {
                _ = state.withLock { $0.events.removeFirst() }
                apply(next.event)
                executor.runUntilIdle()
                checkEveryStep()
            }
            if !healed, clock.now >= Self.faultyFor {
                heal()
                healed = true
                executor.runUntilIdle()
            }
            if healed, converged() { break }
            let pending = state.withLock { $0.events.first?.at }
            let target = [clock.nextDeadline, pending, healed ? nil : Self.faultyFor, retention == nil ? nil : nextRetention].compactMap { $0 }.min()
            guard let target else { break }
            clock.advance(by: max(target - clock.now, .zero))
        }
        checkAtTheEnd(converged: converged())
        for name in names { stop(name) }
        executor.runUntilIdle()
        if let leak = executor.leak { violation(leak) }
        return state.withLock { $0.violations }
    }

    var traceText: String { state.withLock { $0.traceLines.joined(separator: "\n") } }
    var acknowledged: Int { state.withLock { $0.acknowledged } }
    var linearizableReads: Int { state.withLock { $0.linearizableReads } }
    var elections: Int { state.withLock { $0.masterOfEpoch.count } }
    var restartedLogs: Int { state.withLock { $0.restartedLogs } }
    var stalledDisks: Int { state.withLock { $0.stalledDisks } }

    private func log(_ line: @autoclosure () -> String) {
        guard trace else { return }
        let line = "[\(clock.now)] \(line())"
        state.withLock { $0.traceLines.append(line) }
    }

    private func violation(_ text: String) {
        log("VIOLATION " + text)
        state.withLock { $0.violations.append("seed \(seed) at \(clock.now): \(text)") }
    }

    private func at(_ time: Duration, _ event: Event) {
        state.withLock { state in
            let index = state.events.lastIndex { $0.at <= time }.map { $0 + 1 } ?? 0
            state.events.insert((time, event), at: index)
        }
    }

    // MARK: Nodes

    /// Starts `name` on its disk and data folder with its command line: the first node as
    /// `replog master --failover`, the others as `replog secondary` (they learn the cluster
    /// from the master's stamp).
    private func start(_ name: String) {
        guard state.withLock({ $0.running[name] }) == nil else { return }
        let run = state.withLock { state in
            state.runs += 1
            return state.runs
        }
        // A replay (`trace`) shows what each node logs, in the trace.
        let quiet = trace
            ? Logger(label: name, factory: { [self] label in TraceLogHandler(label: label) { self.log($0) } })
            : Logger(label: "sim", factory: { _ in SwiftLogNoOpLogHandler() })
        let isFirst = name == names[0]
        let store = disks[name]!.open()
        let directory = try! DataDirectory(path: folder.appendingPathComponent(name).path, role: isFirst ? "master" : "secondary")
        let commit = GroupCommit(store: store, policy: .always, io: fsyncIO(of: name, run: run), clock: clock, logger: quiet, metricsFactory: NOOPMetricsHandler.instance)
        let master = MasterSettings(
            secondaries: isFirst ? Array(names.dropFirst()) : [], heartbeatInterval: Self.heartbeat,
            healthThresholds: PeerHealth.Thresholds(suspectAfterMisses: 2, unhealthyAfterMisses: 3), replicationTimeout: .milliseconds(500),
            maxBatchSize: 5, maxInFlight: 3,
            retryPolicy: RetryPolicy(initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(300), maxBackoffWhenUnhealthy: .milliseconds(500)))
        var settings = Node.Settings(
            me: isFirst ? name : nil, members: isFirst ? names : [], electionTimeout: Self.electionTimeout, master: master,
            canVote: true, bootstrap: isFirst)
        settings.secondary.delay = delays[name] ?? .zero
        let endpoint = network.endpoint(for: name, run: run)
        let node = try! Node(
            settings: settings, store: store, commit: commit, directory: directory, transport: endpoint, stamps: endpoint.stamps,
            clock: clock, logger: quiet, metricsFactory: NOOPMetricsHandler.instance, seed: random.next(), taskExecutor: executor)
        network.attach(node, as: name, run: run)
        let task = Task(executorPreference: executor) { _ = try? await node.run() }
        state.withLock { $0.running[name] = Running(node: node, task: task, run: run) }
        log("start \(name) (run \(run))" + (delays[name].map { ", storing each delivery \($0) late" } ?? ""))
    }

    /// The node stops as its process would: its master (if any) answers waiting appends
    /// "shutting down", and nothing of it is reachable any more.
    private func stop(_ name: String) {
        guard let running = state.withLock({ $0.running.removeValue(forKey: name) }) else { return }
        network.detach(name)
        running.task.cancel()
    }

    /// A retention pass on every running node, as `RetentionService` runs one every second.
    private func applyRetention(_ policy: RetentionPolicy) {
        let running = state.withLock { $0.running }
        for name in names {
            guard let node = running[name]?.node, let dropped = try? node.store.applyRetention(policy, now: clock.date), dropped > 0 else { continue }
            log("\(name)'s retention drops \(dropped) entries: its log starts at seq \(disks[name]!.firstSeq)")
        }
    }

    private func crash(_ name: String) {
        stop(name)
        let unsynced = disks[name]!.unsyncedCount
        disks[name]!.powerLoss(keptUnsynced: tornTail())
        if unsynced > 0 { log("\(name)'s power loss takes back up to \(unsynced) unsynced entries") }
    }

    /// The node that is master now, if one is (the first found; the checks look at all).
    private var currentMaster: String? {
        let running = state.withLock { $0.running }
        return names.first { name in
            guard let node = running[name]?.node, case .master = node.current else { return false }
            return true
        }
    }

    private func resolve(_ target: Target) -> String {
        if target == .master, let master = currentMaster { return master }
        return names[random.int(0...(names.count - 1))]
    }

    private func apply(_ event: Event) {
        log(event.description)
        switch event {
        case .append(let messages, let w, let timeout, let id, let via):
            append(messages: messages, w: w, timeout: timeout, id: id, via: names[via])
        case .crash(let target, let downFor):
            let name = resolve(target)
            log("crash \(name)")
            crash(name)
            at(clock.now + downFor, .restart(name))
        case .restart(let name):
            start(name)
        case .isolate(let target, let lasts):
            let name = resolve(target)
            log("isolate \(name)")
            network.setIsolated(true, name)
            at(clock.now + lasts, .reconnect(name))
        case .reconnect(let name):
            network.setIsolated(false, name)
        case .stallDisk(let target, let lasts):
            let name = resolve(target)
            log("stall the disk of \(name)")
            state.withLock {
                $0.stalledUntil[name] = clock.now + lasts
                $0.stalledDisks += 1
            }
        case .linearizableRead(let via):
            linearizableRead(via: names[via])
        }
    }

    private func heal() {
        log("heal")
        network.setFaults(NodeNetwork.Faults(maxDelay: faults.maxDelay))
        state.withLock {
            $0.events.removeAll()
            $0.stalledUntil = [:]
        }
        for name in names {
            network.setIsolated(false, name)
            start(name)
        }
    }

    /// One master that a majority holds, every node following it with the same log on
    /// disk, and every client answered.
    private func converged() -> Bool {
        guard let master = currentMaster else { return false }
        let (running, unanswered) = state.withLock { state in (state.running, state.records.contains { $0.outcome == nil }) }
        guard !unanswered, running.count == names.count else { return false }
        let (lastSeq, hash) = (disks[master]!.lastSeq, disks[master]!.lastHash)
        return names.allSatisfy { name in
            disks[name]!.lastSeq == lastSeq && disks[name]!.lastHash == hash && disks[name]!.durableSeq == lastSeq
                && (name == master || running[name]!.node.status.master == master)
        }
    }

    // MARK: Clients

    /// A client appends through node `via` and follows one redirect to the master it names,
    /// as `curl -L` does.
    private func append(messages: [String], w: Int, timeout: Duration, id: String?, via: String) {
        // One record per message: a batch's messages are checked like single ones, and
        // together (`checkBatches`).
        let indices = state.withLock { state in
            if messages.count > 1, state.placeInBatch[messages[0]] == nil {
                state.batches.append(messages)
                for (index, message) in messages.enumerated() { state.placeInBatch[message] = (index, messages.count) }
            }
            state.records.append(contentsOf: messages.map { Record(message: $0, w: w) })
            return (state.records.count - messages.count)..<state.records.count
        }
        Task(executorPreference: executor) {
            var node = self.state.withLock { $0.running[via]?.node }
            if let current = node, case .secondary = current.current, case .some(let master?) = current.masterForClients {
                node = self.state.withLock { $0.running[master]?.node }
            }
            guard let node, case .master(let master) = node.current else {
                for index in indices { self.record(index, .refused("no master reached through \(via)")) }
                return
            }
            let outcome: Outcome
            do throws(Master.AppendError) {
                if messages.count > 1 {
                    let result = try await master.appendBatch(AppendRequest(batch: messages, w: w, id: id, timeout: timeout))
                    outcome = .ok(seq: result.firstSeq)
                } else {
                    let result = try await master.append(AppendRequest(message: messages[0], w: w, id: id, timeout: timeout))
                    outcome = .ok(seq: result.seq)
                }
            } catch .timedOut {
                outcome = .unknown("timed out")
            } catch .shuttingDown {
                outcome = .unknown("shutting down")
            } catch .storeFailed(let reason) {
                outcome = .unknown(reason)
            } catch {
                outcome = .refused("\(error)")
            }
            for (offset, index) in indices.enumerated() {
                let each = if case .ok(let first) = outcome { Outcome.ok(seq: first + offset) } else { outcome }
                self.record(index, each, epoch: node.status.epoch ?? 0)
            }
        }
    }

    /// A client reads through node `via` at the linearizable level, following one redirect
    /// to the master it names. What it is shown must hold every message acknowledged with
    /// `w` of a majority before the read began, at its seq.
    private func linearizableRead(via: String) {
        let before = state.withLock { $0.committed }
        Task(executorPreference: executor) {
            var name = via
            if let current = self.state.withLock({ $0.running[via]?.node }), case .secondary = current.current,
               case .some(let master?) = current.masterForClients
            {
                name = master
            }
            guard let node = self.state.withLock({ $0.running[name]?.node }), case .master(let master) = node.current else { return }
            do throws(Master.AppendError) {
                try await master.confirmForRead()
            } catch {
                self.log("linearizable read via \(via): refused (\(error))")
                return
            }
            // A node that crashed during the round answers nothing: its client's connection is gone.
            guard self.state.withLock({ $0.running[name]?.node }) === node else {
                self.log("linearizable read via \(via): \(name) crashed before it answered")
                return
            }
            let first = node.store.firstSeq
            guard let entries = try? master.read(from: first, limit: 100_000, level: .committed) else { return }
            self.state.withLock { $0.linearizableReads += 1 }
            self.log("linearizable read via \(via): \(entries.count) entries from seq \(first)")
            let shown = Dictionary(uniqueKeysWithValues: entries.map { ($0.seq, $0.message) })
            for (seq, acknowledged) in before.sorted(by: { $0.key < $1.key }) where seq >= first && shown[seq] != acknowledged.message {
                self.violation(
                    "a linearizable read via \(via) lacks \(acknowledged.message) at seq \(seq) (shows \(shown[seq] ?? "nothing")), acknowledged "
                        + "with a majority before the read began")
            }
        }
    }

    private func record(_ index: Int, _ outcome: Outcome, epoch: Int = 0) {
        let record = state.withLock { state in
            state.records[index].outcome = outcome
            return state.records[index]
        }
        log("answer to \(record.message) w=\(record.w): \(outcome)")
        guard case .ok(let seq) = outcome else { return }
        checkEveryStep()  // who holds it right now
        // A node whose log was started again past `seq` (at its master's start, retention)
        // holds it through the chain's link, durably, though not the entry itself.
        let restartedPast = Set(names.filter { disks[$0]!.knownFrom > seq })
        let holders = state.withLock { $0.heldBy["\(seq) \(record.message)"] ?? [] }.union(restartedPast)
        if holders.count < record.w {
            violation("201 for \(record.message) w=\(record.w) at seq \(seq), but only \(holders.sorted()) held it there, fsynced")
        }
        state.withLock { $0.acknowledged += 1 }
        guard record.w >= majority else { return }
        let earlier = state.withLock { state in
            defer { state.committed[seq] = state.committed[seq] ?? (record.message, epoch) }
            return state.committed[seq]
        }
        if let earlier, earlier.message != record.message {
            violation("seq \(seq) acknowledged as \(earlier.message) and as \(record.message)")
        }
    }

    // MARK: Invariants

    private func checkEveryStep() {
        let running = state.withLock { $0.running }
        for name in names {
            if let node = running[name]?.node { checkReads(of: node, name) }
            // What each node lists ends with a batch's last message, never inside a batch
            // (checked at the end of the list only: a list only ever grows there).
            if let node = running[name]?.node, case let end = node.commit.durableSeq, end > 0,
               let last = (try? node.store.read(from: end, limit: 1))?.first,
               let place = state.withLock({ $0.placeInBatch[last.message] }), place.index < place.count - 1 {
                violation("\(name) lists part of a batch: up to \(last.message) at seq \(end), message \(place.index + 1) of \(place.count)")
            }
            // What each disk holds fsynced, at which seq (read again after a cut or power loss).
            let disk = disks[name]!
            let (changes, durable, knownFrom) = (disk.changes, disk.durableSeq, disk.knownFrom)
            let checked = state.withLock { $0.checked[name] }
            let from = checked?.changes == changes ? checked!.count : knownFrom - 1
            state.withLock { state in
                if knownFrom > state.knownFrom[name] ?? 1 { state.restartedLogs += 1 }
                state.knownFrom[name] = knownFrom
            }
            if durable > from {
                let entries = disk.entries
                state.withLock { state in
                    for entry in entries[(from - knownFrom + 1)..<(durable - knownFrom + 1)] {
                        state.heldBy["\(entry.seq) \(entry.message)", default: []].insert(name)
                    }
                    state.checked[name] = (changes, durable)
                }
            } else if checked?.changes != changes {
                state.withLock { $0.checked[name] = (changes, durable) }
            }
            // One master per epoch; each master holds what earlier epochs' masters committed.
            guard let node = running[name]?.node, case .master = node.current, let epoch = node.status.epoch else { continue }
            let (other, isNew) = state.withLock { state in
                let other = state.masterOfEpoch[epoch]
                if other == nil { state.masterOfEpoch[epoch] = name }
                return (other, state.mastersChecked.insert("\(name) \(epoch)").inserted)
            }
            if let other, other != name { violation("two masters in epoch \(epoch): \(other) and \(name)") }
            guard isNew else { continue }
            log("\(name) is master of epoch \(epoch)")
            if disk.knownFrom > 1 { state.withLock { $0.restartedMasterStarts.append(disk.knownFrom) } }
            let log = disk.entries
            // Before a log started again the node never held anything: the end's chain check covers it.
            for (seq, committed) in state.withLock({ $0.committed }).sorted(by: { $0.key < $1.key })
            where committed.epoch < epoch && seq >= knownFrom {
                if seq - knownFrom >= log.count || log[seq - knownFrom].message != committed.message {
                    violation("\(name), master of epoch \(epoch), lacks \(committed.message) at seq \(seq), acknowledged in epoch \(committed.epoch)")
                }
            }
        }
    }

    /// Records what a committed read of `node` shows now that it did not show before, and
    /// checks it against what readers were shown elsewhere; its commit point never goes back.
    private func checkReads(of node: Node, _ name: String) {
        let commit = node.commitSeq
        let (before, from) = state.withLock { state in
            (state.commitShown[name] ?? 0, max(state.shownThrough[name] ?? 0, node.store.firstSeq - 1) + 1)
        }
        if commit < before { violation("\(name)'s commit point went back from \(before) to \(commit)") }
        state.withLock { $0.commitShown[name] = max(before, commit) }
        // The node's read level decides how far the read goes, not this checker.
        guard let entries = try? node.read(from: from, limit: 100_000, level: .committed) else { return }
        for entry in entries {
            let earlier = state.withLock { state in
                defer { state.shown[entry.seq] = state.shown[entry.seq] ?? entry.message }
                return state.shown[entry.seq]
            }
            if let earlier, earlier != entry.message {
                violation("readers were shown \(earlier) and \(name) shows \(entry.message) at seq \(entry.seq) (committed)")
            }
        }
        if let last = entries.last { state.withLock { $0.shownThrough[name] = last.seq } }
    }

    /// Every majority-acknowledged message is on every node once at its seq, nothing is
    /// twice, and every node holds the same sequence (the chaos test's checker).
    private func checkAtTheEnd(converged: Bool) {
        // What readers were shown is in the final log, at the same seq.
        if converged, let master = currentMaster {
            let log = disks[master]!.entries
            let knownFrom = disks[master]!.knownFrom
            for (seq, message) in state.withLock({ $0.shown }).sorted(by: { $0.key < $1.key }) where seq >= knownFrom {
                let held = seq - knownFrom < log.count ? log[seq - knownFrom].message : nil
                if held != message { violation("readers were shown \(message) at seq \(seq), but the final log holds \(held ?? "nothing") there") }
            }
        }
        if !converged {
            let running = state.withLock { $0.running }
            let nodes = names.map { name in
                let status = running[name]?.node.status
                return "\(name) \(status?.role ?? "down") epoch \(status?.epoch ?? 0) following \(status?.master ?? "none") log "
                    + "\(disks[name]!.firstSeq)...\(disks[name]!.lastSeq) (\(disks[name]!.durableSeq) fsynced)"
            }
            let unanswered = state.withLock { $0.records.filter { $0.outcome == nil }.map(\.message) }
            violation("did not converge after healing: \(nodes.joined(separator: ", ")); unanswered: \(unanswered)")
        }
        let records = state.withLock { $0.records }
        let retried = Set(Dictionary(grouping: records, by: \.message).filter { $0.value.count > 1 }.keys)
        let history = records.compactMap { record -> HistoryChecker.Record? in
            switch record.outcome {
            case .ok(let seq) where record.w >= majority: HistoryChecker.Record(message: record.message, outcome: .ok(seq: seq))
            // A refused retry says nothing about the append it retries.
            case .refused where retried.contains(record.message): nil
            case .refused: HistoryChecker.Record(message: record.message, outcome: .refused)
            // Acknowledged by fewer than a majority: it may be lost in a failover.
            default: HistoryChecker.Record(message: record.message, outcome: .unknown)
            }
        }
        // Each node's whole history: what it holds and what retention dropped. A log started
        // again at its master's start has no history before it, but the same chain (checked
        // by `converged`), so the nodes with their whole history speak for it.
        let logs = names.filter { disks[$0]!.knownFrom == 1 }.map { ($0, disks[$0]!.entries) }
        guard !logs.isEmpty else {
            if converged { log("every node started its log again: the history is checked through the chain only") }
            return
        }
        // A node that started its log again knows no key before its start; elected, it
        // appends a retry of such a key again (guarantees.md says so). Forgiven only then:
        // a retried message whose key was first stored before the start of such a master's log.
        let restartedStarts = state.withLock { $0.restartedMasterStarts }
        let firstSeq = Dictionary(logs[0].1.map { ($0.message, $0.seq) }, uniquingKeysWith: min)
        let placeInBatch = state.withLock { $0.placeInBatch }
        let mayRepeat = retried.filter { message in
            // A batch's key is stored with its first message.
            guard let first = firstSeq[message].map({ $0 - (placeInBatch[message]?.index ?? 0) }) else { return false }
            return restartedStarts.contains { $0 > first }
        }
        for problem in HistoryChecker.check(history, logs: logs, mayRepeat: mayRepeat) { violation(problem) }
        for problem in HistoryChecker.checkBatches(state.withLock { $0.batches }, logs: logs) { violation(problem) }
    }
}

/// Writes a node's log lines into the simulation's trace (a replay of one seed).
struct TraceLogHandler: LogHandler {
    let label: String
    let write: @Sendable (String) -> Void
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    init(label: String, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.write = write
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = metadata.merging(event.metadata ?? [:]) { $1 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        write("  \(label) \(event.level): \(event.message) \(fields.joined(separator: " "))")
    }
}

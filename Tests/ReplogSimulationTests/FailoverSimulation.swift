import ReplogCore

/// One seeded schedule of elections under faults: 3 or 5 nodes, each driven by the real
/// `FailoverInstance`, on a simulated network that delays, reorders and loses messages,
/// while the schedule crashes, freezes (as `SIGSTOP` does) and partitions nodes, the
/// master most of all, and clients append through any node.
///
/// The election rules are the product's (`FailoverInstance`); what is modelled here is
/// the rest of a node, kept as simple as it can be: a log is an array whose fsync takes
/// simulated time (a node acknowledges, counts itself towards `w` and votes with only its
/// fsynced prefix, and a crash is a power loss that keeps that prefix and perhaps a torn
/// part of the rest), and a master's replication request carries its epoch history, a few
/// entries past what the member holds (fsynced on the master or not: the fsync overlap),
/// and its whole log in place of the hashes the real master compares to find where a
/// member's log parts from its own.
/// Checked:
///
/// - at most one master per epoch;
/// - a `201` for `w` only when `w` nodes hold the message at its seq, fsynced;
/// - an append taken only by a master that a majority answered lately (a deposed, frozen
///   or cut-off master takes none);
/// - every `201` with `w` of a majority or more is in the log of every later master at
///   its seq, and in every log at the end (no acknowledged write lost or moved);
/// - after healing, one master and every log equal to its log;
/// - readers: at every step each node shows its log up to its commit point (counted by
///   the product's rule, `ReplicationInstance.commitPoint`, and handed to each member only
///   as far as it holds the master's log); no two nodes ever show different messages at a
///   seq, and the final log holds every message shown.
final class FailoverSimulation {
    static let heartbeat: Duration = .milliseconds(50)
    static let electionTimeout: ClosedRange<Duration> = .milliseconds(150)...(.milliseconds(300))
    static let faultyFor: Duration = .seconds(6)
    static let settleLimit: Duration = .seconds(40)

    enum Message {
        case vote(VoteRequest)
        case voteAnswer(VoteAnswer)
        /// The master's whole log stands for the hashes it compares; it sends up to `upTo`.
        case replicate(epoch: Int, history: EpochHistory, log: [String], upTo: Int, commit: Int)
        case replicateAnswer(epoch: Int, matched: Int?)
    }

    enum Target { case master, anyNode }
    enum Fault { case crash, freeze, isolate }

    final class Node {
        let name: String
        init(name: String) { self.name = name }
        /// Durable: what the node keeps across a crash.
        var record = ElectionRecord()
        var log: [String] = []
        /// How much of `log` is fsynced; a power loss keeps this much (and maybe a torn part).
        var durable = 0
        /// Durable: the commit point it learned (kept before it is shown, as `commit.json`).
        var commit = 0
        /// As master: where its epoch starts in its log.
        var epochStart = 0
        /// Bumped by every crash and cut: an fsync that started before does not count.
        var generation = 0
        /// Volatile: nil while the node is down.
        var instance: FailoverInstance?
        var frozen = false
        /// As master: how far each member holds its log, and when it last answered.
        var matched: [String: Int] = [:]
        var answered: [String: Duration] = [:]
        var waiting: [(seq: Int, w: Int, client: Int, deadline: Duration)] = []
        var nextHeartbeat: Duration = .zero
    }

    struct Delivery {
        var at: Duration
        let order: Int
        let from: String
        let to: String
        let message: Message
    }

    let seed: UInt64
    let random: SimulationRandom
    let names: [String]
    var majority: Int { names.count / 2 + 1 }
    private(set) var now: Duration = .zero
    private var nodes: [String: Node] = [:]
    private var network: [Delivery] = []
    private var sent = 0
    private var isolated: Set<String> = []
    private var scheduled: [(at: Duration, action: () -> Void)] = []
    private let maxDelay: Duration
    private let fsyncLatency: ClosedRange<Duration>
    private let lossRate: Double
    /// Most entries a replication request carries beyond what the member holds.
    private let batch: Int
    /// Acknowledged with `w` of a majority or more: seq → message, and the epoch of the
    /// master that acknowledged it.
    private var committed: [Int: (message: String, epoch: Int)] = [:]
    private var masterOfEpoch: [Int: String] = [:]
    /// What readers were shown: seq → message.
    private var shown: [Int: String] = [:]
    private var clients = 0
    private(set) var elections = 0
    private(set) var acknowledged = 0
    private(set) var violations: [String] = []
    private(set) var trace: [String] = []
    let tracing: Bool

    init(seed: UInt64, tracing: Bool = false) {
        self.seed = seed
        self.tracing = tracing
        random = SimulationRandom(seed: seed)
        names = (1...(random.chance(0.5) ? 3 : 5)).map { "n\($0)" }
        maxDelay = random.duration(.milliseconds(1)...(.milliseconds(40)))
        lossRate = random.chance(0.5) ? random.unit() * 0.2 : 0
        batch = random.int(1...4)
        fsyncLatency = random.chance(0.5) ? .microseconds(100)...(.milliseconds(3)) : .milliseconds(1)...(.milliseconds(40))
        for name in names { nodes[name] = Node(name: name) }
        planSchedule()
    }

    // MARK: Schedule

    private func planSchedule() {
        for _ in 0..<random.int(20...60) {
            let time = random.duration(.zero...Self.faultyFor)
            let w = [1, majority, names.count, majority][random.int(0...3)]
            let timeout = random.duration(.milliseconds(50)...(.seconds(1)))
            at(time) { self.clientAppends(w: w, timeout: timeout) }
        }
        for _ in 0..<random.int(1...6) {
            let time = random.duration(.milliseconds(500)...Self.faultyFor)
            let fault = [Fault.crash, .freeze, .isolate][random.int(0...2)]
            let target = random.chance(0.7) ? Target.master : .anyNode
            let lasts = random.duration(.milliseconds(50)...(.seconds(2)))
            at(time) { self.strike(fault, target, for: lasts) }
        }
        if names.count == 5, random.chance(0.3) {
            // A split: the master and one other on one side, three on the other.
            let time = random.duration(.milliseconds(500)...Self.faultyFor)
            let lasts = random.duration(.milliseconds(200)...(.seconds(2)))
            at(time) { self.split(for: lasts) }
        }
    }

    /// Schedules `action` at `time`, after everything already scheduled for then.
    private func at(_ time: Duration, _ action: @escaping () -> Void) {
        let index = scheduled.lastIndex { $0.at <= time }.map { $0 + 1 } ?? 0
        scheduled.insert((time, action), at: index)
    }

    private var currentMaster: String? {
        names.first { nodes[$0]!.instance?.role == .master && !nodes[$0]!.frozen }
    }

    private func strike(_ fault: Fault, _ target: Target, for lasts: Duration) {
        let name = target == .master ? currentMaster ?? names[random.int(0...(names.count - 1))] : names[random.int(0...(names.count - 1))]
        log("\(fault) \(name) for \(lasts)")
        switch fault {
        case .crash:
            crash(name)
            at(now + lasts) { self.restart(name) }
        case .freeze:
            nodes[name]!.frozen = true
            at(now + lasts) { self.nodes[name]!.frozen = false; self.log("thaw \(name)") }
        case .isolate:
            isolated.insert(name)
            at(now + lasts) { self.isolated.remove(name); self.log("reconnect \(name)") }
        }
    }

    private func split(for lasts: Duration) {
        let master = currentMaster ?? names[0]
        let minority = [master] + [names.filter { $0 != master }[random.int(0...(names.count - 2))]]
        log("split \(minority) from the rest for \(lasts)")
        isolatedGroup = Set(minority)
        at(now + lasts) { self.isolatedGroup = []; self.log("split healed") }
    }

    private var isolatedGroup: Set<String> = []

    private func connected(_ a: String, _ b: String) -> Bool {
        if isolated.contains(a) || isolated.contains(b) { return false }
        return isolatedGroup.contains(a) == isolatedGroup.contains(b)
    }

    private func crash(_ name: String) {
        failWaiting(name)
        let node = nodes[name]!
        node.instance = nil
        node.frozen = false
        // Power loss: what was not fsynced is gone, or a torn part of it stays.
        let unsynced = node.log.count - node.durable
        let kept = node.durable + (unsynced > 0 && random.chance(0.4) ? random.int(1...unsynced) : 0)
        if kept < node.log.count { log("\(name) loses \(node.log.count - kept) unsynced entries") }
        node.log.removeLast(node.log.count - kept)
        node.durable = kept
        node.generation += 1
    }

    /// Starts an fsync of everything `name` has written, unless one is running; `then` runs
    /// when it is done (the node acknowledges only after it).
    private func sync(_ name: String, then done: @escaping () -> Void = {}) {
        let node = nodes[name]!
        let (generation, target) = (node.generation, node.log.count)
        at(now + random.duration(fsyncLatency)) {
            guard node.generation == generation, node.instance != nil else { return }
            node.durable = max(node.durable, min(target, node.log.count))
            done()
        }
    }

    private func restart(_ name: String) {
        guard nodes[name]!.instance == nil else { return }
        log("restart \(name)")
        nodes[name]!.instance = FailoverInstance(
            settings: settings(name), record: nodes[name]!.record, now: now, seed: random.next())
    }

    private func settings(_ name: String) -> FailoverInstance.Settings {
        FailoverInstance.Settings(me: name, members: names, electionTimeout: Self.electionTimeout)
    }

    // MARK: Running

    func run() -> [String] {
        for name in names {
            nodes[name]!.instance = FailoverInstance(settings: settings(name), record: ElectionRecord(), now: .zero, seed: random.next())
        }
        var healed = false
        while now < Self.settleLimit {
            runDue()
            if !healed, now >= Self.faultyFor {
                heal()
                healed = true
            }
            if healed, converged() { break }
            now = max(now + .microseconds(1), nextEventTime(healed: healed))
        }
        if !converged() {
            violation("did not converge after healing: " + names.map { "\($0) \(nodes[$0]!.instance?.role.rawValue ?? "down") epoch \(nodes[$0]!.record.epoch) log \(nodes[$0]!.log.count)" }.joined(separator: ", "))
        }
        checkCommittedEverywhere()
        if let master = currentMaster {
            let log = nodes[master]!.log
            for (seq, message) in shown.sorted(by: { $0.key < $1.key }) where seq > log.count || log[seq - 1] != message {
                violation("readers were shown \(message) at seq \(seq), but the final log holds \(seq <= log.count ? log[seq - 1] : "nothing") there")
            }
        }
        return violations
    }

    private func runDue() {
        while let next = scheduled.first, next.at <= now {
            scheduled.removeFirst()
            next.action()
        }
        // Messages due now, in the order they were sent; a frozen node's wait.
        while let index = network.firstIndex(where: { $0.at <= now && !(nodes[$0.to]!.frozen) }) {
            let delivery = network.remove(at: index)
            receive(delivery)
        }
        for name in names where nodes[name]!.instance != nil && !nodes[name]!.frozen {
            tick(name)
            expireWaiting(name)
        }
        checkReaders()
    }

    /// The next moment anything can happen: a scheduled fault or append, a message, a
    /// node's election deadline or heartbeat, an append's timeout.
    private func nextEventTime(healed: Bool) -> Duration {
        var next = scheduled.first?.at ?? Self.settleLimit
        if !healed { next = min(next, Self.faultyFor) }
        if let delivery = network.first(where: { !nodes[$0.to]!.frozen }) { next = min(next, delivery.at) }
        for name in names {
            let node = nodes[name]!
            guard let instance = node.instance, !node.frozen else { continue }
            next = min(next, instance.role == .master ? node.nextHeartbeat : instance.electionDeadline)
            for waiting in node.waiting { next = min(next, waiting.deadline) }
        }
        return next
    }

    private func heal() {
        log("heal")
        isolated = []
        isolatedGroup = []
        scheduled.removeAll()
        for name in names {
            nodes[name]!.frozen = false
            if nodes[name]!.instance == nil { restart(name) }
            // The fsyncs under way were dropped with the schedule: start them again.
            sync(name) { [self] in answerWaiting(name) }
        }
    }

    private func converged() -> Bool {
        guard let master = currentMaster, let instance = nodes[master]!.instance, instance.acceptsAppends(now: now) else { return false }
        let log = nodes[master]!.log
        return names.allSatisfy { nodes[$0]!.log == log && nodes[$0]!.waiting.isEmpty }
    }

    // MARK: Nodes

    private func send(_ message: Message, from: String, to: String) {
        guard connected(from, to), !random.chance(lossRate) else { return }
        sent += 1
        let delivery = Delivery(at: now + random.duration(.zero...maxDelay), order: sent, from: from, to: to, message: message)
        // Kept sorted by arrival (then by sending order): messages overtake each other.
        let index = network.lastIndex { $0.at <= delivery.at }.map { $0 + 1 } ?? 0
        network.insert(delivery, at: index)
    }

    private func tick(_ name: String) {
        guard var instance = nodes[name]!.instance else { return }
        let position = instance.record.history.position(lastSeq: nodes[name]!.durable)
        var directives: [FailoverInstance.Directive] = []
        if instance.role == .master || now >= instance.electionDeadline {
            directives = instance.tick(now: now, log: position)
        }
        update(name, instance)
        carryOut(directives, at: name)
        if nodes[name]!.instance?.role == .master, now >= nodes[name]!.nextHeartbeat {
            nodes[name]!.nextHeartbeat = now + Self.heartbeat
            let node = nodes[name]!
            for peer in names where peer != name {
                // Up to `batch` entries past what the member is known to hold, fsynced here
                // or not: as the real master with failover does, the master's own fsync and
                // the replication overlap, and the master counts itself only after its fsync.
                let upTo = min(node.log.count, (node.matched[peer] ?? 0) + batch)
                let commit = min(node.commit, node.matched[peer] ?? 0)
                send(
                    .replicate(epoch: node.record.epoch, history: node.record.history, log: node.log, upTo: upTo, commit: commit),
                    from: name, to: peer)
            }
        }
    }

    /// Persists what the instance must remember (before anything it answers is sent).
    private func update(_ name: String, _ instance: FailoverInstance) {
        nodes[name]!.instance = instance
        nodes[name]!.record = instance.record
    }

    private func carryOut(_ directives: [FailoverInstance.Directive], at name: String) {
        for directive in directives {
            switch directive {
            case .requestVotes(let request):
                for peer in names where peer != name { send(.vote(request), from: name, to: peer) }
            case .becomeMaster(let epoch, let after):
                elections += 1
                log("\(name) becomes master of epoch \(epoch) after seq \(after)")
                if let other = masterOfEpoch[epoch], other != name {
                    violation("two masters in epoch \(epoch): \(other) and \(name)")
                }
                masterOfEpoch[epoch] = name
                // Raft's leader completeness: every master of a later epoch holds it. (A node can
                // still win an earlier epoch late, frozen while its votes arrived: it can take
                // no append then, as the members have moved on.)
                for (seq, (message, acknowledgedIn)) in committed.sorted(by: { $0.key < $1.key })
                where acknowledgedIn < epoch && (nodes[name]!.log.count < seq || nodes[name]!.log[seq - 1] != message) {
                    violation("\(name) became master of epoch \(epoch) without acknowledged \(message) at seq \(seq)")
                }
                nodes[name]!.matched = [:]
                nodes[name]!.answered = [:]
                nodes[name]!.nextHeartbeat = now
                nodes[name]!.epochStart = after
            case .stepDown(let reason):
                log("\(name) steps down: \(reason)")
                failWaiting(name)
            }
        }
    }

    private func receive(_ delivery: Delivery) {
        let name = delivery.to
        guard var instance = nodes[name]!.instance else { return }
        let position = instance.record.history.position(lastSeq: nodes[name]!.durable)
        switch delivery.message {
        case .vote(let request):
            let answer = instance.onVoteRequest(request, log: position, now: now)
            update(name, instance)
            send(.voteAnswer(answer), from: name, to: delivery.from)
        case .voteAnswer(let answer):
            let directives = instance.onVoteAnswer(answer, from: delivery.from, log: position, now: now)
            update(name, instance)
            carryOut(directives, at: name)
        case .replicate(let epoch, let history, let masterLog, let upTo, let commit):
            let (accepted, directives) = instance.onMasterContact(epoch: epoch, master: delivery.from, now: now)
            let node = nodes[name]!
            if accepted {
                var log = node.log
                // Where the two logs part (the real master finds it by comparing hashes).
                let common = zip(log, masterLog).prefix { $0 == $1 }.count
                // A late request of this very master, shorter than what it sent since: keep all.
                let stale = common == masterLog.count && instance.record.history.lastEpoch == epoch
                if !stale, log.count > common {
                    if common < node.commit { violation("\(name) cuts after seq \(common), below its commit point \(node.commit)") }
                    self.log("\(name) cuts \(log.count - common) entries after seq \(common) (rollback)")
                    log.removeLast(log.count - common)
                    instance.onCut(after: common)
                    node.durable = min(node.durable, common)
                    node.generation += 1
                }
                if log.count < upTo { log += masterLog[log.count..<upTo] }
                node.log = log
                node.commit = max(node.commit, commit)
            }
            update(name, instance)
            carryOut(directives, at: name)
            guard accepted else {
                send(.replicateAnswer(epoch: instance.epoch, matched: nil), from: name, to: delivery.from)
                return
            }
            // It answers once what it holds is fsynced, and only then holds the master's start.
            let master = delivery.from
            sync(name) { [self] in
                guard var instance = node.instance, instance.epoch == epoch else { return }
                instance.onSynced(masterHistory: history, matched: node.durable)
                update(name, instance)
                send(.replicateAnswer(epoch: epoch, matched: node.durable), from: name, to: master)
            }
        case .replicateAnswer(let epoch, let matched):
            let directives = instance.onMemberAnswer(from: delivery.from, epoch: epoch, matched: matched, now: now)
            update(name, instance)
            if instance.role == .master, epoch == instance.epoch, let matched {
                nodes[name]!.matched[delivery.from] = matched
                nodes[name]!.answered[delivery.from] = now
            }
            carryOut(directives, at: name)
            answerWaiting(name)
        }
    }

    // MARK: Clients

    /// A client appends through a random node and follows one redirect, as `curl -L` does.
    /// One in five is a retry of an earlier message (its idempotency key): a master that holds
    /// it answers with its seq once `w` nodes hold it, and appends it only if it is gone.
    private func clientAppends(w: Int, timeout: Duration) {
        clients += 1
        let message = clients > 1 && random.chance(0.2) ? "m\(random.int(1...(clients - 1)))" : "m\(clients)"
        var name = names[random.int(0...(names.count - 1))]
        if let instance = nodes[name]!.instance, !nodes[name]!.frozen, instance.role != .master, let master = instance.master {
            name = master
        }
        guard let instance = nodes[name]!.instance, !nodes[name]!.frozen, instance.acceptsAppends(now: now) else {
            log("append \(message) w=\(w) via \(name): refused")
            return
        }
        let window = Self.electionTimeout.upperBound + Self.heartbeat + maxDelay * 2
        let heard = nodes[name]!.answered.values.count { now - $0 <= window }
        if heard + 1 < majority { violation("\(name) took \(message) although no majority answered it in the last \(window)") }
        let seq: Int
        if let index = nodes[name]!.log.firstIndex(of: message) {
            seq = index + 1
            log("retry \(message) w=\(w) via \(name): held at seq \(seq)")
        } else {
            nodes[name]!.log.append(message)
            seq = nodes[name]!.log.count
            log("append \(message) w=\(w) via \(name): seq \(seq)")
            sync(name) { [self] in answerWaiting(name) }
        }
        nodes[name]!.waiting.append((seq, w, clients, now + timeout))
        answerWaiting(name)
    }

    private func answerWaiting(_ name: String) {
        guard let instance = nodes[name]!.instance, instance.role == .master else { return }
        let node = nodes[name]!
        let counted = ReplicationInstance.commitPoint(
            masterDurable: node.durable, members: names.filter { $0 != name }.map { node.matched[$0] ?? 0 }, epochStart: node.epochStart)
        node.commit = max(node.commit, counted)
        var stillWaiting: [(seq: Int, w: Int, client: Int, deadline: Duration)] = []
        for waiting in node.waiting {
            let holders = (node.durable >= waiting.seq ? 1 : 0) + node.matched.values.count { $0 >= waiting.seq }
            if holders >= waiting.w { acknowledge(waiting.seq, w: waiting.w, by: name) } else { stillWaiting.append(waiting) }
        }
        nodes[name]!.waiting = stillWaiting
    }

    private func acknowledge(_ seq: Int, w: Int, by name: String) {
        acknowledged += 1
        let message = nodes[name]!.log[seq - 1]
        log("201 \(message) seq \(seq) w=\(w) from \(name)")
        let holders = names.filter { nodes[$0]!.durable >= seq && nodes[$0]!.log[seq - 1] == message }
        if holders.count < w { violation("201 for \(message) w=\(w) at seq \(seq), fsynced only by \(holders)") }
        guard w >= majority else { return }
        if let earlier = committed[seq], earlier.message != message {
            violation("seq \(seq) acknowledged as \(earlier.message) and as \(message)")
        }
        committed[seq] = (message, nodes[name]!.record.epoch)
    }

    private func expireWaiting(_ name: String) {
        nodes[name]!.waiting.removeAll { $0.deadline <= now }
    }

    private func failWaiting(_ name: String) {
        nodes[name]!.waiting = []
    }

    // MARK: Checks

    /// What a committed read of each node shows now: its log up to its commit point, as far
    /// as it holds it durably. No two readers may be shown different messages at a seq.
    private func checkReaders() {
        for name in names {
            let node = nodes[name]!
            for seq in stride(from: 1, through: min(node.commit, node.durable), by: 1) {
                let message = node.log[seq - 1]
                if let earlier = shown[seq] {
                    if earlier != message { violation("readers were shown \(earlier) and \(name) shows \(message) at seq \(seq)") }
                } else {
                    shown[seq] = message
                }
            }
        }
    }

    private func checkCommittedEverywhere() {
        for name in names where Set(nodes[name]!.log).count != nodes[name]!.log.count {
            violation("\(name)'s log holds a message twice: \(nodes[name]!.log)")
        }
        for (seq, (message, _)) in committed.sorted(by: { $0.key < $1.key }) {
            for name in names where nodes[name]!.log.count < seq || nodes[name]!.log[seq - 1] != message {
                violation("acknowledged \(message) at seq \(seq) missing from \(name)'s log at the end")
            }
        }
    }

    private func violation(_ text: String) {
        log("VIOLATION " + text)
        violations.append("seed \(seed) at \(now): \(text)")
    }

    private func log(_ line: @autoclosure () -> String) {
        if tracing { trace.append("[\(now)] \(line())") }
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import ReplogCore
import ReplogTestKit
import Testing

/// Real `replog` processes on a real network: each node in its own network namespace on its
/// own address (`NamespaceNetwork`), with failover, data folders and a cluster secret (the
/// nodes are not on loopback, so protected mode applies). A seeded nemesis cuts links the way
/// a network does, where packets vanish instead of waiting in a proxy's buffer, while writers
/// and readers use any node; then it heals, and a checker looks at what every client was told
/// and shown.
///
/// - `REPLOG_NETWORK_SECONDS=N`: how long the nemesis runs (12 in the quick run, 40 in the
///   deep run: `TestDepth`);
/// - `REPLOG_NETWORK_SEED=S`: replays the nemesis's and the clients' choices of seed S
///   (the timing of a real network is not replayed);
/// - `REPLOG_NETWORK_RUNS=N`: N schedules of each topology (seeds S, S + 1, …), until one
///   finds a violation;
/// - `REPLOG_REQUIRE_NETNS=1` (CI): a machine that cannot run them fails them instead of
///   skipping them.
@Suite(.serialized, .timeLimit(.minutes(10 * realNetworkRuns)))
struct RealNetworkTests {
    static let environment = ProcessInfo.processInfo.environment
    static let runs = realNetworkRuns
    static let required = environment["REPLOG_REQUIRE_NETNS"] == "1"
    static let unavailable = NamespaceNetwork.unavailable ?? PowerLossDisk.unavailable

    @Test(
        .enabled(if: Self.unavailable == nil || required, "\(Self.unavailable ?? "")"),
        arguments: [3, 5])
    func aNemesisOnARealNetworkLosesNoAcknowledgedWriteAndShowsNoReaderWhatItTakesBack(nodes: Int) async throws {
        if let reason = Self.unavailable {
            Issue.record("REPLOG_REQUIRE_NETNS=1, but this machine cannot run real-network tests: \(reason)")
            return
        }
        let seconds = TestDepth.count("REPLOG_NETWORK_SECONDS", quick: 12, deep: 40)
        let first = Self.environment["REPLOG_NETWORK_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0..<1_000_000)
        for seed in first..<(first + UInt64(Self.runs)) {
            guard try await schedule(nodes: nodes, seed: seed, seconds: seconds) else { return }
        }
    }

    /// One seeded schedule; whether it found nothing wrong.
    private func schedule(nodes: Int, seed: UInt64, seconds: Int) async throws -> Bool {
        print("real network, \(nodes) nodes: \(seconds) s, seed \(seed)")
        let run = try await NemesisRun(nodes: nodes, seed: seed)
        defer { run.tearDown() }
        let report = try await run.run(for: .seconds(seconds))
        print(report.summary)
        for fault in report.faults { print("  fault: \(fault)") }
        #expect(report.acknowledged > 0, "no append was acknowledged with w of a majority")
        #expect(report.committedReads > 0 && report.linearizableReads > 0, "the readers were shown nothing")
        #expect(
            report.violations.isEmpty,
            """
            seed \(seed) (REPLOG_NETWORK_SEED=\(seed) replays the choices):
            \(report.violations.prefix(20).joined(separator: "\n"))
            what shows the first violation (the appends it names, and the faults from the first of them on):
            \(report.excerpt.joined(separator: "\n"))
            \(run.logs)
            """)
        return report.violations.isEmpty && report.acknowledged > 0
    }
}

/// `REPLOG_NETWORK_RUNS` (an attribute cannot name the type it is attached to).
private let realNetworkRuns = max(1, ProcessInfo.processInfo.environment["REPLOG_NETWORK_RUNS"].flatMap(Int.init) ?? 1)

/// One run of the nemesis against a cluster in namespaces, its clients and its checker.
final class NemesisRun: Sendable {
    struct Report: Sendable {
        let violations: [String]
        let faults: [String]
        /// The smallest part of the history that shows the first violation.
        let excerpt: [String]
        let acknowledged: Int
        let committedReads: Int
        let linearizableReads: Int
        let summary: String
    }

    let network: NamespaceNetwork
    /// Each node's data folder is on a disk of its own that can lose power.
    private let disks: [PowerLossDisk]
    let nodes: Int
    let seed: UInt64
    private let random: Locked<SplitMix64>
    private let folder: URL
    private let secretFile: URL
    /// The process running as each node now, and every process started (for logs).
    private let current = Locked<[Int: NodeProcess]>([:])
    private let started = Locked<[(node: Int, process: NodeProcess)]>([])
    private let history = Locked<[HistoryChecker.Record]>([])
    private let batches = Locked<[[String]]>([])
    private let faults = Locked<[String]>([])
    /// What happened when, since the run began: each append sent and answered, each fault
    /// and each heal (the excerpt of a violation is cut from it).
    private let timeline = Locked<[(at: Duration, event: String)]>([])
    private let began = ContinuousClock.now
    /// What committed reads were shown: seq → message.
    private let shown = Locked<[Int: String]>([:])
    /// Acknowledged with `w` of a majority: seq → message (what a linearizable read must hold).
    private let acknowledged = Locked<[Int: String]>([:])
    private let violations = Locked<[String]>([])
    private let counts = Locked((committed: 0, linearizable: 0))
    var majority: Int { nodes / 2 + 1 }

    init(nodes: Int, seed: UInt64) async throws {
        network = try NamespaceNetwork(nodes: nodes)
        self.nodes = nodes
        self.seed = seed
        random = Locked(SplitMix64(seed: seed))
        let temporary = FileManager.default.temporaryDirectory
        PowerLossDisk.removeLeftovers(in: temporary)
        folder = temporary.appendingPathComponent("\(PowerLossDisk.folderPrefix)\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)")
        secretFile = folder.appendingPathComponent("cluster-secret")
        var disks: [PowerLossDisk] = []
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try PowerLossDisk.shareMounts(in: folder)
            for node in 0..<nodes {
                disks.append(try PowerLossDisk(image: folder.appendingPathComponent("disk\(node).img"), mountPoint: folder.appendingPathComponent("disk\(node)")))
            }
        } catch {
            for disk in disks { disk.tearDown() }
            PowerLossDisk.unshareMounts(in: folder)
            network.tearDown()
            throw error
        }
        self.disks = disks
        do {
            let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            try Data(secret.utf8).write(to: secretFile)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: secretFile.path)
            for node in (1..<nodes).map({ $0 }) + [0] { try await start(node) }
        } catch {
            tearDown()
            throw error
        }
    }

    /// Every node listens on this port of its own address. Not 5000: the README's recipe
    /// stops its cluster's master with `kill -9 $(pgrep -f 'replog master .*--port 5000 ')`,
    /// recipes run while this test does, and node 0 here is started as `replog master`.
    static let port = 7400

    func url(_ node: Int) -> String { "http://\(network.address(node)):\(Self.port)" }

    /// Node 0 is started as `replog master --failover`, the others as `replog secondary`, as
    /// a user would start them, each on its own address.
    private func arguments(_ node: Int) -> [String] {
        let common = [
            "--host", network.address(node), "--port", "\(Self.port)", "--data-dir", disks[node].mountPoint + "/data",
            "--cluster-secret-file", secretFile.path, "--heartbeat-interval", "100ms", "--election-timeout", "300ms", "--log-level", "info",
        ]
        guard node == 0 else { return ["secondary"] + common }
        return ["master", "--failover"] + (1..<nodes).flatMap { ["--secondary", url($0)] } + common
    }

    private func start(_ node: Int) async throws {
        let process = try await NodeProcess(arguments(node), wrapper: network.inside(node))
        started.withLock { $0.append((node, process)) }
        current.withLock { $0[node] = process }
        _ = try await process.waitUntilListening()
    }

    /// Every node's output, for a failure message.
    var logs: String {
        started.withLock { $0.map { "== n\($0.node) (pid \($0.process.pid))\n\($0.process.log.suffix(6_000))" }.joined(separator: "\n") }
    }

    func tearDown() {
        for (_, process) in started.withLock({ $0 }) {
            process.signal(SIGCONT)
            process.signal(SIGKILL)
        }
        network.tearDown()
        for disk in disks { disk.tearDown() }
        PowerLossDisk.unshareMounts(in: folder)
        try? FileManager.default.removeItem(at: folder)
    }

    private func draw(_ range: ClosedRange<Int>) -> Int {
        random.withLock { range.lowerBound + Int($0.next() % UInt64(range.count)) }
    }

    private func violation(_ text: String) { violations.withLock { $0.append(text) } }

    /// The node that some node's `/health` names as master.
    private func currentMaster() async -> Int? {
        for node in 0..<nodes {
            guard let master = (try? await HTTP.get(url(node) + "/health", timeout: .seconds(1)))?.json["master"] as? String else { continue }
            if let index = (0..<nodes).first(where: { url($0) == master }) { return index }
        }
        return nil
    }

    // MARK: Running

    func run(for duration: Duration) async throws -> Report {
        let deadline = ContinuousClock.now + duration
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<3 { group.addTask { await self.write(as: writer, until: deadline) } }
            for reader in 0..<2 { group.addTask { await self.readCommitted(as: reader, until: deadline) } }
            group.addTask { await self.readStreams(until: deadline) }
            group.addTask { await self.readLinearizable(until: deadline) }
            group.addTask { await self.strike(until: deadline) }
        }
        try heal()
        for node in 0..<nodes where current.withLock({ $0[node]?.isRunning }) != true { try await start(node) }
        guard await barrier() else {
            violation("the cluster did not converge within 60 s after the faults; the nodes then: \(await nodeStates())")
            return report()
        }
        let logs = try await (0..<nodes).asyncMap { node in
            ("n\(node)", try await HTTP.messages(url(node), read: "local").map { LogEntry(seq: $0.seq, message: $0.message) })
        }
        for problem in HistoryChecker.check(history.withLock { $0 }, logs: logs) { violation(problem) }
        for problem in HistoryChecker.checkBatches(batches.withLock { $0 }, logs: logs) { violation(problem) }
        let final = logs[0].1
        for (seq, message) in shown.withLock({ $0 }).sorted(by: { $0.key < $1.key }) where seq > final.count || final[seq - 1].message != message {
            violation("a reader was shown \(message) at seq \(seq), but the final log holds \(seq <= final.count ? final[seq - 1].message : "nothing") there")
        }
        var views: Set<String> = []
        for node in 0..<nodes {
            let health = try await HTTP.get(url(node) + "/health", timeout: .seconds(5)).json
            views.insert("\(health["seq"] as? Int ?? -1):\(health["hash"] as? String ?? "none")")
        }
        if views.count != 1 { violation("the nodes end with other logs (seq:hash): \(views.sorted())") }
        return report()
    }

    private func report() -> Report {
        let records = history.withLock { $0 }
        if !violations.withLock({ $0.isEmpty }) { saveHistory(records) }
        let acknowledged = records.count { if case .ok = $0.outcome { true } else { false } }
        let (committed, linearizable) = counts.withLock { $0 }
        let faults = self.faults.withLock { $0 }
        return Report(
            violations: violations.withLock { $0 }, faults: faults, excerpt: excerpt(), acknowledged: acknowledged, committedReads: committed,
            linearizableReads: linearizable,
            summary: "real network, \(nodes) nodes, seed \(seed): \(records.count) messages appended (\(acknowledged) acknowledged with w >= "
                + "\(majority)), \(faults.count) faults, \(committed) committed reads and \(linearizable) linearizable reads answered, "
                + "\(violations.withLock { $0.count }) violations")
    }

    /// Writes the whole history (one JSON line per append, then the faults and what readers
    /// were shown) next to the test run, and says where: the checker's lines name the
    /// messages to look for in it.
    private func saveHistory(_ records: [HistoryChecker.Record]) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("replog-netns-history-\(nodes)-nodes-seed-\(seed).jsonl")
        var lines: [String] = records.map { record in
            switch record.outcome {
            case .ok(let seq): #"{"message":"\#(record.message)","outcome":"ok","seq":\#(seq)}"#
            case .refused: #"{"message":"\#(record.message)","outcome":"refused"}"#
            case .unknown: #"{"message":"\#(record.message)","outcome":"unknown"}"#
            }
        }
        lines += timeline.withLock { $0 }.map { #"{"at":"\#($0.at)","event":"\#($0.event)"}"# }
        lines += shown.withLock { $0 }.sorted { $0.key < $1.key }.map { #"{"shown":"\#($0.value)","seq":\#($0.key)}"# }
        try? Data((lines.joined(separator: "\n") + "\n").utf8).write(to: file)
        violation("the whole history is in \(file.path)")
    }

    /// What each node is at the end: its process (running, or how it ended) and what its
    /// `/health` says of its role, epoch, log and master.
    private func nodeStates() async -> String {
        var states: [String] = []
        for node in 0..<nodes {
            let process = current.withLock { $0[node] }
            let running = process.map { process in
                process.exitStatus.map { "exited with \($0)" } ?? "pid \(process.pid) in state \(Self.processState(process.pid))"
            } ?? "never started"
            let health = (try? await HTTP.get(url(node) + "/health", timeout: .seconds(2)))?.json
            let shown = health.map { health in
                ["role", "epoch", "seq", "commitSeq", "master", "readOnly"].compactMap { key in health[key].map { "\(key) \($0)" } }.joined(separator: ", ")
            } ?? "no answer to /health"
            states.append("n\(node) (\(running)): \(shown)")
        }
        return states.joined(separator: "; ")
    }

    /// The kernel's state letter for `pid` (`R` running, `S` sleeping, `T` stopped, `Z` a
    /// zombie), from `/proc/<pid>/stat`.
    private static func processState(_ pid: Int32) -> String {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return "?" }
        return String(stat[end...].dropFirst(2).prefix(1))
    }

    /// After the faults: a `w` = every node append (through any node, following its `307`)
    /// until one is answered, when every node holds everything before it.
    private func barrier() async -> Bool {
        let settle = ContinuousClock.now + .seconds(60)
        var outcome = HistoryChecker.Outcome.unknown
        while ContinuousClock.now < settle {
            let node = draw(0...(nodes - 1))
            outcome = await ChaosTests.append(url(node), ["message": "barrier", "w": nodes, "id": "barrier", "timeout": 5000], timeout: .seconds(6))
            event("barrier through n\(node): \(outcome)")
            if case .ok = outcome { break }
            try? await Task.sleep(for: .milliseconds(200))
        }
        history.withLock { $0.append(.init(message: "barrier", outcome: outcome)) }
        if case .ok = outcome { return true }
        return false
    }

    // MARK: The nemesis

    /// One fault at a time, each for 0.2 to 1.5 s, then healed, until the deadline.
    private func strike(until deadline: ContinuousClock.Instant) async {
        while ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(draw(200...800)))
            let (kind, length) = (draw(0...9), Duration.milliseconds(draw(200...1_500)))
            let master = await currentMaster()
            let any = draw(0...(nodes - 1))
            let other = (any + draw(1...(nodes - 1))) % nodes
            do {
                switch kind {
                case 0, 1:
                    let node = kind == 0 ? master ?? any : any
                    note("isolate n\(node)\(node == master ? " (the master)" : "") for \(length)")
                    try network.isolate(node)
                case 2:
                    note("cut n\(any) <-> n\(other) for \(length)")
                    try network.cut(any, other)
                case 3:
                    note("n\(other) stops hearing n\(any) (one way) for \(length)")
                    try network.cut(from: any, to: other)
                case 4:
                    // A minority, the master in it half the time; the majority goes on.
                    var side: Set<Int> = master.map { draw(0...1) == 0 ? [$0] : [] } ?? []
                    while side.count < nodes / 2 { side.insert(draw(0...(nodes - 1))) }
                    note("split \(side.sorted().map { "n\($0)" }) from the rest for \(length)")
                    try network.split(side)
                case 5:
                    let node = master ?? any
                    note("kill -9 n\(node) for \(length)")
                    current.withLock { $0[node] }?.signal(SIGKILL)
                    _ = try? await current.withLock { $0[node] }?.waitForExit()
                    try? await Task.sleep(for: length)
                    try await start(node)
                    continue
                case 6:
                    let node = master ?? any
                    note("SIGSTOP n\(node) for \(length)")
                    current.withLock { $0[node] }?.signal(SIGSTOP)
                    try? await Task.sleep(for: length)
                    current.withLock { $0[node] }?.signal(SIGCONT)
                    continue
                case 7:
                    let loss = Double(draw(30...70)) / 100
                    note("n\(any) <-> n\(other) lose \(Int(loss * 100)) % of packets for \(length)")
                    try network.cut(from: any, to: other, loss: loss)
                    try network.cut(from: other, to: any, loss: loss)
                case 8:
                    // Every node at once, or a majority with the master: a write that only
                    // reached their page caches is gone from every node that held it. Or
                    // the master's process crashes (its disk keeps what the kernel holds)
                    // as the others lose power: they elect one of themselves from what they
                    // fsynced, so a secondary that acknowledged before its fsync is found out.
                    let variant = draw(0...2)
                    var victims: Set<Int> = variant == 0 ? Set(0..<nodes) : master.map { [$0] } ?? []
                    while victims.count < majority { victims.insert(draw(0...(nodes - 1))) }
                    let crashed = variant == 2 ? master : nil
                    if let crashed { victims = Set(0..<nodes).subtracting([crashed]) }
                    note((crashed.map { "kill -9 n\($0) (the master) and " } ?? "") + "power loss on \(victims.sorted().map { "n\($0)" }) for \(length)")
                    try await losePower(victims, crashing: crashed)
                    try? await Task.sleep(for: length)
                    for node in victims.sorted() { try await start(node) }
                    if let crashed {
                        // The others elect a master from what they kept before the old one is back.
                        try? await Task.sleep(for: .seconds(2))
                        try await start(crashed)
                    }
                    continue
                default:
                    note("n\(any) sends at most 64 kbit/s for \(length)")
                    try network.slow(any, kbit: 64)
                }
                try? await Task.sleep(for: length)
                try heal()
            } catch {
                violation("the nemesis failed: \(error)")
                return
            }
        }
    }

    private func note(_ fault: String) {
        faults.withLock { $0.append(fault) }
        event("fault: \(fault)")
    }

    private func event(_ text: String) { timeline.withLock { $0.append((at: ContinuousClock.now - began, event: text)) } }

    /// The lines of the timeline that show the first violation: those naming a message it
    /// names, and the faults and heals from the first of them to the last (and the three
    /// after: a fault that loses a write comes after its answer).
    private func excerpt() -> [String] {
        guard let first = violations.withLock({ $0.first }) else { return [] }
        let names = { (text: String) in Set(text.matches(of: /w\d+-\d+(\.\d)?/).map { String($0.output.0) }) }
        let named = names(first)
        let lines = timeline.withLock { $0 }
        let naming = lines.indices.filter { !names(lines[$0].event).isDisjoint(with: named) }
        guard let start = naming.first, let end = naming.last else { return [] }
        var faultsAfter = 0
        return lines.indices.compactMap { index -> String? in
            let isFault = lines[index].event.hasPrefix("fault") || lines[index].event == "healed"
            if index > end, isFault { faultsAfter += 1 }
            let shown = naming.contains(index) || (isFault && index >= start && (index <= end || faultsAfter <= 3))
            return shown ? String(format: "%8.3f s  ", Double(lines[index].at.components.seconds) + Double(lines[index].at.components.attoseconds) / 1e18) + lines[index].event : nil
        }
    }

    /// The power goes on every node of `victims` close together (their disks keep only
    /// what was fsynced), then they are killed; their disks are mounted again. The process
    /// of `crashing` is killed first, its disk untouched (the kernel keeps what it wrote).
    private func losePower(_ victims: Set<Int>, crashing: Int? = nil) async throws {
        if let crashing { current.withLock { $0[crashing] }?.signal(SIGKILL) }
        for node in victims.sorted() {
            try disks[node].cutPower()
            current.withLock { $0[node] }?.signal(SIGKILL)
        }
        if let crashing { _ = try? await current.withLock { $0[crashing] }?.waitForExit() }
        for node in victims.sorted() {
            _ = try? await current.withLock { $0[node] }?.waitForExit()
            try await disks[node].powerOn()
        }
    }

    private func heal() throws {
        try network.heal()
        event("healed")
        for process in current.withLock({ Array($0.values) }) { process.signal(SIGCONT) }
    }

    // MARK: Clients

    /// Appends through any node with `w` of 1, a majority or all, an `id` every other time
    /// (retried once through the next node when the answer was lost), a batch of three one
    /// time in four.
    private func write(as writer: Int, until deadline: ContinuousClock.Instant) async {
        var index = 0
        while ContinuousClock.now < deadline {
            index += 1
            let message = "w\(writer)-\(index)"
            let w = [1, majority, nodes, majority][draw(0...3)]
            let node = draw(0...(nodes - 1))
            let id = draw(0...1) == 0 ? "id-\(message)" : nil
            let messages = draw(0...3) == 0 ? (1...3).map { "\(message).\($0)" } : [message]
            var body: [String: any Sendable] = ["w": w, "timeout": 2_000]
            if messages.count > 1 {
                body["messages"] = messages
                batches.withLock { $0.append(messages) }
            } else {
                body["message"] = message
            }
            if let id { body["id"] = id }
            event("\(messages.joined(separator: ", ")) sent to n\(node), w=\(w)\(id == nil ? "" : ", with an id")")
            var outcome = await ChaosTests.append(url(node), body, timeout: .seconds(3))
            record(messages, outcome, w: w)
            if id != nil, outcome == .unknown, w >= majority, ContinuousClock.now < deadline {
                event("\(messages.joined(separator: ", ")) sent again to n\((node + 1) % nodes)")
                outcome = await ChaosTests.append(url((node + 1) % nodes), body, timeout: .seconds(3))
                record(messages, outcome, w: w)
            }
            if case .ok = outcome {} else { try? await Task.sleep(for: .milliseconds(20)) }
        }
    }

    private func record(_ messages: [String], _ outcome: HistoryChecker.Outcome, w: Int) {
        event("\(messages.joined(separator: ", ")) answered: \(outcome)")
        // A w below a majority may be cut in a failover: the client only knows it was taken.
        let kept = w < majority && outcome != .refused ? .unknown : outcome
        history.withLock { history in
            for (offset, message) in messages.enumerated() {
                let each = if case .ok(let first) = kept { HistoryChecker.Outcome.ok(seq: first + offset) } else { kept }
                history.append(.init(message: message, outcome: each))
            }
        }
        if case .ok(let first) = kept {
            acknowledged.withLock { for (offset, message) in messages.enumerated() { $0[first + offset] = message } }
        }
    }

    /// Reads any node: a committed long poll after what it last read there.
    private func readCommitted(as reader: Int, until deadline: ContinuousClock.Instant) async {
        var next = Array(repeating: 1, count: nodes)
        while ContinuousClock.now < deadline {
            let node = draw(0...(nodes - 1))
            let query = "/messages?from=\(next[node])&limit=500&wait=300"
            guard let reply = try? await HTTP.get(url(node) + query, timeout: .seconds(2)), reply.status == 200 else { continue }
            let entries = Self.entries(reply)
            counts.withLock { $0.committed += 1 }
            for (seq, message) in entries { recordShown(seq, message, on: node, by: "reader \(reader)") }
            if let last = entries.last?.seq { next[node] = last + 1 }
        }
    }

    /// Follows `/messages/stream` on any node for about a second at a time, from after what
    /// it last read there; every event is checked as a list's entries are.
    private func readStreams(until deadline: ContinuousClock.Instant) async {
        var next = Array(repeating: 1, count: nodes)
        while ContinuousClock.now < deadline {
            let node = draw(0...(nodes - 1))
            let request = HTTPClientRequest(url: url(node) + "/messages/stream?from=\(next[node])")
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)), response.status == .ok else {
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            counts.withLock { $0.committed += 1 }
            let stop = ContinuousClock.now + .seconds(1)
            var text = ""
            do {
                for try await chunk in response.body {
                    text += String(buffer: chunk)
                    while let end = text.range(of: "\n\n") {
                        let event = text[..<end.lowerBound]
                        text.removeSubrange(..<end.upperBound)
                        for line in event.split(separator: "\n") where line.hasPrefix("data: ") {
                            let json = (try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8))) as? [String: Any]
                            guard let seq = json?["seq"] as? Int, let message = json?["message"] as? String else { continue }
                            recordShown(seq, message, on: node, by: "a stream")
                            next[node] = seq + 1
                        }
                    }
                    if ContinuousClock.now >= stop { break }
                }
            } catch {}
        }
    }

    /// Records what a reader was shown; another message at the same seq is a violation. The
    /// timeline gets the first message shown at each seq, and every other one.
    private func recordShown(_ seq: Int, _ message: String, on node: Int, by reader: String) {
        let earlier = shown.withLock { shown in
            defer { shown[seq] = shown[seq] ?? message }
            return shown[seq]
        }
        if earlier == nil || earlier != message { event("\(reader) shown \(message) at seq \(seq) on n\(node)") }
        if let earlier, earlier != message {
            violation("\(reader) was shown \(message) at seq \(seq) on n\(node), another reader \(earlier)")
        }
    }

    /// Every 30 ms, a linearizable list through each node (following its `307` to the master
    /// it names), without waiting for the earlier ones: a read sent to a frozen or cut-off
    /// master that still believes it rules waits there, and is answered (or refused) when
    /// it wakes. Each answer must hold every write acknowledged with `w` of a majority
    /// before it was sent.
    private func readLinearizable(until deadline: ContinuousClock.Instant) async {
        let inFlight = Locked(Array(repeating: 0, count: nodes))
        await withTaskGroup(of: Void.self) { group in
            while ContinuousClock.now < deadline {
                for node in 0..<nodes where inFlight.withLock({ $0[node] }) < 20 {
                    inFlight.withLock { $0[node] += 1 }
                    let before = acknowledged.withLock { $0 }
                    group.addTask {
                        defer { inFlight.withLock { $0[node] -= 1 } }
                        let reply = try? await HTTP.get(self.url(node) + "/messages?read=linearizable", timeout: .seconds(3))
                        guard let reply, reply.status == 200 else { return }
                        self.counts.withLock { $0.linearizable += 1 }
                        let read = Dictionary(Self.entries(reply), uniquingKeysWith: { first, _ in first })
                        for (seq, message) in before.sorted(by: { $0.key < $1.key }) where read[seq] != message {
                            self.violation(
                                "a linearizable read through n\(node) lacks \(message) at seq \(seq) (shows \(read[seq] ?? "nothing")), "
                                    + "acknowledged before it was sent")
                        }
                    }
                }
                try? await Task.sleep(for: .milliseconds(30))
            }
        }
    }

    private static func entries(_ reply: HTTP.Reply) -> [(seq: Int, message: String)] {
        (reply.json["messages"] as? [[String: any Sendable]] ?? []).compactMap { entry in
            guard let seq = entry["seq"] as? Int, let message = entry["message"] as? String else { return nil }
            return (seq: seq, message: message)
        }
    }
}

extension Sequence {
    /// `map` with an async transform, in order.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

import Foundation
import Synchronization

/// A real network for real processes: one network namespace per node, each with its own
/// address on a Linux bridge that only this network uses, and faults made the way a network
/// makes them: `iptables` DROP rules inside a node's namespace (packets vanish, one way or
/// both, all of them or a share), and a `tbf` qdisc (a slow link).
///
/// Needs root and `ip`, `iptables` and `tc` (`NamespaceNetwork.unavailable` says why not).
/// Names and the subnet are unique to the run (its process id), so two runs can share the
/// machine; `tearDown` (also run on deinit) deletes every namespace and the bridge, and a
/// new network first deletes those of runs whose process is gone.
final class NamespaceNetwork: Sendable {
    /// Why this machine cannot run it, or nil when it can.
    static let unavailable: String? = {
        guard getuid() == 0 else { return "needs root (network namespaces)" }
        for tool in ["/usr/sbin/ip", "/usr/sbin/iptables", "/usr/sbin/tc"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "needs \(tool) (apt-get install iproute2 iptables)"
        }
        return nil
    }()

    /// The prefix of every name this harness gives; the process id follows it.
    private static let prefix = "rl"

    let nodes: Int
    /// `rl<pid><digit>`: with a suffix at most 14 bytes (IFNAMSIZ is 15 with its end).
    private let tag: String
    private let subnet: String
    private let torn = Mutex(false)

    /// Creates the bridge and `nodes` namespaces, each with an address, and checks that the
    /// route to each goes over this bridge (never out of the machine).
    init(nodes: Int) throws {
        precondition(nodes <= 9)
        self.nodes = nodes
        Self.removeLeftovers()
        let pid = ProcessInfo.processInfo.processIdentifier
        // Unique to the run: a second run at once gets another tag and (almost surely) another
        // subnet; a subnet that is routed already is skipped.
        tag = "\(Self.prefix)\(pid)\(Int.random(in: 0..<10))"
        var chosen: String?
        for _ in 0..<50 {
            let candidate = "10.\(Int.random(in: 64...127)).\(Int.random(in: 0...255))"
            let route = (try? Self.run(["ip", "route", "show", "\(candidate).0/24"])) ?? "?"
            if route.isEmpty { chosen = candidate; break }
        }
        guard let chosen else { throw Failure("no free 10.x.y.0/24 subnet for the test network") }
        subnet = chosen
        do {
            try Self.run(["ip", "link", "add", bridge, "type", "bridge"])
            try Self.run(["ip", "addr", "add", "\(subnet).254/24", "dev", bridge])
            try Self.run(["ip", "link", "set", bridge, "up"])
            for node in 0..<nodes {
                let (namespace, outside, inside) = (self.namespace(node), "\(tag)v\(node)", "\(tag)p\(node)")
                try Self.run(["ip", "netns", "add", namespace])
                try Self.run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
                try Self.run(["ip", "link", "set", inside, "netns", namespace])
                try Self.run(["ip", "link", "set", outside, "master", bridge])
                try Self.run(["ip", "link", "set", outside, "up"])
                try Self.run(["ip", "-n", namespace, "addr", "add", "\(address(node))/24", "dev", inside])
                try Self.run(["ip", "-n", namespace, "link", "set", inside, "up"])
                try Self.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
                let route = try Self.run(["ip", "route", "get", address(node)])
                guard route.contains("dev \(bridge)") else { throw Failure("\(address(node)) is not routed over \(bridge): \(route)") }
            }
        } catch {
            tearDown()
            throw error
        }
    }

    deinit { tearDown() }

    var bridge: String { "\(tag)br" }
    func namespace(_ node: Int) -> String { "\(tag)n\(node)" }
    func address(_ node: Int) -> String { "\(subnet).\(node + 1)" }
    /// The test process's own address on the bridge (clients and readers come from it).
    var clientAddress: String { "\(subnet).254" }

    /// The command that runs `arguments` inside node `node`'s namespace.
    func inside(_ node: Int) -> [String] { ["/usr/sbin/ip", "netns", "exec", namespace(node)] }

    // MARK: Faults

    /// Node `to` no longer hears node `from` (or hears only a `1 - loss` share of it).
    func cut(from: Int, to: Int, loss: Double = 1) throws {
        var rule = ["-A", "INPUT", "-s", address(from)]
        if loss < 1 { rule += ["-m", "statistic", "--mode", "random", "--probability", String(format: "%.2f", loss)] }
        try iptables(to, rule + ["-j", "DROP"])
    }

    /// Nodes `a` and `b` no longer hear each other.
    func cut(_ a: Int, _ b: Int) throws {
        try cut(from: a, to: b)
        try cut(from: b, to: a)
    }

    /// Node `node` hears no other node, and no other node hears it (clients still reach it).
    func isolate(_ node: Int) throws {
        for other in 0..<nodes where other != node { try cut(node, other) }
    }

    /// No node of `side` hears a node outside it, nor the other way.
    func split(_ side: Set<Int>) throws {
        for a in side { for b in 0..<nodes where !side.contains(b) { try cut(a, b) } }
    }

    /// Node `node` sends at most `kbit` kilobits a second.
    func slow(_ node: Int, kbit: Int) throws {
        try Self.run(["tc", "-n", namespace(node), "qdisc", "replace", "dev", "\(tag)p\(node)", "root", "tbf", "rate", "\(kbit)kbit",
                      "burst", "16kbit", "latency", "500ms"])
    }

    /// Every link carries everything again.
    func heal() throws {
        for node in 0..<nodes {
            try iptables(node, ["-F", "INPUT"])
            _ = try? Self.run(["tc", "-n", namespace(node), "qdisc", "del", "dev", "\(tag)p\(node)", "root"])
        }
    }

    private func iptables(_ node: Int, _ rule: [String]) throws {
        try Self.run(["ip", "netns", "exec", namespace(node), "iptables", "-w"] + rule)
    }

    // MARK: Cleaning up

    /// Deletes the namespaces (their ends of the veth pairs go with them) and the bridge.
    func tearDown() {
        guard torn.withLock({ torn in defer { torn = true }; return !torn }) else { return }
        for node in 0..<nodes { _ = try? Self.run(["ip", "netns", "del", namespace(node)]) }
        for node in 0..<nodes { _ = try? Self.run(["ip", "link", "del", "\(tag)v\(node)"]) }
        _ = try? Self.run(["ip", "link", "del", bridge])
    }

    /// Namespaces and bridges of earlier runs whose process is gone (a run killed before it
    /// could clean up): `rl<pid><digit>…`.
    private static func removeLeftovers() {
        let namespaces = ((try? run(["ip", "netns", "list"])) ?? "").split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
        let links = ((try? run(["ip", "-o", "link", "show", "type", "bridge"])) ?? "").split(separator: "\n").compactMap {
            $0.split(separator: ":").dropFirst().first.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        for name in namespaces + links where name.hasPrefix(prefix) {
            let digits = name.dropFirst(prefix.count).prefix { $0.isNumber }
            guard digits.count >= 2, let pid = Int32(digits.dropLast()), kill(pid, 0) != 0, errno == ESRCH else { continue }
            if namespaces.contains(name) { _ = try? run(["ip", "netns", "del", name]) } else { _ = try? run(["ip", "link", "del", name]) }
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs a command (`ip`, `iptables`, `tc` from /usr/sbin, or a full path) and returns its
    /// output; throws with its error output when it fails.
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0].hasPrefix("/") ? arguments[0] : "/usr/sbin/" + arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let problem = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure("\(arguments.joined(separator: " ")) failed: \(String(decoding: problem, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

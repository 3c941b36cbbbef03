import ArgumentParser
import Logging
import ReplogCore
import ReplogNode

struct Master: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the master: it orders appends and replicates them to the secondaries.",
        discussion: "Prints `listening on http://HOST:PORT` once it accepts requests.")

    @Option(help: "Address to bind. Env: REPLOG_HOST.")
    var host: String = Environment.string("REPLOG_HOST") ?? "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one). Env: REPLOG_PORT.")
    var port: Int = Environment.int("REPLOG_PORT") ?? 5000

    @Option(name: .customLong("secondary"), help: "Base URL of a secondary; repeat for each. Env: REPLOG_SECONDARIES (comma-separated).")
    var secondaries: [String] = Environment.list("REPLOG_SECONDARIES")

    @Option(help: "How often to probe each secondary. Env: REPLOG_HEARTBEAT_INTERVAL.")
    var heartbeatInterval: DurationArgument = Environment.duration("REPLOG_HEARTBEAT_INTERVAL") ?? DurationArgument("1s")

    @Option(help: "Missed heartbeats before a secondary is suspected. Env: REPLOG_SUSPECT_AFTER.")
    var suspectAfter: Int = Environment.int("REPLOG_SUSPECT_AFTER") ?? 2

    @Option(help: "Missed heartbeats before a secondary is unhealthy (and stops counting for quorum). Env: REPLOG_UNHEALTHY_AFTER.")
    var unhealthyAfter: Int = Environment.int("REPLOG_UNHEALTHY_AFTER") ?? 4

    @Option(help: "Time one replication request may take before it is retried; keep it above any secondary's --delay. Env: REPLOG_REPLICATION_TIMEOUT.")
    var replicationTimeout: DurationArgument = Environment.duration("REPLOG_REPLICATION_TIMEOUT") ?? DurationArgument("30s")

    @Option(help: "Largest accepted request body in bytes. Env: REPLOG_MAX_BODY.")
    var maxBody: Int = Environment.int("REPLOG_MAX_BODY") ?? 1 << 20

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard unhealthyAfter > suspectAfter, suspectAfter >= 1 else {
            throw ValidationError("need 1 <= --suspect-after < --unhealthy-after")
        }
        for url in secondaries where !(url.hasPrefix("http://") || url.hasPrefix("https://")) {
            throw ValidationError("--secondary must be a URL like http://127.0.0.1:5001, got \(url)")
        }
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "replog.master")
        let settings = MasterSettings(
            secondaries: secondaries.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 },
            heartbeatInterval: heartbeatInterval.duration,
            healthThresholds: .init(suspectAfterMisses: suspectAfter, unhealthyAfterMisses: unhealthyAfter),
            replicationTimeout: replicationTimeout.duration)
        let master = ReplogNode.Master(settings: settings, transport: HTTPTransport(), logger: logger)
        let host = host
        let app = NodeApplications.master(master, host: host, port: port, maxBodyBytes: maxBody, logger: logger) { port in
            announce("listening on http://\(host):\(port)")
        }
        try await NodeApplications.run([app, master], logger: logger)
    }
}

struct Secondary: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a secondary: it stores what the master replicates and lists it in order.",
        discussion: "Prints `listening on http://HOST:PORT` once it accepts requests.")

    @Option(help: "Address to bind. Env: REPLOG_HOST.")
    var host: String = Environment.string("REPLOG_HOST") ?? "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one). Env: REPLOG_PORT.")
    var port: Int = Environment.int("REPLOG_PORT") ?? 5001

    @Option(help: "Hold each replication request this long before storing and acknowledging it, e.g. 2s. Env: REPLOG_DELAY.")
    var delay: DurationArgument = Environment.duration("REPLOG_DELAY") ?? DurationArgument("0")

    @Option(help: "Probability (0...1) of answering 500 after storing a replication request. Env: REPLOG_ERROR_RATE.")
    var errorRate: Double = Environment.double("REPLOG_ERROR_RATE") ?? 0

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (0...1).contains(errorRate) else { throw ValidationError("--error-rate must be between 0 and 1") }
    }

    func run() async throws {
        let logger = logging.bootstrap(label: "replog.secondary")
        let replica = SecondaryReplica(settings: SecondarySettings(delay: delay.duration, errorRate: errorRate))
        logger.info("secondary started", metadata: [
            "replog.incarnation": "\(replica.incarnation)", "replog.delay": "\(delay)", "replog.errorRate": "\(errorRate)",
        ])
        let host = host
        let app = NodeApplications.secondary(replica, host: host, port: port, logger: logger) { port in
            announce("listening on http://\(host):\(port)")
        }
        try await NodeApplications.run([app], logger: logger)
    }
}

import ArgumentParser
import Foundation
import Synchronization
import Logging
import ReplogCore
import ReplogStorage
import ReplogNode

/// Where a node keeps its log.
/// `--retain-*` and `--segment-bytes`: how much of its log a node keeps (every node, and
/// `replog cluster`, which passes them on).
struct RetentionOptions: ParsableArguments {
    @Option(name: .customLong("retain-messages"), help: "Keep at least the newest N messages and drop older whole segments (default: keep everything). Env: REPLOG_RETAIN_MESSAGES.")
    var retainMessagesFlag: Int?

    @Option(name: .customLong("retain-bytes"), help: "Keep at least this much of the log, e.g. 10GiB, and drop older whole segments. Env: REPLOG_RETAIN_BYTES.")
    var retainBytesFlag: ByteSizeArgument?

    @Option(name: .customLong("retain-age"), help: "Drop whole segments whose newest message is older than this, e.g. 7d. Env: REPLOG_RETAIN_AGE.")
    var retainAgeFlag: DurationArgument?

    @Option(name: .customLong("segment-bytes"), help: "Where the log starts a new segment (what retention drops whole), e.g. 64MiB. Env: REPLOG_SEGMENT_BYTES.")
    var segmentBytesFlag: ByteSizeArgument?

    var segmentBytes: Int { (segmentBytesFlag ?? Environment.size("REPLOG_SEGMENT_BYTES"))?.bytes ?? 64 << 20 }

    /// What `--retain-*` keep (everything by default).
    var policy: RetentionPolicy {
        RetentionPolicy(
            messages: retainMessagesFlag ?? Environment.int("REPLOG_RETAIN_MESSAGES"),
            bytes: (retainBytesFlag ?? Environment.size("REPLOG_RETAIN_BYTES"))?.bytes,
            age: (retainAgeFlag ?? Environment.duration("REPLOG_RETAIN_AGE"))?.duration)
    }

    func validate() throws {
        if let messages = policy.messages, messages < 1 { throw ValidationError("--retain-messages must be 1 or more") }
        if let age = policy.age, age <= .zero { throw ValidationError("--retain-age must be longer than 0") }
    }

    /// The same settings as node flags, for `replog cluster`'s children (which do not
    /// inherit `REPLOG_` variables).
    var childArguments: [String] {
        var arguments = ["--segment-bytes", "\(segmentBytes)"]
        if let messages = policy.messages { arguments += ["--retain-messages", "\(messages)"] }
        if let bytes = policy.bytes { arguments += ["--retain-bytes", "\(bytes)"] }
        if let age = policy.age { arguments += ["--retain-age", "\(age.components.seconds)s"] }
        return arguments
    }
}

struct StorageOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Keep the log in this folder and recover it after a crash; without it the log lives in memory. Env: REPLOG_DATA_DIR.")
    var dataDirFlag: String?

    var dataDir: String? { dataDirFlag ?? Environment.string("REPLOG_DATA_DIR") }

    @Option(help: "always (fsync before acknowledging, batched across appends), interval (every 100 ms) or never. Env: REPLOG_FSYNC.")
    var fsync: FsyncPolicy = Environment.string("REPLOG_FSYNC").flatMap(FsyncPolicy.init(rawValue:)) ?? .always

    @Option(name: .customLong("fail-fsync-after"), help: "Fault injection: let the first N fsyncs succeed and fail every later one with EIO, to watch the node stop making anything durable and say why (needs --data-dir). Env: REPLOG_FAIL_FSYNC_AFTER.")
    var failFsyncAfterFlag: Int?

    var failFsyncAfter: Int? { failFsyncAfterFlag ?? Environment.int("REPLOG_FAIL_FSYNC_AFTER") }

    @OptionGroup var retain: RetentionOptions

    var segmentBytes: Int { retain.segmentBytes }
    var retention: RetentionPolicy { retain.policy }

    func validate() throws {
        guard let failFsyncAfter else { return }
        guard failFsyncAfter >= 0 else { throw ValidationError("--fail-fsync-after must be 0 or more") }
        guard dataDir != nil else { throw ValidationError("--fail-fsync-after needs --data-dir: a log in memory is never fsynced") }
    }

    /// The fsync call, failing after `failFsyncAfter` calls when asked to.
    private var syncFile: @Sendable (Int32) -> Int32 {
        guard let failFsyncAfter else { return FileLogStore.systemFsync }
        let calls = Atomic(0)
        return { descriptor in
            guard calls.add(1, ordering: .relaxed).newValue > failFsyncAfter else { return FileLogStore.systemFsync(descriptor) }
            errno = EIO
            return -1
        }
    }

    /// Opens the data dir and recovers its log, or fails with a one-line reason.
    func open(role: String, logger: Logger) throws -> (store: any LogStore, directory: DataDirectory?) {
        guard let dataDir else {
            logger.info("log kept in memory (no --data-dir): a restart starts empty")
            return (InMemoryLogStore(segmentBytes: segmentBytes), nil)
        }
        do {
            let directory = try DataDirectory(path: dataDir, role: role)
            let started = ContinuousClock.now
            let store = try FileLogStore(directory: directory.url, options: .init(segmentSize: segmentBytes, syncFile: syncFile))
            let recoveryTime = ContinuousClock.now - started
            let metadata: Logger.Metadata = [
                "replog.dataDir": "\(dataDir)", "replog.entries": "\(store.recovery.entries)",
                "replog.segments": "\(store.recovery.segments)", "replog.fsync": "\(fsync)",
                "replog.recovery.ms": "\(recoveryTime.milliseconds)",
            ]
            if let problem = store.recovery.problem {
                logger.warning("log recovered after cutting a damaged tail", metadata: metadata.merging([
                    "replog.problem": "\(problem)", "replog.truncatedBytes": "\(store.recovery.truncatedBytes)",
                    "replog.removedSegments": "\(store.recovery.removedSegments.joined(separator: ","))",
                ]) { $1 })
            } else {
                logger.info("log recovered", metadata: metadata)
            }
            return (store, directory)
        } catch let problem as DataDirectory.Problem {
            throw fail(problem.description)
        } catch {
            throw fail("data dir \(dataDir): \(error)")
        }
    }
}

extension FsyncPolicy: ExpressibleByArgument {}

/// The secret that node-to-node requests prove (HMAC), from a flag, the environment or a file.
struct SecretOptions: ParsableArguments {
    @Option(name: .customLong("cluster-secret"), help: "Secret shared by every node; node-to-node requests without proof of it get 401. Visible in `ps`: prefer the file or REPLOG_CLUSTER_SECRET. Env: REPLOG_CLUSTER_SECRET.")
    var secretFlag: String?

    @Option(name: .customLong("cluster-secret-file"), help: "Read the cluster secret from this file (Docker and Kubernetes secrets). Env: REPLOG_CLUSTER_SECRET_FILE.")
    var secretFile: String?

    @Flag(help: "Start without a cluster secret although --host is not a loopback address: anyone who reaches the port can replicate into this node. Env: REPLOG_INSECURE=true.")
    var insecure = Environment.bool("REPLOG_INSECURE") ?? false

    /// The secret for a node bound to `host`, or nil when none is set; refuses to go on
    /// without one where other machines can reach the node (`ClusterSecret.protectedModeRefusal`).
    func secret(bindingTo host: String) throws -> ClusterSecret? {
        let secret = try secret()
        if let refusal = ClusterSecret.protectedModeRefusal(host: host, hasSecret: secret != nil, insecure: insecure) {
            throw fail(refusal, code: 64)  // EX_USAGE, as for other settings that cannot work
        }
        return secret
    }

    /// The secret, or nil when none is set.
    func secret() throws -> ClusterSecret? {
        let text: String?
        if let file = secretFile ?? Environment.string("REPLOG_CLUSTER_SECRET_FILE") {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw fail("cannot read the cluster secret file \(file)")
            }
            text = contents.trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            text = secretFlag ?? Environment.string("REPLOG_CLUSTER_SECRET")
        }
        guard let text else { return nil }
        // Never echo the secret: not in errors, logs, /health or /metrics.
        guard let secret = ClusterSecret(text) else { throw fail("the cluster secret must be at least 16 bytes long") }
        return secret
    }
}

/// Client authentication (off by default): appends, and if chosen reads, need a token.
struct ClientTokenOptions: ParsableArguments {
    @Option(name: .customLong("client-token"), help: "A bearer token clients must send to append (Authorization: Bearer …); repeat for several. Env: REPLOG_CLIENT_TOKEN (comma-separated).")
    var tokens: [String] = Environment.list("REPLOG_CLIENT_TOKEN")

    @Flag(help: "Reading the log (GET /messages, /messages/stream) needs a client token too. Env: REPLOG_CLIENT_TOKEN_READS=true.")
    var clientTokenReads = Environment.bool("REPLOG_CLIENT_TOKEN_READS") ?? false

    func validate() throws {
        if clientTokenReads, tokens.isEmpty { throw ValidationError("--client-token-reads needs at least one --client-token") }
        if tokens.contains(where: { $0.utf8.count < 16 }) { throw ValidationError("a client token must be at least 16 bytes long") }
    }

    var clientTokens: ClientTokens? { ClientTokens(tokens, protectsReads: clientTokenReads) }
}

/// Automatic failover (issue 15): the secondaries elect a new master when it dies.
struct FailoverOptions: ParsableArguments {
    @Option(help: "How long a secondary waits without hearing from the master before it stands for election: a random time between this and twice this. Env: REPLOG_ELECTION_TIMEOUT.")
    var electionTimeout: DurationArgument = Environment.duration("REPLOG_ELECTION_TIMEOUT") ?? DurationArgument("1s")

    var electionTimeouts: ClosedRange<Duration> { electionTimeout.duration...(electionTimeout.duration * 2) }

    func validate() throws {
        guard electionTimeout.duration >= .milliseconds(50) else { throw ValidationError("--election-timeout must be at least 50ms") }
    }
}

/// Set by `replog cluster` on the nodes it starts.
struct ParentOptions: ParsableArguments {
    @Flag(help: .hidden)
    var stopOnStdinEOF = false

    var watch: ParentWatch? { stopOnStdinEOF ? ParentWatch() : nil }
}

struct MasterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master",
        abstract: "Run the master: it orders appends and replicates them to the secondaries.",
        discussion: "Prints `listening on http://HOST:PORT` once it accepts requests.")

    @Option(help: "Address to bind. Env: REPLOG_HOST.")
    var host: String = Environment.string("REPLOG_HOST") ?? "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one). Env: REPLOG_PORT.")
    var port: Int = Environment.int("REPLOG_PORT") ?? 5000

    @Option(name: .customLong("secondary"), help: "Base URL of a secondary (plain http://HOST:PORT); repeat for each. Env: REPLOG_SECONDARIES (comma-separated).")
    var secondaries: [String] = Environment.list("REPLOG_SECONDARIES")

    @Option(help: "How often to probe each secondary (default 1s, or 250ms with --failover, well below the election timeout). Env: REPLOG_HEARTBEAT_INTERVAL.")
    var heartbeatInterval: DurationArgument? = Environment.duration("REPLOG_HEARTBEAT_INTERVAL")

    @Flag(help: "Automatic failover: when this master dies, the secondaries elect a new one (needs --data-dir on every node). Env: REPLOG_FAILOVER=true.")
    var failover = Environment.bool("REPLOG_FAILOVER") ?? false

    @Option(help: "This node's URL as the other nodes reach it (default http://HOST:PORT); with --failover, where clients are sent. Env: REPLOG_ADVERTISE.")
    var advertise: String? = Environment.string("REPLOG_ADVERTISE")

    @OptionGroup var election: FailoverOptions

    @Option(help: "Missed heartbeats before a secondary is suspected. Env: REPLOG_SUSPECT_AFTER.")
    var suspectAfter: Int = Environment.int("REPLOG_SUSPECT_AFTER") ?? 2

    @Option(help: "Missed heartbeats before a secondary is unhealthy (and stops counting for quorum). Env: REPLOG_UNHEALTHY_AFTER.")
    var unhealthyAfter: Int = Environment.int("REPLOG_UNHEALTHY_AFTER") ?? 4

    @Option(help: "Time one replication request may take before it is retried; keep it above any secondary's --delay. Env: REPLOG_REPLICATION_TIMEOUT.")
    var replicationTimeout: DurationArgument = Environment.duration("REPLOG_REPLICATION_TIMEOUT") ?? DurationArgument("30s")

    @Option(help: "Hold a small replication batch that no client waits for up to this long, to send it with the next appends (0 = never). Env: REPLOG_REPLICATION_LINGER.")
    var replicationLinger: DurationArgument = Environment.duration("REPLOG_REPLICATION_LINGER") ?? DurationArgument("2ms")

    @Option(help: "Largest accepted request body in bytes. Env: REPLOG_MAX_BODY.")
    var maxBody: Int = Environment.int("REPLOG_MAX_BODY") ?? 1 << 20

    @Option(help: "Longest a long poll (GET /messages?wait=) waits, whatever it asks for. Env: REPLOG_MAX_LONG_POLL.")
    var maxLongPoll: DurationArgument = Environment.duration("REPLOG_MAX_LONG_POLL") ?? DurationArgument("60s")

    @OptionGroup var storage: StorageOptions
    @OptionGroup var secret: SecretOptions
    @OptionGroup var clients: ClientTokenOptions
    @OptionGroup var logging: LoggingOptions
    @OptionGroup var parent: ParentOptions

    func validate() throws {
        guard (1...maxAppendBodyBytes).contains(maxBody) else {
            throw ValidationError("--max-body must be 1 to \(maxAppendBodyBytes) bytes (32 MiB), so that every message fits a replication request")
        }
        guard unhealthyAfter > suspectAfter, suspectAfter >= 1 else {
            throw ValidationError("need 1 <= --suspect-after < --unhealthy-after")
        }
        // Nodes serve plain HTTP; replication speaks nothing else (no TLS).
        for url in secondaries where HTTPBaseURL(url) == nil {
            throw ValidationError("--secondary must be a URL like http://127.0.0.1:5001, got \(url)")
        }
        if let advertise, HTTPBaseURL(advertise) == nil {
            throw ValidationError("--advertise must be a URL like http://10.0.0.5:5000, got \(advertise)")
        }
        if failover, port == 0, advertise == nil {
            throw ValidationError("--failover needs a fixed --port (or --advertise): the secondaries must know where to find this node")
        }
        if failover, storage.dataDir == nil {
            throw ValidationError("--failover needs --data-dir: a node that forgets its log and its votes cannot vote safely")
        }
    }

    func run() async throws {
        let clusterSecret = try secret.secret(bindingTo: host)  // before opening anything
        let logger = logging.bootstrap(label: "replog.master")
        let metrics = logging.bootstrapMetrics()
        let settings = MasterSettings(
            secondaries: secondaries.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 },
            heartbeatInterval: heartbeatInterval?.duration ?? (failover ? .milliseconds(250) : .seconds(1)),
            healthThresholds: .init(suspectAfterMisses: suspectAfter, unhealthyAfterMisses: unhealthyAfter),
            replicationTimeout: replicationTimeout.duration, replicationLinger: replicationLinger.duration,
            maxLongPoll: maxLongPoll.duration)
        let (store, directory) = try storage.open(role: "master", logger: logger)
        var node = Node.Settings.withoutFailover(master: settings)
        if failover {
            let me = advertise ?? "http://\(host):\(port)"
            node = Node.Settings(
                me: me, members: [me] + settings.secondaries, electionTimeout: election.electionTimeouts, master: settings,
                canVote: true, bootstrap: true)
        }
        try await runNode(
            node, store: store, directory: directory, fsync: storage.fsync, retention: storage.retention, secret: clusterSecret, host: host,
            port: port, maxBody: maxBody, clientTokens: clients.clientTokens, stopWhenDone: parent.watch, logger: logger, metrics: metrics)
    }
}

struct SecondaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secondary",
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

    @Option(help: "Longest a long poll (GET /messages?wait=) waits, whatever it asks for. Env: REPLOG_MAX_LONG_POLL.")
    var maxLongPoll: DurationArgument = Environment.duration("REPLOG_MAX_LONG_POLL") ?? DurationArgument("60s")

    @Option(help: "Once elected master (failover): how often to probe the other nodes. Env: REPLOG_HEARTBEAT_INTERVAL.")
    var heartbeatInterval: DurationArgument = Environment.duration("REPLOG_HEARTBEAT_INTERVAL") ?? DurationArgument("250ms")

    @OptionGroup var election: FailoverOptions
    @OptionGroup var storage: StorageOptions
    @OptionGroup var secret: SecretOptions
    @OptionGroup var clients: ClientTokenOptions
    @OptionGroup var logging: LoggingOptions
    @OptionGroup var parent: ParentOptions

    func validate() throws {
        guard (0...1).contains(errorRate) else { throw ValidationError("--error-rate must be between 0 and 1") }
    }

    func run() async throws {
        let clusterSecret = try secret.secret(bindingTo: host)  // before opening anything
        let logger = logging.bootstrap(label: "replog.secondary")
        let metrics = logging.bootstrapMetrics()
        let (store, directory) = try storage.open(role: "secondary", logger: logger)
        let secondarySettings = SecondarySettings(delay: delay.duration, errorRate: errorRate, maxLongPoll: maxLongPoll.duration)
        logger.info("secondary started", metadata: ["replog.delay": "\(delay)", "replog.errorRate": "\(errorRate)"])
        // It learns the cluster (and, with failover, its epoch) from the master's requests.
        try await runNode(
            Node.Settings(
                me: nil, members: [], electionTimeout: election.electionTimeouts,
                master: MasterSettings(secondaries: [], heartbeatInterval: heartbeatInterval.duration, maxLongPoll: maxLongPoll.duration),
                secondary: secondarySettings, canVote: directory != nil, bootstrap: false),
            store: store, directory: directory, fsync: storage.fsync, retention: storage.retention, secret: clusterSecret, host: host,
            port: port, maxBody: 1 << 20, clientTokens: clients.clientTokens, stopWhenDone: parent.watch, logger: logger, metrics: metrics)
    }
}

/// Runs a node (`Node`: every process runs one) behind its HTTP server until it is stopped.
func runNode(
    _ settings: Node.Settings, store: any LogStore, directory: DataDirectory?, fsync: FsyncPolicy, retention: RetentionPolicy,
    secret: ClusterSecret?,
    host: String, port: Int, maxBody: Int, clientTokens: ClientTokens?, stopWhenDone: ParentWatch?, logger: Logger,
    metrics: (@Sendable () -> String)?
) async throws {
    let transport = HTTPTransport(secret: secret)
    let commit = GroupCommit(store: store, policy: fsync, logger: logger)
    let node: Node
    do {
        node = try Node(
            settings: settings, store: store, commit: commit, directory: directory, transport: transport, stamps: transport.stamps,
            logger: logger)
    } catch {
        throw fail(error.description)
    }
    let app = NodeApplications.node(
        node, host: host, port: port, maxBodyBytes: maxBody, secret: secret, logger: logger, metrics: metrics, clientTokens: clientTokens
    ) { port in
        // The node started as master says it listens once it takes appends (a moment after
        // its election), or after a few election timeouts without a majority, so that the
        // first append of a script does not meet an election.
        if settings.bootstrap { await node.waitUntilSettled(upTo: settings.electionTimeout.upperBound * 3) }
        announce("listening on http://\(host):\(port)")
    }
    // The data dir's lock is held until the node has stopped.
    defer { withExtendedLifetime(directory) {} }
    let retentionService = RetentionService(store: store, policy: retention, logger: logger)
    try await NodeApplications.run([commit, retentionService, app, node], stopWhenDone: stopWhenDone, logger: logger)
}

import ReplogCore

/// Everything that shapes a master's behaviour; the `replog master` flags map onto it.
public struct MasterSettings: Sendable {
    /// Base URLs (or, with the in-memory transport, names) of the secondaries.
    public var secondaries: [String]
    /// How often the master probes each secondary.
    public var heartbeatInterval: Duration
    /// How long a probe may take before it counts as missed.
    public var heartbeatTimeout: Duration
    /// Missed heartbeats before `suspected` and before `unhealthy`.
    public var healthThresholds: PeerHealth.Thresholds
    /// How long one replication request may take before it is retried.
    public var replicationTimeout: Duration
    /// Most entries sent to a secondary in one request.
    public var maxBatchSize: Int
    /// Most bytes (as records) in one request, so a backlog of large messages still goes
    /// through in requests a secondary accepts; a single larger entry travels alone.
    public var maxBatchBytes: Int
    /// Replication requests one secondary may have in flight at once (pipelining).
    public var maxInFlight: Int
    /// How long a stream may hold back a small batch that no client is waiting for, to send
    /// it together with what comes next (`.zero` sends at once). Appends with `w >= 2`
    /// are never held back: their arrival ends the wait.
    public var replicationLinger: Duration
    /// Back-off between failed replication attempts.
    public var retryPolicy: RetryPolicy
    /// How many recent client `id`s are remembered for idempotent retries.
    public var idempotencyWindow: Int
    /// Longest a long poll (`GET /messages?wait=`) waits here, whatever it asks for.
    public var maxLongPoll: Duration

    public init(
        secondaries: [String],
        heartbeatInterval: Duration = .seconds(1),
        heartbeatTimeout: Duration? = nil,
        healthThresholds: PeerHealth.Thresholds = PeerHealth.Thresholds(),
        replicationTimeout: Duration = .seconds(30),
        maxBatchSize: Int = 1_000,
        maxBatchBytes: Int = 4 << 20,
        maxInFlight: Int = 4,
        replicationLinger: Duration = .zero,
        retryPolicy: RetryPolicy = RetryPolicy(),
        idempotencyWindow: Int = IdempotencyWindow.defaultCapacity,
        maxLongPoll: Duration = .seconds(60)
    ) {
        self.secondaries = secondaries
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout ?? heartbeatInterval
        self.healthThresholds = healthThresholds
        self.replicationTimeout = replicationTimeout
        self.maxBatchSize = maxBatchSize
        self.maxBatchBytes = maxBatchBytes
        self.maxInFlight = maxInFlight
        self.replicationLinger = replicationLinger
        self.retryPolicy = retryPolicy
        self.idempotencyWindow = idempotencyWindow
        self.maxLongPoll = maxLongPoll
    }

    /// The master plus its secondaries.
    public var clusterSize: Int { 1 + secondaries.count }

    /// The part of these settings that shapes the protocol (`ReplicationInstance`).
    var protocolSettings: ReplicationInstance.Settings {
        ReplicationInstance.Settings(
            secondaries: secondaries, healthThresholds: healthThresholds, maxBatchSize: maxBatchSize,
            maxInFlight: maxInFlight, replicationLinger: replicationLinger, idempotencyWindow: idempotencyWindow)
    }
}

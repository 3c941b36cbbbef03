import CoreMetrics
import Metrics
import ReplogCore

/// The master's metrics, created once (as swift-metrics recommends) with low-cardinality
/// labels only: `w`, `outcome`, the configured secondary's URL, its status.
///
/// Names carry their unit, as Prometheus expects: `replog_append_duration_seconds`,
/// `replog_replication_lag_entries`. The executable decides where they go (`/metrics`);
/// tests hand in their own factory.
final class MasterMetrics: Sendable {
    enum Outcome: String, CaseIterable {
        case ok, badRequest = "bad_request", readOnly = "read_only", timeout, shuttingDown = "shutting_down", storeFailed = "store_failed"
    }

    struct Peer: Sendable {
        let replicationDuration: Timer
        let batchEntries: Recorder
        let retries: Counter
        let lag: Gauge
        /// 1 while the master takes the secondary for diverged (another log than its own).
        let diverged: Gauge
        let status: [PeerStatus: Gauge]
    }

    private let appends: [Outcome: Counter]
    private let appendDuration: [Int: Timer]
    let peers: [String: Peer]
    let readOnly: Gauge
    let lastSeq: Gauge

    init(settings: MasterSettings, factory: any MetricsFactory) {
        appends = Dictionary(uniqueKeysWithValues: Outcome.allCases.map {
            ($0, Counter(label: "replog_appends_total", dimensions: [("outcome", $0.rawValue)], factory: factory))
        })
        appendDuration = Dictionary(uniqueKeysWithValues: (1...settings.clusterSize).map {
            ($0, Timer(label: "replog_append_duration_seconds", dimensions: [("w", "\($0)")], factory: factory))
        })
        peers = Dictionary(uniqueKeysWithValues: settings.secondaries.map { url in
            let peer = [("peer", url)]
            return (url, Peer(
                replicationDuration: Timer(label: "replog_replication_duration_seconds", dimensions: peer, factory: factory),
                batchEntries: Recorder(label: "replog_replication_batch_entries", dimensions: peer, factory: factory),
                retries: Counter(label: "replog_replication_retries_total", dimensions: peer, factory: factory),
                lag: Gauge(label: "replog_replication_lag_entries", dimensions: peer, factory: factory),
                diverged: Gauge(label: "replog_secondary_diverged", dimensions: peer, factory: factory),
                status: Dictionary(uniqueKeysWithValues: PeerStatus.allCases.map { status in
                    (status, Gauge(label: "replog_peer_status", dimensions: peer + [("status", status.rawValue)], factory: factory))
                })))
        })
        readOnly = Gauge(label: "replog_read_only", factory: factory)
        lastSeq = Gauge(label: "replog_log_last_seq", factory: factory)
        for peer in peers.values { peer.show(.healthy) }
        readOnly.record(0)
    }

    func recordAppend(_ outcome: Outcome, w: Int?, duration: Duration) {
        appends[outcome]?.increment()
        if outcome == .ok, let w { appendDuration[w]?.recordNanoseconds(duration.nanoseconds) }
    }
}

extension MasterMetrics.Peer {
    /// Sets the status gauge of the current status to 1 and the others to 0.
    func show(_ current: PeerStatus) {
        for (status, gauge) in status { gauge.record(status == current ? 1 : 0) }
    }
}

/// A secondary's metrics.
final class SecondaryMetrics: Sendable {
    let storedEntries: Counter
    let duplicateEntries: Counter
    let injectedFailures: Counter
    let lastSeq: Gauge

    init(factory: any MetricsFactory) {
        storedEntries = Counter(label: "replog_replica_stored_entries_total", factory: factory)
        duplicateEntries = Counter(label: "replog_replica_duplicate_entries_total", factory: factory)
        injectedFailures = Counter(label: "replog_replica_injected_failures_total", factory: factory)
        lastSeq = Gauge(label: "replog_log_last_seq", factory: factory)
    }
}

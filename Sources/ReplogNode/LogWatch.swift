import CoreMetrics
import ReplogCore
import Synchronization

/// What a node shows its readers, and wakes the readers that wait for more
/// (`GET /messages?wait=`, `/messages/stream`).
///
/// Two ends: the durable prefix (`?read=local`: a reader never sees what a crash could take
/// back), and the commit point (`committed`, the default: a reader never sees what a
/// failover could take back). Without failover nothing is ever cut from a master's durable
/// log, so the two are one; a node of a cluster with failover follows the commit point its
/// master sends (`followCommitPoint`).
///
/// Readers wait on the node's clock, so tests drive their timeouts. A reader that leaves
/// (its connection closed, its task cancelled) is forgotten at once: nothing here grows
/// with readers that never come back.
public final class LogWatch: Sendable {
    private struct State {
        var durable: Int
        /// The commit point this node learned; nil: every durable entry counts as committed.
        var commitPoint: Int?
        var waiters: [Int: (seq: Int, level: ReadLevel, continuation: CheckedContinuation<Void, Never>)] = [:]
        var nextID = 0

        var committed: Int { min(durable, commitPoint ?? durable) }

        func end(for level: ReadLevel) -> Int { level == .local ? durable : committed }
    }

    private let state: Mutex<State>
    /// `replog_commit_seq`: the node's commit point.
    private let commitGauge: Gauge?

    public init(durable: Int, metricsFactory: (any MetricsFactory)? = nil) {
        state = Mutex(State(durable: durable))
        commitGauge = metricsFactory.map { Gauge(label: "replog_commit_seq", factory: $0) }
        commitGauge?.record(durable)
    }

    /// The last seq a read at `level` may show.
    public func end(for level: ReadLevel) -> Int { state.withLock { $0.end(for: level) } }

    /// `limit` cut so that a read from `seq` ends where `level` ends (a store read then never
    /// goes past it); 0 when nothing from `seq` on is shown yet.
    func limit(_ limit: Int, from seq: Int, level: ReadLevel) -> Int {
        guard level != .local else { return limit }
        return max(0, min(limit, end(for: level) - seq + 1))
    }

    /// The node's commit point: the highest seq it knows no failover can replace (kept, so
    /// it never goes back, not across restarts either). A committed read shows the entries up
    /// to it that the node holds durably; a node that lags or started its log again holds
    /// fewer, and its readers wait for them.
    public var commitSeq: Int { state.withLock { $0.commitPoint ?? $0.durable } }

    /// The durable prefix now ends at `seq` (or later); wakes everyone waiting for it.
    func advanced(to seq: Int) {
        change { state in
            guard seq > state.durable else { return false }
            state.durable = seq
            return true
        }
    }

    /// The log was cut after `seq` (failover): the durable prefix ends there again, so that
    /// readers wait for the seqs that come back instead of finding them "there" and empty.
    func cut(to seq: Int) {
        state.withLock { $0.durable = min($0.durable, seq) }
    }

    /// From now on committed reads end at the commit point this node learns, not at its
    /// durable prefix (a cluster with failover).
    func followCommitPoint() {
        state.withLock { $0.commitPoint = $0.commitPoint ?? 0 }
    }

    /// The node learned (and kept) that everything up to `seq` is committed.
    func committed(to seq: Int) {
        change { state in
            guard seq > state.commitPoint ?? 0 else { return false }
            state.commitPoint = seq
            return true
        }
    }

    private func change(_ body: (inout State) -> Bool) {
        let (woken, commit) = state.withLock { state -> ([CheckedContinuation<Void, Never>], Int?) in
            guard body(&state) else { return ([], nil) }
            // In the order they came (a simulation replays one order).
            let ready = state.waiters.filter { $0.value.seq <= state.end(for: $0.value.level) }.keys.sorted()
            return (ready.compactMap { state.waiters.removeValue(forKey: $0)?.continuation }, state.commitPoint ?? state.durable)
        }
        if let commit { commitGauge?.record(commit) }
        for continuation in woken { continuation.resume() }
    }

    /// Returns once a read at `level` can show `seq`, after `timeout` on `clock`, or when
    /// the task is cancelled, whichever comes first.
    func wait(for seq: Int, level: ReadLevel = .local, upTo timeout: Duration, on clock: any NodeClock) async {
        // Shown already (an append's commit point, most reads): no timer, no child tasks.
        if end(for: level) >= seq { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitUntilShown(seq, level: level) }
            group.addTask { try? await clock.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitUntilShown(_ seq: Int, level: ReadLevel) async {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.end(for: level) >= seq || Task.isCancelled { return true }
                    state.waiters[id] = (seq, level, continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let continuation = state.withLock { $0.waiters.removeValue(forKey: id)?.continuation }
            continuation?.resume()
        }
    }

    /// Readers waiting now (for tests: a reader that left is not counted).
    var waitingCount: Int { state.withLock { $0.waiters.count } }
}

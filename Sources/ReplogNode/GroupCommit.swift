import CoreMetrics
import Metrics
import NIOPosix
import ReplogCore
import ServiceLifecycle
import Synchronization

/// When a node flushes its log to disk (`--fsync`).
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// Before anything is acknowledged or replicated. Concurrent appends share one fsync.
    case always
    /// In the background every `GroupCommit.interval`; a crash may lose the last moments.
    case interval
    /// Never explicitly; the operating system writes back when it likes.
    case never
}

/// Makes appended entries durable, sharing one fsync among all callers that wait at
/// the same time (group commit).
///
/// The first caller to find no fsync running becomes the leader: it runs one fsync, which
/// covers every entry written before it started, wakes everyone it covered, and hands the
/// lead to a caller that arrived too late to be covered. No caller waits for more than two
/// fsyncs, however busy the node is.
public final class GroupCommit: Service {
    public static let interval: Duration = .milliseconds(100)

    private enum Role { case durable, lead }

    private struct State {
        var durableSeq: Int
        var leading = false
        var waiters: [(seq: Int, continuation: CheckedContinuation<Role, any Error>)] = []
    }

    public let store: any LogStore
    public let policy: FsyncPolicy
    private let state: Mutex<State>
    private let fsyncDuration: Timer

    public init(store: any LogStore, policy: FsyncPolicy, metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.store = store
        self.policy = policy
        self.fsyncDuration = Timer(label: "replog_fsync_duration_seconds", factory: metricsFactory)
        // What recovery found on disk is durable already.
        self.state = Mutex(State(durableSeq: store.lastSeq))
    }

    /// Whether callers wait for fsync at all.
    private var waitsForDisk: Bool { policy == .always && store.isDurable }

    /// The highest seq that may leave this node (be replicated or acknowledged).
    public var durableSeq: Int { waitsForDisk ? state.withLock { $0.durableSeq } : store.lastSeq }

    /// Returns once every entry up to `seq` is durable (at once unless the policy is `always`).
    public func makeDurable(through seq: Int) async throws {
        guard waitsForDisk else { return }
        let role = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Role, any Error>) in
            let now = state.withLock { state -> Role? in
                if state.durableSeq >= seq { return .durable }
                if !state.leading {
                    state.leading = true
                    return .lead
                }
                state.waiters.append((seq, continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
        if role == .lead { try await lead() }
    }

    private func lead() async throws {
        // Everything written before this read is covered by the fsync below.
        let target = store.lastSeq
        let started = ContinuousClock.now
        defer { fsyncDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds) }
        do {
            try await NIOThreadPool.singleton.runIfActive { try self.store.sync() }
        } catch {
            let waiters = state.withLock { state in
                state.leading = false
                defer { state.waiters.removeAll() }
                return state.waiters
            }
            for waiter in waiters { waiter.continuation.resume(throwing: error) }
            throw error
        }
        let (covered, nextLeader) = state.withLock { state in
            state.durableSeq = max(state.durableSeq, target)
            let durable = state.durableSeq
            let covered = state.waiters.filter { $0.seq <= durable }
            state.waiters.removeAll { $0.seq <= durable }
            if state.waiters.isEmpty {
                state.leading = false
                return (covered, nil as CheckedContinuation<Role, any Error>?)
            }
            return (covered, state.waiters.removeFirst().continuation)
        }
        for waiter in covered { waiter.continuation.resume(returning: .durable) }
        nextLeader?.resume(returning: .lead)
    }

    /// With the `interval` policy, flushes in the background; otherwise waits for shutdown.
    public func run() async throws {
        guard policy == .interval, store.isDurable else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: Self.interval)
            try? await NIOThreadPool.singleton.runIfActive { try self.store.sync() }
        }
        try? store.sync()
    }
}

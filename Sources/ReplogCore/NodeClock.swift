import Foundation
import Synchronization

/// The passage of time as a node sees it: real in production, driven by hand in tests.
///
/// Every sleep in the replication code (secondary delays, retry back-off, heartbeats,
/// write timeouts) goes through a `NodeClock`, so an in-process test can hold time
/// still, wait until the code under test is asleep, and move time on exactly.
public protocol NodeClock: Sendable {
    /// Time since an arbitrary, fixed origin.
    var now: Duration { get }
    /// The wall-clock time at `now`, for people (`lastContact` in /health).
    var date: Date { get }
    /// Suspends for `duration`; throws `CancellationError` when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// Real time.
public struct SystemClock: NodeClock {
    private static let origin = ContinuousClock.now
    public init() {}
    public var now: Duration {
        // The origin first: it is set on first use, and read after `ContinuousClock.now` it
        // would make the first reading negative.
        let origin = Self.origin
        return ContinuousClock.now - origin
    }
    public var date: Date { Date() }
    public func sleep(for duration: Duration) async throws {
        try await ContinuousClock().sleep(for: duration)
    }
}

/// A clock that only moves when a test calls `advance(by:)`.
///
/// `waitForSleepers(_:)` lets a test wait until the code under test has reached its
/// sleeps, so a test never guesses with real time.
public final class ManualClock: NodeClock {
    private struct Sleeper {
        let id: Int
        let deadline: Duration
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Duration = .zero
        var nextID = 0
        var sleepers: [Int: Sleeper] = [:]
        var sleeperWatchers: [(id: Int, count: Int, continuation: CheckedContinuation<Void, Never>)] = []

        /// Watchers whose sleeper count has been reached; removed from the state.
        mutating func satisfiedWatchers() -> [CheckedContinuation<Void, Never>] {
            let ready = sleeperWatchers.filter { $0.count <= sleepers.count }
            sleeperWatchers.removeAll { $0.count <= sleepers.count }
            return ready.map(\.continuation)
        }
    }

    private let state = Mutex(State())

    public init() {}

    public var now: Duration { state.withLock { $0.now } }

    /// 2026-01-01T00:00:00Z plus `now`, so that test output is the same on every run.
    public var date: Date { Date(timeIntervalSince1970: 1_767_225_600 + now.seconds) }

    /// The earliest deadline of a sleeping task, if any sleeps.
    public var nextDeadline: Duration? { state.withLock { $0.sleepers.values.map(\.deadline).min() } }

    /// Tasks currently asleep on this clock.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    public func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (resumeNow, watchers) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    // Checked under the lock: either we see the cancellation here, or the
                    // cancellation handler sees this sleeper.
                    if Task.isCancelled || duration <= .zero { return (true, []) }
                    state.sleepers[id] = Sleeper(id: id, deadline: state.now + duration, continuation: continuation)
                    return (false, state.satisfiedWatchers())
                }
                watchers.forEach { $0.resume() }
                if resumeNow {
                    if Task.isCancelled { continuation.resume(throwing: CancellationError()) } else { continuation.resume() }
                }
            }
        } onCancel: {
            let sleeper = state.withLock { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time on and wakes every sleeper whose deadline has come, earliest first.
    public func advance(by duration: Duration) {
        let due = state.withLock { state -> [Sleeper] in
            state.now += duration
            let now = state.now
            let dueIDs = state.sleepers.filter { $0.value.deadline <= now }.map(\.key)
            // Earliest first; equal deadlines in the order they went to sleep (replays need one order).
            return dueIDs.compactMap { state.sleepers.removeValue(forKey: $0) }.sorted { ($0.deadline, $0.id) < ($1.deadline, $1.id) }
        }
        due.forEach { $0.continuation.resume() }
    }

    /// Returns once at least `count` tasks are asleep on this clock, or when the waiting
    /// task is cancelled (so a test's time limit can end a wait that never comes true).
    public func waitForSleepers(_ count: Int) async {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if state.sleepers.count >= count || Task.isCancelled { return true }
                    state.sleeperWatchers.append((id, count, continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let watcher = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard let index = state.sleeperWatchers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleeperWatchers.remove(at: index).continuation
            }
            watcher?.resume()
        }
    }
}

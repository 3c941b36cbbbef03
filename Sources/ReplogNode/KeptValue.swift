import ReplogStorage
import Synchronization

/// A value a node keeps in its data dir beside its log (its election record), written on
/// the storage's thread pool: never under a lock, never on an event loop.
///
/// The protocol state changes under its lock and hands the new value to `set`; whoever must
/// not go on before it is on disk (an answer, a directive) awaits `keep(through:)` outside
/// that lock. One write runs at a time and writes the latest value set, so a burst of
/// changes costs one write: a group commit of one value (`GroupRounds`, as `GroupCommit`
/// for the log).
final class KeptValue<Value: Sendable & Equatable>: Sendable {
    private struct State {
        var latest: Value
        /// The version of `latest`; each `set` makes the next one.
        var version = 0
        /// Every version up to this one is on disk.
        var written = 0
        /// Who runs the next write, and who waits for one.
        var rounds = GroupRounds()
    }

    private let state: Mutex<State>
    private let io: BlockingIO
    /// Writes a value to the data dir; nil without one (nothing outlives the process then,
    /// and every value counts as kept at once).
    private let write: (@Sendable (Value) throws -> Void)?

    init(_ value: Value, io: BlockingIO, write: (@Sendable (Value) throws -> Void)?) {
        self.state = Mutex(State(latest: value))
        self.io = io
        self.write = write
    }

    /// Makes `value` the latest, when it differs from it: the next write takes it. Returns
    /// the version of the latest value (new or not), to pass to `keep(through:)`, and whether
    /// it changed.
    func set(_ value: Value) -> (version: Int, changed: Bool) {
        state.withLock { state in
            guard value != state.latest else { return (state.version, false) }
            state.latest = value
            state.version += 1
            if write == nil { state.written = state.version }
            return (state.version, true)
        }
    }

    /// Returns once version `version` (or a later one) is on disk. The first caller to find
    /// no write running writes the latest value; the others wait for a write that covers
    /// them. A failed write fails the callers waiting for it; the next caller tries again.
    func keep(through version: Int) async throws {
        if state.withLock({ $0.written >= version }) { return }
        let role = try await withCheckedThrowingContinuation { (continuation: GroupRounds.Waiter) in
            let now = state.withLock { state -> GroupRounds.Role? in
                state.written >= version ? .covered : state.rounds.join(version, continuation)
            }
            if let now { continuation.resume(returning: now) }
        }
        if role == .lead { try await lead() }
    }

    private func lead() async throws {
        let (value, version) = state.withLock { ($0.latest, $0.version) }
        do {
            try await io.run { [write] in try write?(value) }
        } catch {
            let waiters = state.withLock { $0.rounds.failed() }
            for waiter in waiters { waiter.resume(throwing: error) }
            throw error
        }
        let (covered, nextLeader) = state.withLock { state in
            state.written = max(state.written, version)
            return state.rounds.finished(through: state.written)
        }
        for waiter in covered { waiter.resume(returning: .covered) }
        nextLeader?.resume(returning: .lead)
    }
}

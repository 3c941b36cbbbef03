import ReplogCore
import Synchronization

/// Wakes readers that wait for the log to reach a seq (`GET /messages?wait=`) when the
/// node's durable prefix grows: a reader never sees what a crash could take back.
///
/// Readers wait on the node's clock, so tests drive their timeouts. A reader that leaves
/// (its connection closed, its task cancelled) is forgotten at once: nothing here grows
/// with readers that never come back.
public final class LogWatch: Sendable {
    private struct State {
        var durable: Int
        var waiters: [Int: (seq: Int, continuation: CheckedContinuation<Void, Never>)] = [:]
        var nextID = 0
    }

    private let state: Mutex<State>

    public init(durable: Int) { state = Mutex(State(durable: durable)) }

    /// The durable prefix now ends at `seq` (or later); wakes everyone waiting for it.
    func advanced(to seq: Int) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard seq > state.durable else { return [] }
            state.durable = seq
            // In the order they came (a simulation replays one order).
            let ready = state.waiters.filter { $0.value.seq <= seq }.keys.sorted()
            return ready.compactMap { state.waiters.removeValue(forKey: $0)?.continuation }
        }
        for continuation in woken { continuation.resume() }
    }

    /// The log was cut after `seq` (failover): the durable prefix ends there again, so that
    /// readers wait for the seqs that come back instead of finding them "there" and empty.
    func cut(to seq: Int) {
        state.withLock { $0.durable = min($0.durable, seq) }
    }

    /// Returns once the durable prefix reaches `seq`, after `timeout` on `clock`, or when
    /// the task is cancelled, whichever comes first.
    func wait(for seq: Int, upTo timeout: Duration, on clock: any NodeClock) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitUntilDurable(seq) }
            group.addTask { try? await clock.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitUntilDurable(_ seq: Int) async {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.durable >= seq || Task.isCancelled { return true }
                    state.waiters[id] = (seq, continuation)
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

import Logging
import ReplogStorage
import Synchronization

/// The commit point a node of a cluster with failover learned, kept in its data dir before
/// its readers are shown it: a restarted node never shows less than it showed before.
///
/// A node learns it from every request of its master, or as master from the durable
/// acknowledgements of a majority, far more often than a disk can keep it. So one write
/// runs at a time, and it keeps the latest value learned when it starts; what is learned
/// meanwhile goes with the next write (a group commit of one number).
final class CommitPoint: Sendable {
    private struct State {
        var learned: Int
        var kept: Int
        var keeping = false
    }

    private let state: Mutex<State>
    private let watch: LogWatch
    private let io: BlockingIO
    private let taskExecutor: (any TaskExecutor)?
    private let logger: Logger
    /// Writes the value to the data dir; nil without one (shown at once then: nothing
    /// outlives the process anyway).
    private let keep: (@Sendable (Int) throws -> Void)?

    init(
        kept: Int, watch: LogWatch, io: BlockingIO, taskExecutor: (any TaskExecutor)?, logger: Logger,
        keep: (@Sendable (Int) throws -> Void)?
    ) {
        self.state = Mutex(State(learned: kept, kept: kept))
        self.watch = watch
        self.io = io
        self.taskExecutor = taskExecutor
        self.logger = logger
        self.keep = keep
        watch.committed(to: kept)
    }

    /// The highest commit point learned (kept or about to be).
    var learned: Int { state.withLock { $0.learned } }

    /// Everything up to `seq` is committed: keep it, then show it.
    func learn(_ seq: Int) {
        guard keep != nil else {
            let advanced = state.withLock { state -> Bool in
                guard seq > state.learned else { return false }
                (state.learned, state.kept) = (seq, seq)
                return true
            }
            if advanced { watch.committed(to: seq) }
            return
        }
        let start = state.withLock { state -> Bool in
            guard seq > state.learned else { return false }
            state.learned = seq
            guard !state.keeping else { return false }
            state.keeping = true
            return true
        }
        if start { Task(executorPreference: taskExecutor) { await self.keepLearned() } }
    }

    private func keepLearned() async {
        while true {
            let next = state.withLock { state -> Int? in
                guard state.learned > state.kept else {
                    state.keeping = false
                    return nil
                }
                return state.learned
            }
            guard let next else { return }
            do {
                try await io.run { try self.keep?(next) }
            } catch {
                // Readers are not shown it, and the next value learned tries again.
                logger.error("cannot keep the commit point in the data dir", metadata: ["replog.error": "\(error)"])
                state.withLock { $0.keeping = false }
                return
            }
            state.withLock { $0.kept = max($0.kept, next) }
            watch.committed(to: next)
        }
    }
}

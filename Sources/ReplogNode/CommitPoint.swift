import Logging
import ReplogStorage
import Synchronization

/// The commit point a node of a cluster with failover learned, kept in its data dir before
/// its readers are shown it: a restarted node never shows less than it showed before.
///
/// A node learns it from every request of its master, or as master from the durable
/// acknowledgements of a majority, far more often than a disk can keep it. So `learn` only
/// notes the value and wakes `run`, the loop the node's run owns and the one writer, which
/// writes the latest value learned on the storage's thread pool and then shows it: what is
/// learned during a write goes with the next one.
final class CommitPoint: Sendable {
    private let learnedSeq: Mutex<Int>
    /// What the data dir held when the node started.
    private let keptAtStart: Int
    private let learnedMore = WakeSignal()
    private let watch: LogWatch
    private let io: BlockingIO
    private let logger: Logger
    /// Writes the value to the data dir; nil without one (shown at once then: nothing
    /// outlives the process anyway).
    private let keep: (@Sendable (Int) throws -> Void)?

    init(kept: Int, watch: LogWatch, io: BlockingIO, logger: Logger, keep: (@Sendable (Int) throws -> Void)?) {
        self.learnedSeq = Mutex(kept)
        self.keptAtStart = kept
        self.watch = watch
        self.io = io
        self.logger = logger
        self.keep = keep
        watch.committed(to: kept)
    }

    /// The highest commit point learned (kept or about to be).
    var learned: Int { learnedSeq.withLock { $0 } }

    /// Everything up to `seq` is committed: keep it, then show it.
    func learn(_ seq: Int) {
        let advanced = learnedSeq.withLock { learned -> Bool in
            guard seq > learned else { return false }
            learned = seq
            return true
        }
        guard advanced else { return }
        if keep == nil { watch.committed(to: seq) } else { learnedMore.signal() }
    }

    /// Keeps each value learned, then shows it to readers, until the task is cancelled.
    func run() async {
        guard let keep else { return }
        var tried = keptAtStart
        while !Task.isCancelled {
            await learnedMore.wait()
            let seq = learned
            guard seq > tried else { continue }
            tried = seq
            do {
                try await io.run { try keep(seq) }
            } catch {
                // Readers are not shown it, and the next value learned tries again.
                logger.error("cannot keep the commit point in the data dir", metadata: ["replog.error": "\(error)"])
                continue
            }
            watch.committed(to: seq)
        }
    }
}

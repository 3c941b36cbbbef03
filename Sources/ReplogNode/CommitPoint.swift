import Logging
import ReplogStorage
import Synchronization

/// The commit point a node of a cluster with failover learned, kept in its data dir before
/// its readers are shown it: a restarted node never shows less than it showed before.
///
/// A node learns it from every request of its master, or as master from the durable
/// acknowledgements of a majority, far more often than a disk can keep it. So `learn` only
/// notes the value and wakes `run`, the loop the node's run owns, which writes the latest
/// value learned (`KeptValue`) and then shows it: what is learned during a write goes with
/// the next one.
final class CommitPoint: Sendable {
    private let learnedSeq: Mutex<Int>
    private let kept: KeptValue<Int>
    private let learnedMore = WakeSignal()
    private let watch: LogWatch
    private let logger: Logger
    /// Without a data dir a value is shown at once: nothing outlives the process anyway.
    private let showsAtOnce: Bool

    /// - Parameter keep: writes the value to the data dir; nil without one.
    init(kept: Int, watch: LogWatch, io: BlockingIO, logger: Logger, keep: (@Sendable (Int) throws -> Void)?) {
        self.learnedSeq = Mutex(kept)
        self.kept = KeptValue(kept, io: io, write: keep)
        self.watch = watch
        self.logger = logger
        self.showsAtOnce = keep == nil
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
        if showsAtOnce { watch.committed(to: seq) } else { learnedMore.signal() }
    }

    /// Keeps each value learned, then shows it to readers, until the task is cancelled.
    func run() async {
        while !Task.isCancelled {
            await learnedMore.wait()
            let seq = learned
            guard seq > kept.latest else { continue }
            do {
                try await kept.keep(through: kept.set(seq))
            } catch {
                // Readers are not shown it, and the next value learned tries again.
                logger.error("cannot keep the commit point in the data dir", metadata: ["replog.error": "\(error)"])
                continue
            }
            watch.committed(to: seq)
        }
    }
}

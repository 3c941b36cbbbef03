/// What a master does with a member whose log parts from its own, as a value: which seq to
/// ask the member's hash of next, and, once the answers show where the logs part, the
/// remedy. The shell does the asking (`GET /replicate/hash`) and carries the remedy out.
///
/// - After retention a member must first show this log's hash at the seq before its
///   start; one that cannot (another hash, or none: it lacks that seq, or its own start is
///   later) starts its log again at this log's start. It could not be cut to a seq it holds
///   no hash of. Only a master with failover restarts or cuts a member's log.
/// - Then halving: the logs agree at the start and differ at the seq the member's answer
///   showed, so about log2(n) questions find the last seq where they agree. A member with
///   failover that holds no hash at a seq asked starts its log again too.
/// - With failover the member cuts its log after that seq (what it holds past it an
///   earlier master wrote and no majority kept); without, the master reports where they part.
public struct DivergenceSearch: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        /// Ask the member for its hash at `seq`, then call `onHash`.
        case ask(seq: Int)
        /// Without failover, the member did not hold a seq it was asked of while halving: ask
        /// again at its next answer.
        case retryLater
        /// Send this log from its start, marked so that the member starts its log again there.
        case restartLog
        /// Have the member cut its log after `after` (it holds this log through there).
        case cut(after: Int)
        /// The logs part at `differsAt`: report it (no failover, so no cut).
        case report(differsAt: Int)
    }

    private let cuts: Bool
    private var agreed: Int
    private var differs: Int
    /// The seq before this log's start, while the member has yet to show it holds it.
    private var startToCheck: Int?
    /// A member ahead of the master's log (a deposed master's tail) may agree up to the
    /// master's end: that seq is asked first.
    private var askFirst: Int?
    private var outcome: Step?

    /// - Parameters:
    ///   - start: the seq before this log's first kept seq (0 without retention).
    ///   - last: a seq where the logs differ (the member's answer that showed it).
    ///   - masterLast: the master's last seq.
    ///   - cuts: whether this master has members cut or restart their logs (failover).
    public init(start: Int, differsAtOrBefore last: Int, masterLast: Int, cuts: Bool) {
        self.cuts = cuts
        agreed = start
        differs = min(last, masterLast + 1)
        startToCheck = cuts && start > 0 ? start : nil
        askFirst = last > masterLast && masterLast > start ? masterLast : nil
    }

    public var next: Step {
        if let outcome { return outcome }
        if let startToCheck { return .ask(seq: startToCheck) }
        guard differs - agreed > 1 else { return cuts ? .cut(after: agreed) : .report(differsAt: differs) }
        return .ask(seq: askFirst ?? (agreed + differs) / 2)
    }

    /// The member's hash at `seq` (nil: it does not hold it) and the master's.
    public mutating func onHash(at seq: Int, theirs: String?, ours: String?) {
        if startToCheck == seq {
            startToCheck = nil
            if theirs != ours { outcome = .restartLog }
            return
        }
        guard let theirs else {
            // It cannot be cut to a seq it holds no hash of: its own start is later (its
            // retention dropped what the master still holds), or it holds less than it did.
            // Asked again, it would answer the same (the real-node simulation with stalled
            // disks, seed 2153: a deposed master's tail behind its own start, never cut).
            outcome = cuts ? .restartLog : .retryLater
            return
        }
        askFirst = nil
        if theirs == ours { agreed = max(agreed, seq) } else { differs = min(differs, seq) }
    }
}

/// Where a diverged member's log parts from the master's, found by halving, as a value: it
/// says which seq to ask the member's hash of next, is told the answer beside the master's
/// own hash there, and ends with the last seq where the logs agree and the first where they
/// differ. About log2(n) questions for a log of n entries; the shell does the asking
/// (`GET /replicate/hash`), and starts again if the member stops answering.
public struct DivergenceSearch: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        /// Ask the member for its hash at `seq`, then call `onHash`.
        case ask(seq: Int)
        /// The logs agree through `agreed` and differ at `differs` (`agreed + 1`).
        case found(agreed: Int, differs: Int)
    }

    private var agreed: Int
    private var differs: Int
    /// A member ahead of the master's log (a deposed master's tail) may agree up to the
    /// master's end: that seq is asked first.
    private var askFirst: Int?

    /// - Parameters:
    ///   - from: a seq where the logs agree (0, or the seq before this log's start).
    ///   - last: a seq where they differ (the member's answer that showed the divergence).
    ///   - masterLast: the master's last seq.
    public init(from: Int, differsAtOrBefore last: Int, masterLast: Int) {
        agreed = from
        differs = min(last, masterLast + 1)
        askFirst = last > masterLast && masterLast > from ? masterLast : nil
    }

    public var next: Step {
        guard differs - agreed > 1 else { return .found(agreed: agreed, differs: differs) }
        return .ask(seq: askFirst ?? (agreed + differs) / 2)
    }

    /// The member's hash at `seq` (nil: it does not hold it) and the master's.
    public mutating func onHash(at seq: Int, theirs: String?, ours: String?) {
        askFirst = nil
        if theirs == ours { agreed = max(agreed, seq) } else { differs = min(differs, seq) }
    }
}

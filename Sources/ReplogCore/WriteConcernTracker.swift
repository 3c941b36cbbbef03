/// Counts, for every waiting append, how many nodes hold its message, and says
/// which appends have reached their write concern.
///
/// Secondaries acknowledge a contiguous prefix ("I hold everything up to seq n"),
/// so a message at `seq` is held by the master plus every secondary whose highest
/// acknowledged seq is at least `seq`. Nothing here scans the log: an acknowledgement
/// only visits the waiting appends it can complete.
public struct WriteConcernTracker: Sendable {
    public typealias WaiterID = Int

    private struct Waiter: Sendable {
        let id: WaiterID
        let required: Int
    }

    /// Highest seq each secondary has acknowledged. Goes down only when the secondary
    /// restarts with less (`onRestart`); a late or reordered answer never lowers it.
    private var acknowledged: [String: Int]
    private var waiting: [Int: [Waiter]] = [:]
    /// Waiters in `waiting`, kept as a count so that asking costs nothing per append.
    public private(set) var waitingCount = 0

    public init(secondaries: [String]) {
        self.acknowledged = Dictionary(uniqueKeysWithValues: secondaries.map { ($0, 0) })
    }

    /// Highest seq `secondary` has acknowledged.
    public func acknowledgedSeq(of secondary: String) -> Int { acknowledged[secondary] ?? 0 }

    /// Nodes (the master included) that hold the message at `seq`.
    public func holders(of seq: Int) -> Int {
        1 + acknowledged.values.count { $0 >= seq }
    }

    /// Registers an append that needs `required` nodes to hold `seq`.
    /// - Returns: `true` when the write concern is already met; nothing is registered then.
    public mutating func onAppend(_ id: WaiterID, seq: Int, required: Int) -> Bool {
        if holders(of: seq) >= required { return true }
        waiting[seq, default: []].append(Waiter(id: id, required: required))
        waitingCount += 1
        return false
    }

    /// Records that `secondary` holds everything up to `seq`.
    /// - Returns: the appends whose write concern this acknowledgement completed.
    public mutating func onAck(from secondary: String, seq: Int) -> [WaiterID] {
        let previous = acknowledged[secondary] ?? 0
        guard seq > previous else { return [] }
        acknowledged[secondary] = seq
        // Only appends in (previous, seq] gained a holder. Visit whichever is smaller:
        // that range of seqs, or the set of waiting seqs.
        let touched: [Int] =
            seq - previous <= waiting.count
            ? (previous + 1...seq).filter { waiting[$0] != nil }
            : waiting.keys.filter { $0 > previous && $0 <= seq }.sorted()  // a stable order for replays
        var completed: [WaiterID] = []
        for waitingSeq in touched {
            let holders = holders(of: waitingSeq)
            var stillWaiting: [Waiter] = []
            for waiter in waiting[waitingSeq]! {
                if holders >= waiter.required { completed.append(waiter.id) } else { stillWaiting.append(waiter) }
            }
            waiting[waitingSeq] = stillWaiting.isEmpty ? nil : stillWaiting
        }
        waitingCount -= completed.count
        return completed
    }

    /// `secondary` restarted and now holds exactly `1...seq`: less if it lost its log, more
    /// if it stored entries whose acknowledgements never arrived. Later counts use what it
    /// holds now; appends already answered stay answered.
    /// - Returns: the appends this completes (when it holds more than it had acknowledged).
    public mutating func onRestart(of secondary: String, holding seq: Int) -> [WaiterID] {
        if seq >= acknowledgedSeq(of: secondary) { return onAck(from: secondary, seq: seq) }
        acknowledged[secondary] = seq
        return []
    }

    /// Forgets a waiting append (its client timed out or went away).
    public mutating func onGiveUp(_ id: WaiterID, seq: Int) {
        guard var waiters = waiting[seq] else { return }
        let before = waiters.count
        waiters.removeAll { $0.id == id }
        waitingCount -= before - waiters.count
        waiting[seq] = waiters.isEmpty ? nil : waiters
    }
}

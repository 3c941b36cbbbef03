/// Turns deliveries that may arrive duplicated or out of order into the
/// contiguous, in-order, exactly-once stream a secondary stores.
///
/// A secondary lists only `1...contiguousSeq`: seq 4 waits here until seq 3 arrives,
/// and anything at or below `contiguousSeq` is a duplicate and is dropped.
public struct HoldBackBuffer: Sendable {
    /// Every seq in `1...contiguousSeq` has been delivered.
    public private(set) var contiguousSeq: Int
    /// How far beyond `contiguousSeq` an entry may be and still be held back.
    /// Entries further ahead are dropped; the master resends them, because every
    /// acknowledgement tells it `contiguousSeq`.
    public let capacity: Int
    private var heldBack: [Int: String] = [:]

    public init(contiguousSeq: Int = 0, capacity: Int = 100_000) {
        precondition(capacity > 0, "capacity must be positive, got \(capacity)")
        self.contiguousSeq = contiguousSeq
        self.capacity = capacity
    }

    /// Entries waiting for a gap before them to fill.
    public var heldBackCount: Int { heldBack.count }

    /// Accepts entries in any order and returns those that are now deliverable,
    /// in seq order, each exactly once.
    public mutating func receive(_ entries: some Sequence<LogEntry>) -> [LogEntry] {
        var deliverable: [LogEntry] = []
        for entry in entries {
            guard entry.seq > contiguousSeq, heldBack[entry.seq] == nil else { continue }  // duplicate
            if entry.seq == contiguousSeq + 1 {
                deliverable.append(entry)
                contiguousSeq = entry.seq
                drainHeldBack(into: &deliverable)
            } else if entry.seq - contiguousSeq <= capacity {
                heldBack[entry.seq] = entry.message
            }
        }
        return deliverable
    }

    /// Takes back deliveries after `seq`: the store refused what `receive` returned, so
    /// those entries count as never delivered (the master sends them again).
    public mutating func rewind(to seq: Int) {
        precondition(seq <= contiguousSeq, "can only rewind, from \(contiguousSeq) to \(seq)")
        contiguousSeq = seq
    }

    private mutating func drainHeldBack(into deliverable: inout [LogEntry]) {
        while let message = heldBack.removeValue(forKey: contiguousSeq + 1) {
            contiguousSeq += 1
            deliverable.append(LogEntry(seq: contiguousSeq, message: message))
        }
    }
}

/// Remembers which seq each recent client `id` was appended at, so a retried append
/// returns the original result instead of appending again.
///
/// Memory is bounded: only the most recent `capacity` ids are remembered (first in,
/// first out). A retry of an id older than that is appended again.
public struct IdempotencyWindow: Sendable {
    public let capacity: Int
    private var seqByID: [String: Int] = [:]
    private var order: [String] = []
    private var oldest = 0  // index into `order` of the oldest remembered id

    /// How many ids a master remembers, and how many a file store reads back at start.
    public static let defaultCapacity = 100_000

    public init(capacity: Int = defaultCapacity) {
        precondition(capacity > 0, "capacity must be positive, got \(capacity)")
        self.capacity = capacity
    }

    public var count: Int { seqByID.count }

    public func seq(for id: String) -> Int? { seqByID[id] }

    public mutating func remember(_ id: String, seq: Int) {
        guard seqByID.updateValue(seq, forKey: id) == nil else { return }
        order.append(id)
        if seqByID.count > capacity {
            seqByID[order[oldest]] = nil
            oldest += 1
        }
        // Compact now and then so `order` does not grow without bound.
        if oldest >= capacity {
            order.removeFirst(oldest)
            oldest = 0
        }
    }
}

/// A client's idempotency key and the seq its append got.
public struct RememberedID: Sendable, Equatable {
    public let id: String
    public let seq: Int
    public init(id: String, seq: Int) {
        self.id = id
        self.seq = seq
    }
}

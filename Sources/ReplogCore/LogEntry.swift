/// One message at its place in the master's total order.
///
/// `seq` is 1-based and dense: the master hands out 1, 2, 3, … and every node
/// stores the same message under the same `seq`.
public struct LogEntry: Codable, Sendable, Hashable {
    public let seq: Int
    public let message: String

    public init(seq: Int, message: String) {
        self.seq = seq
        self.message = message
    }
}

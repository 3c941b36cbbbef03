/// A secondary's answer to the master: "I hold every message up to `seq`".
///
/// `incarnation` changes every time the secondary process starts, so the master can
/// tell a node that restarted (and may have lost its log) from one that merely lagged.
public struct ReplicaState: Codable, Sendable, Equatable {
    /// Highest contiguous seq the secondary holds (and lists).
    public var seq: Int
    /// Random id of this run of the secondary process.
    public var incarnation: String
    /// The master log this secondary follows (`nil` while it holds nothing).
    /// A master restarted without its data starts a new log, and a secondary that
    /// still holds the old one refuses it instead of silently mixing the two.
    public var logID: String?
    /// Why the secondary can store nothing more (its disk failed an fsync), if so.
    public var storageFailure: String?

    public init(seq: Int, incarnation: String, logID: String?, storageFailure: String? = nil) {
        self.seq = seq
        self.incarnation = incarnation
        self.logID = logID
        self.storageFailure = storageFailure
    }
}

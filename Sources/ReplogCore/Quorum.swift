/// Whether the master may accept appends.
///
/// The master is writable while the nodes that are not `unhealthy` (the master
/// itself counts, and so does a `suspected` secondary) form a majority of the cluster.
public struct Quorum: Sendable, Equatable, Codable {
    /// Nodes needed for a majority: `clusterSize / 2 + 1`.
    public let required: Int
    /// Nodes currently counted as available.
    public let available: Int

    public init(secondaryStatuses: some Collection<PeerStatus>) {
        let clusterSize = 1 + secondaryStatuses.count
        self.required = clusterSize / 2 + 1
        self.available = 1 + secondaryStatuses.count { $0 != .unhealthy }
    }

    public var isWritable: Bool { available >= required }
}

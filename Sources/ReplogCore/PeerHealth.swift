/// What the master believes about a secondary, from its heartbeats.
///
/// Legal transitions:
/// - `healthy` → `suspected` after `suspectAfterMisses` consecutive missed heartbeats
/// - `suspected` → `unhealthy` after `unhealthyAfterMisses` consecutive missed heartbeats
/// - any → `healthy` on the first successful contact
public enum PeerStatus: String, Codable, Sendable, CaseIterable {
    case healthy
    case suspected
    case unhealthy
}

/// The heartbeat state machine of one secondary. Pure: the caller reports each
/// heartbeat's outcome and acts on the returned transition.
public struct PeerHealth: Sendable, Equatable {
    public struct Thresholds: Sendable, Equatable {
        /// Consecutive missed heartbeats after which a healthy secondary is suspected.
        public var suspectAfterMisses: Int
        /// Consecutive missed heartbeats after which a secondary is unhealthy.
        public var unhealthyAfterMisses: Int

        public init(suspectAfterMisses: Int = 2, unhealthyAfterMisses: Int = 4) {
            precondition(
                suspectAfterMisses >= 1 && unhealthyAfterMisses > suspectAfterMisses,
                "need 1 <= suspectAfterMisses < unhealthyAfterMisses, got \(suspectAfterMisses), \(unhealthyAfterMisses)")
            self.suspectAfterMisses = suspectAfterMisses
            self.unhealthyAfterMisses = unhealthyAfterMisses
        }
    }

    public struct Transition: Sendable, Equatable {
        public let from: PeerStatus
        public let to: PeerStatus

        public init(from: PeerStatus, to: PeerStatus) {
            self.from = from
            self.to = to
        }
    }

    public let thresholds: Thresholds
    /// A configured secondary starts healthy and moves down only when heartbeats are missed.
    public private(set) var status: PeerStatus = .healthy
    public private(set) var consecutiveMisses = 0

    public init(thresholds: Thresholds = Thresholds()) {
        self.thresholds = thresholds
    }

    /// The secondary answered (a heartbeat or a replication request).
    public mutating func onContact() -> Transition? {
        consecutiveMisses = 0
        return move(to: .healthy)
    }

    /// A heartbeat got no answer in time.
    public mutating func onHeartbeatMissed() -> Transition? {
        consecutiveMisses += 1
        if consecutiveMisses >= thresholds.unhealthyAfterMisses { return move(to: .unhealthy) }
        if consecutiveMisses >= thresholds.suspectAfterMisses { return move(to: .suspected) }
        return nil
    }

    private mutating func move(to next: PeerStatus) -> Transition? {
        guard next != status else { return nil }
        defer { status = next }
        return Transition(from: status, to: next)
    }
}

/// How long a replication stream waits before retrying a failed delivery.
///
/// Retries never stop. The delay grows exponentially with jitter up to a cap; the cap
/// is higher while the heartbeat says the secondary is unhealthy (no point hammering a
/// dead node), and the heartbeat wakes the stream as soon as the node answers again.
public struct RetryPolicy: Sendable, Equatable {
    /// Delay before the first retry.
    public var initialBackoff: Duration
    /// Largest delay while the secondary is healthy or suspected.
    public var maxBackoff: Duration
    /// Largest delay while the secondary is unhealthy.
    public var maxBackoffWhenUnhealthy: Duration

    public init(
        initialBackoff: Duration = .milliseconds(50),
        maxBackoff: Duration = .seconds(2),
        maxBackoffWhenUnhealthy: Duration = .seconds(10)
    ) {
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxBackoffWhenUnhealthy = maxBackoffWhenUnhealthy
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    /// - Parameters:
    ///   - jitter: a random number in `0..<1`, passed in so tests get fixed delays.
    /// - Returns: a delay in `[cap/2, cap]`, where cap doubles each attempt up to the maximum
    ///   ("equal jitter": never zero, and retries of many streams spread out).
    public func backoff(attempt: Int, status: PeerStatus, jitter: Double) -> Duration {
        let limit = status == .unhealthy ? maxBackoffWhenUnhealthy : maxBackoff
        let doublings = min(max(attempt - 1, 0), 30)
        let exponential = initialBackoff * (1 << doublings)
        let cap = min(exponential, limit)
        return cap / 2 + cap * (min(max(jitter, 0), 1) / 2)
    }
}

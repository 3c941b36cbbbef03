/// Callers that each wait for a round of work (an fsync, a write) that covers their target:
/// the first to find no round running leads the next one, and the others wait. A leader
/// wakes everyone its round covered and hands the lead to a caller that arrived too late to
/// be covered, so nobody waits for more than two rounds, however many callers come.
///
/// A value kept under its owner's lock (`GroupCommit` for the log, `KeptValue` for a value
/// beside it); the owner runs the rounds and knows how far they covered.
public struct GroupRounds: Sendable {
    public enum Role: Sendable { case covered, lead }
    public typealias Waiter = CheckedContinuation<Role, any Error>

    private var leading = false
    private var waiters: [(target: Int, continuation: Waiter)] = []

    public init() {}

    /// A caller not covered yet needs a round that covers `target`: it leads one (no round
    /// runs), or waits on `continuation` (nil is returned; it is resumed later).
    public mutating func join(_ target: Int, _ continuation: Waiter) -> Role? {
        guard leading else {
            leading = true
            return .lead
        }
        waiters.append((target, continuation))
        return nil
    }

    /// The leader's round is done, and rounds have covered everything through `done`:
    /// returns the waiters to resume as covered, and the one to resume as the next leader.
    public mutating func finished(through done: Int) -> (covered: [Waiter], nextLeader: Waiter?) {
        let covered = waiters.filter { $0.target <= done }.map(\.continuation)
        waiters.removeAll { $0.target <= done }
        guard !waiters.isEmpty else {
            leading = false
            return (covered, nil)
        }
        return (covered, waiters.removeFirst().continuation)
    }

    /// The leader's round failed: no round runs; returns every waiter, to fail.
    public mutating func failed() -> [Waiter] {
        leading = false
        defer { waiters.removeAll() }
        return waiters.map(\.continuation)
    }
}

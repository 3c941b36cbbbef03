import ReplogCore
import Testing

@Suite struct PeerHealthTests {
    @Test func startsHealthy() {
        #expect(PeerHealth().status == .healthy)
    }

    @Test func missedHeartbeatsMoveDownOneStepAtATime() {
        var health = PeerHealth(thresholds: .init(suspectAfterMisses: 2, unhealthyAfterMisses: 4))
        do { let result = health.onHeartbeatMissed(); #expect(result == nil) }
        do { let result = health.onHeartbeatMissed(); #expect(result == .init(from: .healthy, to: .suspected)) }
        do { let result = health.onHeartbeatMissed(); #expect(result == nil) }
        do { let result = health.onHeartbeatMissed(); #expect(result == .init(from: .suspected, to: .unhealthy)) }
        do { let result = health.onHeartbeatMissed(); #expect(result == nil) }  // every change is reported once
        #expect(health.status == .unhealthy)
    }

    @Test func oneAnswerMakesItHealthyAgain() {
        var health = PeerHealth(thresholds: .init(suspectAfterMisses: 1, unhealthyAfterMisses: 2))
        _ = health.onHeartbeatMissed()
        _ = health.onHeartbeatMissed()
        do { let result = health.onContact(); #expect(result == .init(from: .unhealthy, to: .healthy)) }
        #expect(health.consecutiveMisses == 0)
        do { let result = health.onContact(); #expect(result == nil) }
    }

    @Test func contactResetsTheMissCount() {
        var health = PeerHealth(thresholds: .init(suspectAfterMisses: 2, unhealthyAfterMisses: 3))
        _ = health.onHeartbeatMissed()
        _ = health.onContact()
        do { let result = health.onHeartbeatMissed(); #expect(result == nil) }
        #expect(health.status == .healthy)
    }
}

@Suite struct QuorumTests {
    @Test(arguments: [
        ([PeerStatus.healthy, .healthy], true, 3),
        ([.unhealthy, .healthy], true, 2),
        ([.suspected, .unhealthy], true, 2),  // suspected still counts
        ([.unhealthy, .unhealthy], false, 1),
        ([.unhealthy], false, 1),  // two nodes need both
        ([], true, 1),  // a lone master is its own majority
    ])
    func majorityOfTheClusterIncludingTheMaster(statuses: [PeerStatus], writable: Bool, available: Int) {
        let quorum = Quorum(secondaryStatuses: statuses)
        #expect(quorum.isWritable == writable)
        #expect(quorum.available == available)
        #expect(quorum.required == (statuses.count + 1) / 2 + 1)
    }
}

@Suite struct RetryPolicyTests {
    let policy = RetryPolicy(initialBackoff: .milliseconds(100), maxBackoff: .seconds(1), maxBackoffWhenUnhealthy: .seconds(8))

    @Test func growsExponentiallyWithinTheJitterBand() {
        #expect(policy.backoff(attempt: 1, status: .healthy, jitter: 0) == .milliseconds(50))
        #expect(policy.backoff(attempt: 1, status: .healthy, jitter: 1) == .milliseconds(100))
        #expect(policy.backoff(attempt: 3, status: .healthy, jitter: 1) == .milliseconds(400))
    }

    @Test func isCappedAndCappedHigherWhenUnhealthy() {
        #expect(policy.backoff(attempt: 50, status: .healthy, jitter: 1) == .seconds(1))
        #expect(policy.backoff(attempt: 50, status: .suspected, jitter: 0.5) == .milliseconds(750))
        #expect(policy.backoff(attempt: 50, status: .unhealthy, jitter: 1) == .seconds(8))
    }

    @Test func neverZero() {
        #expect(policy.backoff(attempt: 0, status: .healthy, jitter: 0) > .zero)
    }
}

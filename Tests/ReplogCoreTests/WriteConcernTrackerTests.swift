import ReplogCore
import Testing

@Suite struct WriteConcernTrackerTests {
    @Test func wEqualOneIsMetByTheMasterAlone() {
        var tracker = WriteConcernTracker(secondaries: ["s1", "s2"])
        do { let result = tracker.onAppend(0, seq: 1, required: 1); #expect(result) }
        #expect(tracker.waitingCount == 0)
    }

    @Test func wTwoCompletesOnTheFirstSecondaryAck() {
        var tracker = WriteConcernTracker(secondaries: ["s1", "s2"])
        do { let result = tracker.onAppend(7, seq: 1, required: 2); #expect(!result) }
        do { let result = tracker.onAck(from: "s2", seq: 1); #expect(result == [7]) }
        #expect(tracker.waitingCount == 0)
    }

    @Test func wThreeNeedsBothSecondaries() {
        var tracker = WriteConcernTracker(secondaries: ["s1", "s2"])
        do { let result = tracker.onAppend(1, seq: 1, required: 3); #expect(!result) }
        do { let result = tracker.onAck(from: "s1", seq: 1); #expect(result.isEmpty) }
        #expect(tracker.holders(of: 1) == 2)
        do { let result = tracker.onAck(from: "s2", seq: 1); #expect(result == [1]) }
    }

    /// An acknowledgement of seq n covers every seq below it (contiguous prefix).
    @Test func oneAckCompletesEveryEarlierSeq() {
        var tracker = WriteConcernTracker(secondaries: ["s1"])
        for seq in 1...5 {
            let met = tracker.onAppend(seq, seq: seq, required: 2)
            #expect(!met)
        }
        let upToThree = tracker.onAck(from: "s1", seq: 3)
        #expect(Set(upToThree) == [1, 2, 3])
        let upToTen = tracker.onAck(from: "s1", seq: 10)
        #expect(Set(upToTen) == [4, 5])
    }

    /// A late or reordered answer with a lower seq never takes an acknowledgement back.
    @Test func acknowledgementsNeverGoBackwards() {
        var tracker = WriteConcernTracker(secondaries: ["s1"])
        _ = tracker.onAck(from: "s1", seq: 5)
        do { let result = tracker.onAck(from: "s1", seq: 0); #expect(result.isEmpty) }
        #expect(tracker.acknowledgedSeq(of: "s1") == 5)
        do { let result = tracker.onAppend(0, seq: 5, required: 2); #expect(result) }
    }

    /// A secondary that restarted empty no longer counts for what it lost (found by the
    /// simulation: an idempotent retry was answered w=3 from a stale acknowledgement).
    @Test func aRestartTakesBackWhatTheSecondaryLost() {
        var tracker = WriteConcernTracker(secondaries: ["s1"])
        _ = tracker.onAck(from: "s1", seq: 5)
        do { let result = tracker.onRestart(of: "s1", holding: 0); #expect(result.isEmpty) }
        do { let met = tracker.onAppend(0, seq: 5, required: 2); #expect(!met) }
        do { let result = tracker.onAck(from: "s1", seq: 5); #expect(result == [0]) }
    }

    /// A secondary that restarts holding more than it had acknowledged (its answers were
    /// lost) completes the appends waiting on that (found by the simulation: they hung).
    @Test func aRestartWithMoreCompletesWaiters() {
        var tracker = WriteConcernTracker(secondaries: ["s1"])
        do { let met = tracker.onAppend(7, seq: 3, required: 2); #expect(!met) }
        do { let result = tracker.onRestart(of: "s1", holding: 4); #expect(result == [7]) }
    }

    @Test func givingUpForgetsTheWaiter() {
        var tracker = WriteConcernTracker(secondaries: ["s1"])
        do { let result = tracker.onAppend(1, seq: 1, required: 2); #expect(!result) }
        tracker.onGiveUp(1, seq: 1)
        #expect(tracker.waitingCount == 0)
        do { let result = tracker.onAck(from: "s1", seq: 1); #expect(result.isEmpty) }
    }

    /// The count of waiting appends (read by every replication stream) follows appends,
    /// partial completions and give-ups, including several appends on one seq.
    @Test func countsWhatStillWaits() {
        var tracker = WriteConcernTracker(secondaries: ["s1", "s2"])
        _ = tracker.onAppend(1, seq: 1, required: 2)
        _ = tracker.onAppend(2, seq: 1, required: 3)  // an idempotent retry waits on the same seq
        _ = tracker.onAppend(3, seq: 2, required: 3)
        #expect(tracker.waitingCount == 3)
        do { let result = tracker.onAck(from: "s1", seq: 2); #expect(result == [1]) }
        #expect(tracker.waitingCount == 2)
        tracker.onGiveUp(3, seq: 2)
        tracker.onGiveUp(3, seq: 2)  // twice, or for a seq nobody waits on: no change
        tracker.onGiveUp(9, seq: 1)
        #expect(tracker.waitingCount == 1)
        do { let result = tracker.onAck(from: "s2", seq: 2); #expect(result == [2]) }
        #expect(tracker.waitingCount == 0)
    }

    /// A huge catch-up acknowledgement visits only the waiting seqs.
    @Test func largeAckRangeCompletesOnlyWaiters() {
        var tracker = WriteConcernTracker(secondaries: ["s1", "s2"])
        do { let result = tracker.onAppend(1, seq: 50_000, required: 3); #expect(!result) }
        do { let result = tracker.onAck(from: "s1", seq: 1_000_000); #expect(result.isEmpty) }
        do { let result = tracker.onAck(from: "s2", seq: 1_000_000); #expect(result == [1]) }
    }
}

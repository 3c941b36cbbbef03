import ReplogCore
import Testing

/// When a member takes on its master's epoch history: only when its log is the master's
/// through the master's last start, with nothing of its own past it.
struct HistoryAdoptionTests {
    private let start = EpochHistory.Start(epoch: 3, after: 10)

    /// A request of the master, and this node's hash at the master's start (nil: it does
    /// not hold that seq).
    private func served(
        heldThrough: Int = 12, heldStartHash: String? = "h10", storedBefore: Int = 10, startedAgain: Bool = false, firstSeq: Int = 1,
        recordedStart: EpochHistory.Start? = nil
    ) -> (HistoryAdoption.Served, String?) {
        let facts = HistoryAdoption.Served(
            epoch: 3, masterStart: start, masterStartHash: "h10", recordedStart: recordedStart, heldThrough: heldThrough,
            storedBefore: storedBefore, startedAgain: startedAgain, firstSeq: firstSeq)
        return (facts, heldStartHash)
    }

    /// Whether a member in `adoption`'s state takes the history on after each request, in turn.
    private func adopts(_ requests: (HistoryAdoption.Served, String?)..., after adoption: HistoryAdoption = HistoryAdoption()) -> [Bool] {
        var adoption = adoption
        return requests.map { facts, heldStartHash in
            adoption.served(facts, heldHash: { $0 == start.after ? heldStartHash : nil })
        }
    }

    @Test func aLogThatHoldsTheMastersStartAndNothingOfItsOwnPastItTakesOnTheHistory() {
        var adoption = HistoryAdoption()
        #expect(adopts(served()) == [true])
        _ = adoption.served(served().0, heldHash: { _ in "h10" })
        #expect(adoption.prefixOfEpoch == 3)
    }

    /// Entries past the master's start that the node's run found on disk, in a log that holds
    /// the master's start, and that it did not take on, cannot be dated: they are cut back to
    /// the start. What this run stored itself, a log that takes the history on, one started
    /// again, and one that parts from the master's at its start (the master's divergence
    /// search cuts that one), are not.
    @Test func aTailFoundOnDiskPastTheStartThatIsNotTakenOnIsCut() {
        let adoption = HistoryAdoption()
        let holdsStart: (Int) -> String? = { $0 == 10 ? "h10" : nil }
        let (undatable, _) = served(heldThrough: 15, storedBefore: 15)
        #expect(adoption.undatedTail(undatable, foundThrough: 15, heldHash: holdsStart) == 10)
        #expect(adoption.undatedTail(undatable, foundThrough: 10, heldHash: holdsStart) == nil, "this run stored everything past the start")
        #expect(adoption.undatedTail(undatable, foundThrough: 15, heldHash: { _ in "another log" }) == nil)
        #expect(adoption.undatedTail(served(heldThrough: 15, storedBefore: 15, recordedStart: start).0, foundThrough: 15, heldHash: holdsStart) == nil)
        #expect(adoption.undatedTail(served(heldThrough: 15, storedBefore: 15, startedAgain: true).0, foundThrough: 15, heldHash: holdsStart) == nil)
    }

    /// The hash at the master's start is needed (and read, at a string's cost) only until
    /// the node's log is known to be the master's.
    @Test func theHashAtTheStartIsNeededOnlyUntilTheLogIsKnownToBeTheMasters() {
        var adoption = HistoryAdoption()
        #expect(adoption.needsStartHash(epoch: 3, masterStart: start, recordedStart: nil))
        #expect(!adoption.needsStartHash(epoch: 3, masterStart: start, recordedStart: start), "recorded already")
        #expect(!adoption.needsStartHash(epoch: 3, masterStart: nil, recordedStart: nil), "a master without a start")
        _ = adoption.served(served().0, heldHash: { _ in "h10" })
        #expect(!adoption.needsStartHash(epoch: 3, masterStart: start, recordedStart: nil), "known to be epoch 3's")
        #expect(adoption.needsStartHash(epoch: 4, masterStart: EpochHistory.Start(epoch: 4, after: 12), recordedStart: start))
    }

    @Test func aLogThatDoesNotReachTheStartOrPartsFromItThereTakesNothingOn() {
        #expect(adopts(served(heldThrough: 9), served(heldStartHash: "other")) == [false, false])
    }

    /// A deposed master that comes back holds the new master's log up to its start, then
    /// entries of its own epoch: dating those to the new epoch could elect it without what
    /// the new master's majority acknowledged (the real-node simulation, seed 2064).
    @Test func aLogWithItsOwnEntriesPastTheStartTakesNothingOnUntilTheyAreCut() {
        #expect(adopts(served(storedBefore: 12)) == [false])
        var cut = HistoryAdoption()
        cut.cut(after: 10, holdingThrough: 10, epoch: 3)
        #expect(adopts(served(storedBefore: 12), after: cut) == [true], "after the cut, everything past the start came from this master")
    }

    /// Once known to be the master's (or already recorded with its start), later requests
    /// take the history on however much was stored before them.
    @Test func onceKnownItFollowsTheMastersHistory() {
        #expect(adopts(served(), served(heldThrough: 40, storedBefore: 30)) == [true, true])
        #expect(adopts(served(storedBefore: 30, recordedStart: start)) == [true])
    }

    /// A log started again at the master's start holds that start without a hash to show for
    /// it (the real-node simulation, seed 1564); one started again before the start shows
    /// nothing of it.
    @Test func aLogStartedAgainPastTheStartHoldsIt() {
        #expect(adopts(served(heldThrough: 30, heldStartHash: nil, storedBefore: 50, startedAgain: true, firstSeq: 21)) == [true])
        #expect(adopts(served(heldThrough: 30, heldStartHash: nil, storedBefore: 50, startedAgain: true, firstSeq: 8)) == [false])
    }
}

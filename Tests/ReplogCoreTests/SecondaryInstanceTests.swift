import ReplogCore
import Testing

/// A secondary's rules, by calling the value the way its shell does: which log it follows,
/// whose entries it keeps, when it starts its log again, what it stores and claims.
struct SecondaryInstanceTests {
    private func entries(_ seqs: ClosedRange<Int>, _ prefix: String = "m") -> [LogEntry] {
        seqs.map { LogEntry(seq: $0, message: "\(prefix)\($0)") }
    }

    private func secondary(holding seq: Int = 0, log: String? = nil) -> SecondaryInstance {
        SecondaryInstance(heldThrough: seq, logID: log, incarnation: "run", holdBackCapacity: 100)
    }

    /// Stores what a delivery makes ready, as the shell does when its store takes it.
    private func deliver(
        _ delivered: [LogEntry], ids: [String?] = [], continues: [Bool] = [], to secondary: inout SecondaryInstance
    ) throws -> SecondaryInstance.Ready {
        try secondary.receive(delivered, ids: ids, continues: continues, stored: [:])
    }

    @Test func aNewLogIsRecordedBeforeAnythingOfItIsStoredAndOnlyOnce() throws {
        var replica = secondary()
        #expect(try replica.mustRecord("L", adopt: false))
        replica.followed("L")
        #expect(try replica.mustRecord("L", adopt: false) == false)
    }

    /// Without failover, another master log is refused once it holds entries; with failover
    /// the master of its epoch decides, and it is adopted.
    @Test func anotherLogIsRefusedUnlessTheMasterOfItsEpochSendsIt() throws {
        let replica = secondary(holding: 3, log: "L")
        #expect(throws: SecondaryInstance.ForeignLog(held: "L", offered: "K")) { try replica.mustRecord("K", adopt: false) }
        #expect(try replica.mustRecord("K", adopt: true))
        #expect(try secondary(holding: 0, log: "L").mustRecord("K", adopt: false), "an empty log follows any master")
    }

    @Test func outOfOrderEntriesWaitForTheGapAndDuplicatesAreCounted() throws {
        var replica = secondary()
        #expect(try deliver(entries(3...4), to: &replica).entries.isEmpty)
        #expect(replica.heldBackCount == 2)
        let ready = try deliver(entries(1...2), to: &replica)
        #expect(ready.entries.map(\.seq) == [1, 2, 3, 4])
        #expect(ready.after == 0)
        #expect(try deliver(entries(2...4), to: &replica).duplicates == 3)
        #expect(replica.contiguousSeq == 4)
    }

    /// Keys and batch marks travel with their entries, held back or not: a later master
    /// answers a retry from the keys, and a batch counts only once all of it is here.
    @Test func keysAndBatchMarksAreStoredWithTheirEntries() throws {
        var replica = secondary()
        _ = try deliver(entries(2...3), ids: ["k2", nil], continues: [true, false], to: &replica)
        let ready = try deliver(entries(1...1), ids: ["k1"], continues: [false], to: &replica)
        #expect(ready.ids == ["k1", "k2", nil])
        #expect(ready.continues == [false, true, false])
    }

    @Test func aRedeliveryWithAnotherMessageIsRefusedAndChangesNothing() throws {
        var replica = secondary()
        _ = try deliver(entries(1...3), to: &replica)
        let redelivery = entries(2...4, "x")
        #expect(replica.heldSeqs(of: redelivery) == 2...3)
        let stored = [2: "m2", 3: "m3"]
        #expect(throws: SecondaryInstance.Diverged(seq: 2)) {
            try replica.receive(redelivery, ids: [], continues: [], stored: stored)
        }
        #expect(replica.contiguousSeq == 3, "seq 4 of the other log was not taken")
        #expect(try replica.receive(entries(2...4), ids: [], continues: [], stored: stored).entries.map(\.seq) == [4])
    }

    /// What the store refused counts as never received: the master's resend is stored then.
    @Test func whatTheStoreRefusedIsTakenAgain() throws {
        var replica = secondary()
        let ready = try deliver(entries(1...2), to: &replica)
        replica.notStored(ready)
        #expect(replica.contiguousSeq == 0)
        #expect(try deliver(entries(1...2), to: &replica).entries.map(\.seq) == [1, 2])
    }

    /// It claims its contiguous prefix, no further than its last whole batch and its durable
    /// end: an answer counts towards `w`.
    @Test func itClaimsOnlyWholeBatchesItHoldsDurably() throws {
        var replica = secondary()
        _ = try deliver(entries(1...5), to: &replica)
        #expect(replica.claim(completeSeq: 5) == 5)
        #expect(replica.claim(completeSeq: 3) == 3)
        #expect(replica.claim(completeSeq: 5, durableSeq: 2) == 2)
    }

    /// Entries an earlier epoch's master sent, still waiting for a gap, go when a later
    /// master delivers: its own entries at those seqs may differ.
    @Test func heldBackEntriesOfAnEarlierEpochGoWhenALaterMasterDelivers() throws {
        var replica = secondary()
        replica.deliveredBy(epoch: 1)
        _ = try deliver(entries(2...2, "old"), to: &replica)
        replica.deliveredBy(epoch: 1)
        #expect(replica.heldBackCount == 1, "the same master's entries stay")
        replica.deliveredBy(epoch: 2)
        #expect(replica.heldBackCount == 0)
        #expect(try deliver(entries(1...1, "new"), to: &replica).entries.map(\.message) == ["new1"])
    }

    /// Only a log with the master's link at the seq before its start goes on; one that parts
    /// from it there, or cannot show it (it does not hold that seq), starts again.
    @Test func itStartsAgainUnlessItHoldsTheMastersLinkBeforeTheStart() throws {
        let replica = secondary(holding: 10)
        #expect(replica.startsAgain(at: 8, masterLink: "a", heldLink: "a") == false)
        #expect(replica.startsAgain(at: 8, masterLink: "a", heldLink: "b"))
        #expect(replica.startsAgain(at: 8, masterLink: "a", heldLink: nil), "its own start is later: it can be neither checked nor cut")
        #expect(replica.startsAgain(at: 50, masterLink: "a", heldLink: nil), "it lacks what retention dropped")
    }

    /// A log started again is news to the master, as a new process is: the incarnation it
    /// answers with changes, so the master resends from what it holds now.
    @Test func aLogStartedAgainAnswersWithANewIncarnationAndHoldsNothingBack() throws {
        var replica = secondary(holding: 2)
        _ = try deliver(entries(5...6), to: &replica)
        replica.startedAgain(at: 40)
        #expect(replica.incarnation == "run+1")
        #expect(replica.restartedAt == 40)
        #expect(replica.contiguousSeq == 39)
        #expect(replica.heldBackCount == 0)
        replica.startedAgain(at: 80)
        #expect(replica.incarnation == "run+2")
    }

    /// A cut keeps what the member learned was committed, and nothing goes when it already
    /// holds the master's entry after the cut (the request was decided on an older answer).
    @Test func aCutKeepsWhatIsCommittedAndNothingGoesWhenTheNextEntryIsTheMasters() {
        let replica = secondary(holding: 5)
        #expect(replica.cut(after: 2, masterNextHash: "h3", heldNextHash: "h3", committed: 4, lastSeq: 5) == nil)
        #expect(replica.cut(after: 2, masterNextHash: "other", heldNextHash: "h3", committed: 4, lastSeq: 5) == 4)
        #expect(replica.cut(after: 2, masterNextHash: nil, heldNextHash: "h3", committed: 0, lastSeq: 5) == 2)
        #expect(replica.cut(after: 2, masterNextHash: nil, heldNextHash: "h3", committed: 9, lastSeq: 5) == 5)
    }
}

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

    /// A log's hashes and messages, as the shell's store shows them.
    private struct Held: HeldLog {
        var hashes: [Int: String] = [:]
        var stored: [Int: String] = [:]
        func hash(at seq: Int) -> String? { hashes[seq] }
        func messages(in seqs: ClosedRange<Int>) -> [Int: String] { stored.filter { seqs.contains($0.key) } }
    }

    private func delivery(
        _ entries: [LogEntry], ids: [String?] = [], continues: [Bool] = [], log: String = "L", start: (Int, String)? = nil,
        adopt: Bool = false, epoch: Int? = nil
    ) -> SecondaryInstance.Delivery {
        SecondaryInstance.Delivery(logID: log, entries: entries, ids: ids, continues: continues, start: start, adopt: adopt, epoch: epoch)
    }

    /// Both events of a delivery, as the shell calls them when its store takes what they say.
    private func deliver(
        _ delivered: [LogEntry], ids: [String?] = [], continues: [Bool] = [], epoch: Int? = nil, held: Held = Held(),
        to secondary: inout SecondaryInstance
    ) throws -> SecondaryInstance.Ready {
        let delivery = delivery(delivered, ids: ids, continues: continues, log: secondary.logID ?? "L", epoch: epoch)
        let admission = try secondary.admit(delivery, log: held)
        return try secondary.onDelivery(delivery, admitted: admission, log: held)
    }

    @Test func aNewLogIsRecordedBeforeAnythingOfItIsStoredAndOnlyOnce() throws {
        var replica = secondary()
        let first = delivery(entries(1...1))
        let admission = try replica.admit(first, log: Held())
        #expect(admission.follow == "L")
        #expect(replica.logID == nil, "nothing changes before the shell recorded it")
        _ = try replica.onDelivery(first, admitted: admission, log: Held())
        #expect(replica.logID == "L")
        #expect(try replica.admit(delivery(entries(2...2)), log: Held()).follow == nil)
    }

    /// Without failover, another master log is refused once it holds entries; with failover
    /// the master of its epoch decides, and it is adopted.
    @Test func anotherLogIsRefusedUnlessTheMasterOfItsEpochSendsIt() throws {
        let replica = secondary(holding: 3, log: "L")
        #expect(throws: SecondaryInstance.ForeignLog(held: "L", offered: "K")) {
            try replica.admit(delivery(entries(4...4), log: "K"), log: Held())
        }
        #expect(try replica.admit(delivery(entries(4...4), log: "K", adopt: true), log: Held()).follow == "K")
        #expect(
            try secondary(holding: 0, log: "L").admit(delivery(entries(1...1), log: "K"), log: Held()).follow == "K",
            "an empty log follows any master")
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
        let held = Held(stored: [1: "m1", 2: "m2", 3: "m3"])
        #expect(throws: SecondaryInstance.Diverged(seq: 2)) {
            try deliver(entries(2...4, "x"), held: held, to: &replica)
        }
        #expect(replica.contiguousSeq == 3, "seq 4 of the other log was not taken")
        #expect(try deliver(entries(2...4), held: held, to: &replica).entries.map(\.seq) == [4])
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
        _ = try deliver(entries(2...2, "old"), epoch: 1, to: &replica)
        _ = try deliver(entries(4...4, "old"), epoch: 1, to: &replica)
        #expect(replica.heldBackCount == 2, "the same master's entries stay")
        #expect(try deliver(entries(1...1, "new"), epoch: 2, to: &replica).entries.map(\.message) == ["new1"])
        #expect(replica.heldBackCount == 0)
    }

    /// A delivery the deposed master sent before the new one delivered (it passed the node's
    /// epoch check first, then waited, for `--delay` or on another event loop) is refused and
    /// changes nothing: its entries would land behind the new master's.
    @Test func aDeliveryOfAnEarlierEpochAfterALaterOnesIsRefused() throws {
        var replica = secondary()
        _ = try deliver(entries(1...1, "new"), epoch: 2, to: &replica)
        _ = try deliver(entries(3...3, "new"), epoch: 2, to: &replica)
        #expect(throws: SecondaryInstance.OlderEpoch(epoch: 1, latest: 2)) { try replica.admit(delivery(entries(2...2, "old"), epoch: 1), log: Held()) }
        #expect(replica.contiguousSeq == 1 && replica.heldBackCount == 1, "the new master's held-back entry stays")
        #expect(throws: SecondaryInstance.OlderEpoch(epoch: 1, latest: 2), "nor does it cut what the new master delivered") {
            try replica.cut(after: 0, masterNextHash: nil, heldNextHash: nil, committed: 0, lastSeq: 1, epoch: 1)
        }
    }

    /// Only a log with the master's link at the seq before its start goes on; one that parts
    /// from it there, or cannot show it (it does not hold that seq), starts again.
    @Test func itStartsAgainUnlessItHoldsTheMastersLinkBeforeTheStart() throws {
        let replica = secondary(holding: 10, log: "L")
        func startsAgain(at firstSeq: Int, heldLink: String?) throws -> Bool {
            let held = Held(hashes: heldLink.map { [firstSeq - 1: $0] } ?? [:])
            return try replica.admit(delivery(entries(firstSeq...firstSeq), start: (firstSeq, "a")), log: held).startAgainAt == firstSeq
        }
        #expect(try startsAgain(at: 8, heldLink: "a") == false)
        #expect(try startsAgain(at: 8, heldLink: "b"))
        #expect(try startsAgain(at: 8, heldLink: nil), "its own start is later: it can be neither checked nor cut")
        #expect(try startsAgain(at: 50, heldLink: nil), "it lacks what retention dropped")
        #expect(try replica.admit(delivery(entries(11...11)), log: Held()).startAgainAt == nil, "a delivery without a start goes on")
    }

    /// A log started again is news to the master, as a new process is: the incarnation it
    /// answers with changes, so the master resends from what it holds now.
    @Test func aLogStartedAgainAnswersWithANewIncarnationAndHoldsNothingBack() throws {
        var replica = secondary(holding: 2, log: "L")
        _ = try deliver(entries(5...6), to: &replica)
        func startAgain(at firstSeq: Int) throws -> SecondaryInstance.Ready {
            let restart = delivery(entries(firstSeq...firstSeq), start: (firstSeq, "a"))
            return try replica.onDelivery(restart, admitted: try replica.admit(restart, log: Held()), log: Held())
        }
        #expect(try startAgain(at: 40).entries.map(\.seq) == [40])
        #expect(replica.incarnation == "run+1")
        #expect(replica.restartedAt == 40)
        #expect(replica.contiguousSeq == 40)
        #expect(replica.heldBackCount == 0)
        _ = try startAgain(at: 80)
        #expect(replica.incarnation == "run+2")
    }

    /// A cut keeps what the member learned was committed, and nothing goes when it already
    /// holds the master's entry after the cut (the request was decided on an older answer).
    @Test func aCutKeepsWhatIsCommittedAndNothingGoesWhenTheNextEntryIsTheMasters() throws {
        let replica = secondary(holding: 5)
        #expect(try replica.cut(after: 2, masterNextHash: "h3", heldNextHash: "h3", committed: 4, lastSeq: 5) == nil)
        #expect(try replica.cut(after: 2, masterNextHash: "other", heldNextHash: "h3", committed: 4, lastSeq: 5) == 4)
        #expect(try replica.cut(after: 2, masterNextHash: nil, heldNextHash: "h3", committed: 0, lastSeq: 5) == 2)
        #expect(try replica.cut(after: 2, masterNextHash: nil, heldNextHash: "h3", committed: 9, lastSeq: 5) == 5)
    }
}

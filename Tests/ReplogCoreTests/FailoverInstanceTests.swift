import ReplogCore
import Testing

/// The election rules, one event at a time (the simulation runs them under faults).
@Suite struct FailoverInstanceTests {
    static let members = ["a", "b", "c"]
    static let timeout: ClosedRange<Duration> = .milliseconds(100)...(.milliseconds(200))

    private func node(_ me: String, record: ElectionRecord = ElectionRecord(), now: Duration = .zero) -> FailoverInstance {
        FailoverInstance(settings: .init(me: me, members: Self.members, electionTimeout: Self.timeout), record: record, now: now, seed: 1)
    }

    /// Runs `a`'s election against `b` (who grants) and returns `a`, now master.
    private func elect(_ a: inout FailoverInstance, voter b: inout FailoverInstance, log: LogPosition, voterLog: LogPosition, at now: Duration) -> [FailoverInstance.Directive] {
        guard case .requestVotes(let pre)? = a.tick(now: now, log: log).first else { return [] }
        let preAnswer = b.onVoteRequest(pre, log: voterLog, now: now)
        guard case .requestVotes(let real)? = a.onVoteAnswer(preAnswer, from: "b", log: log, now: now).first else { return [] }
        let answer = b.onVoteRequest(real, log: voterLog, now: now)
        return a.onVoteAnswer(answer, from: "b", log: log, now: now)
    }

    @Test func aSecondaryThatHearsNoMasterAsksFirstThenWinsAMajority() {
        var a = node("a")
        var b = node("b")
        #expect(a.tick(now: .milliseconds(50), log: LogPosition(epoch: 0, seq: 0)).isEmpty, "before its election timeout")
        let directives = elect(&a, voter: &b, log: LogPosition(epoch: 0, seq: 3), voterLog: LogPosition(epoch: 0, seq: 3), at: .milliseconds(250))
        #expect(directives == [.becomeMaster(epoch: 1, after: 3)])
        #expect(a.role == .master && a.epoch == 1 && a.master == "a")
        #expect(a.record.history.starts == [.init(epoch: 1, after: 3)])
        #expect(b.record == ElectionRecord(epoch: 1, votedFor: "a"), "the vote is what b must persist")
        #expect(!a.acceptsAppends(now: .milliseconds(250)), "not before a majority holds its log through its start")
        #expect(a.appendRefusal(now: .milliseconds(250)) == .takingOver(waitUpTo: .seconds(2)), "the append waits; no master to send it to yet")
        _ = a.onMemberAnswer(from: "b", epoch: 1, matched: 2, now: .milliseconds(255))
        #expect(!a.acceptsAppends(now: .milliseconds(255)) && !a.takeoverConfirmed, "b answers, but lacks seq 3: not yet")
        _ = a.onMemberAnswer(from: "b", epoch: 1, matched: 3, now: .milliseconds(260))
        #expect(a.acceptsAppends(now: .milliseconds(260)) && a.appendRefusal(now: .milliseconds(260)) == nil)
        #expect(!a.acceptsAppends(now: .milliseconds(460)), "a master that has not heard a majority lately takes nothing")
        #expect(a.appendRefusal(now: .milliseconds(460)) == .noQuorum(a.quorum(now: .milliseconds(460))))
        #expect(b.appendRefusal(now: .milliseconds(255)) == .notTheMaster(master: nil), "a voter waits for no takeover of its own")
        _ = b.onMasterContact(epoch: 1, master: "a", now: .milliseconds(260))
        #expect(b.appendRefusal(now: .milliseconds(260)) == .notTheMaster(master: "a"), "a secondary sends the client to its master")
    }

    @Test func aPreVoteChangesNothingAndIsRefusedWhileAMasterIsHeard() {
        var b = node("b")
        #expect(b.onMasterContact(epoch: 1, master: "c", now: .milliseconds(10)).accepted)
        let request = VoteRequest(epoch: 2, candidate: "a", log: LogPosition(epoch: 1, seq: 9), preVote: true)
        #expect(!b.onVoteRequest(request, log: LogPosition(epoch: 1, seq: 0), now: .milliseconds(50)).granted, "c is heard: no election")
        let later = b.onVoteRequest(request, log: LogPosition(epoch: 1, seq: 0), now: .milliseconds(500))
        #expect(later.granted && later.preVote)
        #expect(b.record.epoch == 1 && b.record.votedFor == nil, "a pre-vote changes nothing")
    }

    @Test func aNodeVotesOncePerEpochAndOnlyForALogAtLeastAsUpToDate() {
        var c = node("c")
        let mine = LogPosition(epoch: 1, seq: 5)
        let fromA = VoteRequest(epoch: 2, candidate: "a", log: LogPosition(epoch: 1, seq: 5), preVote: false)
        let fromB = VoteRequest(epoch: 2, candidate: "b", log: LogPosition(epoch: 1, seq: 7), preVote: false)
        #expect(c.onVoteRequest(fromA, log: mine, now: .seconds(1)).granted)
        #expect(!c.onVoteRequest(fromB, log: mine, now: .seconds(1)).granted, "already voted for a in epoch 2")
        #expect(c.onVoteRequest(fromA, log: mine, now: .seconds(1)).granted, "the same vote again (a lost answer)")
        let shorter = VoteRequest(epoch: 3, candidate: "b", log: LogPosition(epoch: 1, seq: 4), preVote: false)
        #expect(!c.onVoteRequest(shorter, log: mine, now: .seconds(1)).granted, "a shorter log of the same epoch")
        let olderEpoch = VoteRequest(epoch: 4, candidate: "b", log: LogPosition(epoch: 0, seq: 99), preVote: false)
        #expect(!c.onVoteRequest(olderEpoch, log: mine, now: .seconds(1)).granted, "a longer log of an older epoch")
        #expect(c.record.epoch == 4, "a refused request still shows the later epoch")
    }

    @Test func aMasterThatNoMajorityAnswersTakesNothingAndStepsDownForALaterEpoch() {
        var a = node("a")
        var b = node("b")
        _ = elect(&a, voter: &b, log: LogPosition(epoch: 0, seq: 0), voterLog: LogPosition(epoch: 0, seq: 0), at: .milliseconds(250))
        _ = a.onMemberAnswer(from: "b", epoch: 1, matched: 0, now: .milliseconds(260))
        #expect(a.acceptsAppends(now: .milliseconds(300)) && a.quorum(now: .milliseconds(300)).isWritable)
        #expect(a.tick(now: .milliseconds(500), log: LogPosition(epoch: 1, seq: 0)).isEmpty)
        #expect(!a.acceptsAppends(now: .milliseconds(500)), "b has not answered for the election timeout")
        #expect(a.quorum(now: .milliseconds(500)) == Quorum(secondaryStatuses: [.unhealthy, .unhealthy]))
        #expect(a.role == .master && a.takeoverConfirmed)

        var c = node("c")
        var b2 = node("b")
        _ = elect(&c, voter: &b2, log: LogPosition(epoch: 0, seq: 0), voterLog: LogPosition(epoch: 0, seq: 0), at: .milliseconds(250))
        #expect(c.onMemberAnswer(from: "a", epoch: 3, matched: nil, now: .milliseconds(260)) == [.stepDown(reason: "a member is in epoch 3")])
        #expect(c.role == .secondary && c.epoch == 3 && c.master == nil)
        #expect(!c.onMasterContact(epoch: 2, master: "a", now: .milliseconds(270)).accepted, "an older epoch is refused")
    }

    @Test func aSecondaryHoldsTheMastersEpochStartsUpToWhatItHolds() {
        var b = node("b")
        let master = EpochHistory([.init(epoch: 1, after: 0), .init(epoch: 3, after: 8)])
        #expect(b.onMasterContact(epoch: 3, master: "a", now: .zero).accepted)
        b.onSynced(masterHistory: master, matched: 5)
        #expect(b.record.history.lastEpoch == 1, "it holds the log only up to 5: not epoch 3's start")
        b.onSynced(masterHistory: master, matched: 8)
        #expect(b.record.history.position(lastSeq: 8) == LogPosition(epoch: 3, seq: 8))
        b.onCut(after: 7)
        #expect(b.record.history.lastEpoch == 1)
    }

    /// A request of a master: unstamped, it is served only in a cluster without failover (in
    /// one with failover it comes from a master deposed as it sent it: the real-node
    /// simulation, seed 324); an older epoch's master is refused and teaches nothing, not
    /// even who the members are; a stamp that names this node or the members otherwise is
    /// learned.
    @Test func aMasterIsHeardOnlyWithAStampOfThisEpochOrLaterWhenTheClusterHasFailover() {
        let record = ElectionRecord(epoch: 4)
        let members = ["a", "b", "c"]
        func stamp(_ epoch: Int, you: String = "b", members: [String] = members) -> EpochStamp {
            EpochStamp(epoch: epoch, master: "a", members: members, you: you, history: EpochHistory(), startHash: nil)
        }
        #expect(record.contact(by: nil, inFailover: false, me: nil, members: []) == .serveWithoutFailover)
        #expect(record.contact(by: nil, inFailover: true, me: "b", members: members) == .refuse)
        #expect(record.contact(by: stamp(3, members: ["x"]), inFailover: true, me: "b", members: members) == .refuse)
        #expect(record.contact(by: stamp(4), inFailover: true, me: "b", members: members) == .hear(learnsMembers: false))
        #expect(record.contact(by: stamp(5, members: members + ["d"]), inFailover: true, me: "b", members: members) == .hear(learnsMembers: true))
        #expect(record.contact(by: stamp(4), inFailover: false, me: nil, members: []) == .hear(learnsMembers: true))
    }

    /// A node elected with part of a batch cuts it before its first append, which would
    /// otherwise read as that batch's end.
    @Test func aNodeElectedWithPartOfABatchCutsItFirst() {
        #expect(FailoverInstance.cutBeforeTakeover(completeSeq: 7, lastSeq: 9) == 7)
        #expect(FailoverInstance.cutBeforeTakeover(completeSeq: 9, lastSeq: 9) == nil)
    }
}

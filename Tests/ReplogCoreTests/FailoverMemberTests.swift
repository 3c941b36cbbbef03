import ReplogCore
import Testing

/// A failover node's protocol state, event by event: what it keeps, whom it hears, and
/// when it takes on its master's history.
struct FailoverMemberTests {
    private let members = ["m", "x", "y"]

    private func member(_ kept: FailoverMember.Kept = FailoverMember.Kept()) -> FailoverMember {
        FailoverMember(kept: kept, electionTimeout: .milliseconds(150)...(.milliseconds(300)), seed: 7, now: .zero)
    }

    private func stamp(_ epoch: Int, history: EpochHistory = EpochHistory([.init(epoch: 1, after: 0)]), startHash: String? = nil) -> EpochStamp {
        EpochStamp(epoch: epoch, master: "m", members: members, you: "x", history: history, startHash: startHash)
    }

    /// A node started without knowing itself learns who it is and who the members are from
    /// its first master's stamp, keeps them (the shell saves `kept`), and follows that master.
    @Test func aStampTeachesTheNodeItselfAndItsMembersAndItFollowsTheMaster() {
        var node = member()
        #expect(node.status == nil, "no failover heard yet")
        let request = node.onMasterRequest(stamped: stamp(1), now: .zero)
        #expect(request == .follow(epoch: 1, directives: [], newMaster: "m"))
        #expect(node.kept.me == "x" && node.kept.members == members)
        #expect(node.kept.record.epoch == 1)
        #expect(node.masterForClients == .some("m"))
        #expect(node.onMasterRequest(stamped: stamp(1), now: .zero) == .follow(epoch: 1, directives: [], newMaster: nil))
    }

    /// A node that never heard a master learns its cluster from a candidate's vote request,
    /// as it would from a master's stamp, and votes: a master that kept its first epoch and
    /// stopped before any member heard of it is elected again (the real-node simulation,
    /// seed 1795: its members, restarted, knew nothing and refused it for good).
    @Test func aNodeThatNeverHeardAMasterLearnsItsClusterFromACandidate() {
        let ask = VoteRequest(epoch: 2, candidate: "m", log: LogPosition(epoch: 1, seq: 0), preVote: false)
        var bare = member()
        #expect(bare.onVoteRequest(ask, log: LogPosition(epoch: 0, seq: 0), now: .seconds(1), canVote: true).granted == false, "no cluster named")
        var named = ask
        (named.members, named.you) = (members, "x")
        var node = member()
        #expect(node.onVoteRequest(named, log: LogPosition(epoch: 0, seq: 0), now: .seconds(1), canVote: true).granted)
        #expect(node.kept.me == "x" && node.kept.members == members && node.kept.record.epoch == 2)
        var stranger = named
        stranger.you = "z"
        var other = member()
        #expect(other.onVoteRequest(stranger, log: LogPosition(epoch: 0, seq: 0), now: .seconds(1), canVote: true).granted == false, "not among the members")
        var known = member(FailoverMember.Kept(record: ElectionRecord(epoch: 1), me: "x", members: ["m", "x"]))
        _ = known.onVoteRequest(named, log: LogPosition(epoch: 1, seq: 0), now: .seconds(1), canVote: true)
        #expect(known.kept.members == ["m", "x"], "a node that knows its cluster keeps it")
    }

    /// As master, a member counts towards the takeover (and the node takes appends) only
    /// where its answer lies within the master's log and their hashes agree there.
    @Test func aMemberCountsTowardsTheTakeoverOnlyWhereItsHashAgrees() {
        var node = member(FailoverMember.Kept(me: "m", members: members))
        #expect(node.bootstrap(now: .zero, log: LogPosition(epoch: 0, seq: 5)) == [.becomeMaster(epoch: 1, after: 5)])
        #expect(node.becameMaster(now: .zero) == nil, "two of three must hold its start")
        func answer(_ seq: Int, _ hash: String?) -> ReplicaState { ReplicaState(seq: seq, incarnation: "i", logID: "L", hash: hash, epoch: 1) }
        #expect(node.onMemberAnswer(from: "x", answer(5, "another log"), lastSeq: 5, masterHash: "h5", now: .zero).1 == nil)
        #expect(node.onMemberAnswer(from: "x", answer(6, "h6"), lastSeq: 5, masterHash: "h6", now: .zero).1 == nil, "past this log")
        #expect(node.onMemberAnswer(from: "x", answer(5, nil), lastSeq: 5, masterHash: nil, now: .zero).1 == nil, "no hash vouches")
        #expect(node.onMemberAnswer(from: "x", answer(5, "h5"), lastSeq: 5, masterHash: "h5", now: .zero).1 == 1)
        #expect(node.memberEpochs == ["x": 1])
    }

    /// Alone, a master is its own majority: it takes appends as it is elected.
    @Test func aMasterWithoutOtherMembersTakesAppendsAtOnce() {
        var node = member(FailoverMember.Kept(me: "m", members: ["m"]))
        #expect(node.bootstrap(now: .zero, log: LogPosition(epoch: 0, seq: 0)) == [.becomeMaster(epoch: 1, after: 0)])
        #expect(node.becameMaster(now: .zero) == 1)
    }

    /// An older epoch's master is refused and teaches nothing; an unstamped request, once the
    /// node has heard a master of an epoch, is a deposed master's and is refused too.
    @Test func anOlderEpochOrAnUnstampedRequestIsRefusedAndChangesNothing() {
        var node = member(FailoverMember.Kept(record: ElectionRecord(epoch: 3), me: "x", members: members))
        let kept = node.kept
        #expect(node.onMasterRequest(stamped: stamp(2), now: .zero) == .refuse(StaleEpochAnswer(epoch: 3, master: nil)))
        #expect(node.onMasterRequest(stamped: nil, now: .zero) == .refuse(StaleEpochAnswer(epoch: 3, master: nil)))
        #expect(node.kept == kept)
        #expect(member().onMasterRequestWithoutStamp() == .serveWithoutFailover, "a node that never heard an epoch serves a plain master")
    }

    /// A vote is kept before it is answered: the shell sees `kept` change.
    @Test func aGrantedVoteIsKept() {
        var node = member(FailoverMember.Kept(record: ElectionRecord(epoch: 1), me: "x", members: members))
        let answer = node.onVoteRequest(
            VoteRequest(epoch: 2, candidate: "y", log: LogPosition(epoch: 1, seq: 5), preVote: false), log: LogPosition(epoch: 1, seq: 5),
            now: .seconds(10), canVote: true)
        #expect(answer.granted)
        #expect(node.kept.record.epoch == 2 && node.kept.record.votedFor == "y")
        var mute = member(FailoverMember.Kept(record: ElectionRecord(epoch: 1), me: "x", members: members))
        let refused = mute.onVoteRequest(
            VoteRequest(epoch: 2, candidate: "y", log: LogPosition(epoch: 1, seq: 5), preVote: false), log: LogPosition(epoch: 1, seq: 5),
            now: .seconds(10), canVote: false)
        #expect(!refused.granted && mute.kept.record.epoch == 1, "a node without a data dir does not vote")
    }

    /// After serving, a log that holds the master's start takes on its history (kept).
    @Test func aLogHoldingTheMastersStartTakesOnItsHistory() {
        var node = member()
        let history = EpochHistory([.init(epoch: 1, after: 0), .init(epoch: 2, after: 4)])
        _ = node.onMasterRequest(stamped: stamp(2, history: history, startHash: "h4"), now: .zero)
        node.served(
            epoch: 2, masterHistory: history, masterStartHash: "h4", heldThrough: 6, storedBefore: 4, startedAgain: false, firstSeq: 1,
            heldHash: { $0 == 4 ? "h4" : nil })
        #expect(node.kept.record.history == history)
        #expect(node.position(lastSeq: 6) == LogPosition(epoch: 2, seq: 6))
    }
}

extension FailoverMember {
    fileprivate func onMasterRequestWithoutStamp() -> MasterRequest {
        var copy = self
        return copy.onMasterRequest(stamped: nil, now: .zero)
    }
}

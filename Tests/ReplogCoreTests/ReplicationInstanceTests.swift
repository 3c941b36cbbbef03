import ReplogCore
import Testing

/// The master's protocol, driven event by event: no clock, no sockets, no waiting.
@Suite struct ReplicationInstanceTests {
    private static func instance(
        maxBatchSize: Int = 10, maxInFlight: Int = 2, linger: Duration = .zero,
        thresholds: PeerHealth.Thresholds = .init(suspectAfterMisses: 1, unhealthyAfterMisses: 2)
    ) -> ReplicationInstance {
        ReplicationInstance(
            settings: .init(
                secondaries: ["s1", "s2"], healthThresholds: thresholds, maxBatchSize: maxBatchSize,
                maxInFlight: maxInFlight, replicationLinger: linger),
            logID: "log")
    }

    private func answer(_ seq: Int, from incarnation: String = "a", log: String? = "log") -> ReplicaState {
        ReplicaState(seq: seq, incarnation: incarnation, logID: log)
    }

    /// Appends `count` messages with `w` and returns their waiters. (It throws rather than
    /// traps, so that a broken protocol fails the test instead of crashing the whole run.)
    private func append(_ count: Int, w: Int, to instance: inout ReplicationInstance, lastSeq: Int = 0) throws -> [Int?] {
        try (1...count).map { offset in
            let admission = try instance.admit(AppendRequest(message: "m"), nextSeq: lastSeq + offset, stored: Self.unread)
            return instance.onAppend(admission, id: nil, w: w, now: .zero)
        }
    }

    @Test func aW1AppendIsAnsweredAtOnceAndAW2AppendByTheFirstAcknowledgement() throws {
        var instance = Self.instance()
        let waiters = try append(2, w: 1, to: &instance) + append(1, w: 2, to: &instance, lastSeq: 2)
        #expect(waiters[0] == nil && waiters[1] == nil)
        let waiter = try #require(waiters[2])
        #expect(instance.onContact(from: "s1", answer(2), lastSeq: 3, now: .zero).isEmpty)
        #expect(instance.onContact(from: "s1", answer(3), lastSeq: 3, now: .zero) == [.resume([waiter])])
        #expect(instance.holders(of: 3) == 2)
    }

    /// Persist before you send: without failover nothing leaves before the master's fsync
    /// (a master that crashed before it would give the seq to another message); an elected
    /// master's fsync and replication overlap, and its answers wait for the commit point.
    @Test func onlyAnElectedMasterSendsBeforeItsFsyncAndItsMajorityAnswersWaitForTheCommitPoint() {
        let plain = Self.instance()
        #expect(ReplicationInstance.sendable(sendsBeforeDurable: plain.sendsBeforeDurable, written: 9, durable: 4) == 4)
        #expect(ReplicationInstance.sendable(sendsBeforeDurable: plain.sendsBeforeDurable, written: 9, durable: 0) == 0)
        #expect(plain.answerWaitsForCommitPoint(w: 3) == false)
        let elected = ReplicationInstance(settings: .init(secondaries: ["s1", "s2"]), logID: "log", epochStart: 0)
        #expect(ReplicationInstance.sendable(sendsBeforeDurable: elected.sendsBeforeDurable, written: 9, durable: 4) == 9)
        #expect(elected.answerWaitsForCommitPoint(w: 2))
        #expect(elected.answerWaitsForCommitPoint(w: 1) == false, "one node is no majority of three")
    }

    /// With failover the commit point is the highest seq a majority holds durably, counted
    /// as Raft counts it: only once it is an entry of this master's epoch. A member learns it
    /// only as far as it holds this master's log.
    @Test func theCommitPointCountsOnlyOnceAMajorityHoldsTheMastersStart() {
        var instance = ReplicationInstance(settings: .init(secondaries: ["s1", "s2"]), logID: "log", epochStart: 5)
        instance.onDurable(7)
        _ = instance.onContact(from: "s1", answer(4), lastSeq: 7, now: .zero)
        #expect(instance.commitSeq == 0, "a majority holds seq 4, an older epoch's entry before the master's start")
        _ = instance.onContact(from: "s1", answer(5), lastSeq: 7, now: .zero)
        #expect(instance.commitSeq == 5, "a majority holds the master's start: all before it is committed, as by Raft's no-op")
        _ = instance.onContact(from: "s1", answer(6), lastSeq: 7, now: .zero)
        #expect(instance.commitSeq == 6, "an entry of this epoch on a majority commits it and all before it")
        #expect(instance.commitSeq(for: "s1") == 6)
        #expect(instance.commitSeq(for: "s2") == 0, "s2 holds nothing of this log as far as the master knows")

        // Without failover nothing cuts the master's log: its durable end is committed.
        var single = ReplicationInstance(settings: .init(secondaries: ["s1", "s2"]), logID: "log")
        _ = single.onContact(from: "s1", answer(3), lastSeq: 3, now: .zero)
        #expect(single.commitSeq == 0, "the master's own copy counts only once durable")
        single.onDurable(3)
        #expect(single.commitSeq == 3)
    }

    /// What the members may learn of the commit point is handed on once per change, and
    /// again when a member's share goes down (it restarted with less).
    @Test func aChangeOfTheCommitPointIsTakenOnce() {
        var instance = ReplicationInstance(settings: .init(secondaries: ["s1", "s2"]), logID: "log", epochStart: 0)
        instance.onDurable(3)
        _ = instance.onContact(from: "s1", answer(3), lastSeq: 3, now: .zero)
        #expect(instance.takeCommitChange()?.seq == 3)
        #expect(instance.commitsHandedOn.members == ["s1": 3, "s2": 0])
        #expect(instance.takeCommitChange() == nil, "nothing changed since")
        _ = instance.onContact(from: "s1", answer(1, from: "b"), lastSeq: 3, now: .zero)
        #expect(instance.takeCommitChange()?.members == ["s1": 1, "s2": 0], "s1 restarted holding less")

        var single = ReplicationInstance(settings: .init(secondaries: ["s1", "s2"]), logID: "log")
        single.onDurable(3)
        #expect(single.takeCommitChange() == nil, "without failover no member learns a commit point")
    }

    /// After retention an answer is only as good as a hash the master still has: a member
    /// holding only seqs before the master's start counts as holding nothing of its log.
    @Test func anAnswerBeforeTheMastersStartVouchesForNothing() {
        let answer = ReplicaState(seq: 40, incarnation: "a", logID: "log", hash: "00000000000000aa")
        #expect(answer.vouched(byLogStartingAt: 100).seq == 0 && answer.vouched(byLogStartingAt: 100).hash == nil)
        #expect(answer.vouched(byLogStartingAt: 41) == answer, "seq 40 is the link before the start: its hash is known")
        #expect(answer.vouched(byLogStartingAt: 1) == answer)
        let empty = ReplicaState(seq: 0, incarnation: "a", logID: nil)
        #expect(empty.vouched(byLogStartingAt: 100) == empty)
    }

    /// A retry must repeat what its key was first used for; what cannot be read back is no
    /// proof that it does not.
    @Test func aRetryRepeatsWhatItsKeyWasFirstUsedFor() {
        let stored = [LogEntry(seq: 4, message: "a"), LogEntry(seq: 5, message: "b")]
        #expect(ReplicationInstance.retryRepeats(["a"], isBatch: false, stored: stored))
        #expect(!ReplicationInstance.retryRepeats(["x"], isBatch: false, stored: stored))
        #expect(ReplicationInstance.retryRepeats(["a", "b"], isBatch: true, stored: stored))
        #expect(!ReplicationInstance.retryRepeats(["a", "x"], isBatch: true, stored: stored))
        #expect(!ReplicationInstance.retryRepeats(["a", "b", "c"], isBatch: true, stored: stored), "a batch is all of it")
        #expect(ReplicationInstance.retryRepeats(["x"], isBatch: false, stored: nil), "a failed read counts as a retry")
        #expect(ReplicationInstance.retryRepeats(["x", "y"], isBatch: true, stored: nil))
        #expect(ReplicationInstance.retryRepeats(["x"], isBatch: false, stored: []), "a message no longer held")
    }

    @Test func withoutQuorumAppendsAreRefusedButARetryIsStillAnswered() throws {
        var instance = Self.instance()
        let admission = try instance.admit(AppendRequest(message: "m", id: "k"), nextSeq: 1, stored: Self.unread)
        #expect(admission == .append(seq: 1))
        _ = instance.onAppend(admission, id: "k", w: 1, now: .zero)
        for _ in 0..<2 {
            _ = instance.onHeartbeatMissed("s1")
            _ = instance.onHeartbeatMissed("s2")
        }
        #expect(!instance.quorum.isWritable)
        #expect(throws: ReplicationInstance.Refusal.readOnly(instance.quorum)) {
            try instance.admit(AppendRequest(message: "n"), nextSeq: 2, stored: Self.unread)
        }
        #expect(try instance.admit(AppendRequest(message: "m", id: "k"), nextSeq: 2, stored: Self.unread) == .retry(seq: 1))
        instance.onShutdown()
        #expect(throws: ReplicationInstance.Refusal.shuttingDown) {
            try instance.admit(AppendRequest(message: "m", id: "k"), nextSeq: 2, stored: Self.unread)
        }
    }

    /// A known key with the messages it was first used for is a retry; with others, a
    /// conflict, refused before anything is written. The log is read back only for a known key.
    @Test func aKnownKeyWithOtherMessagesIsAConflictNotARetry() throws {
        var instance = Self.instance()
        let first = AppendRequest(batch: ["a", "b"], id: "k")
        let admission = try instance.admit(first, nextSeq: 4) { _, _ in
            Issue.record("a new key reads nothing back")
            return nil
        }
        #expect(admission == .append(seq: 4))
        _ = instance.onAppend(admission, id: "k", w: 1, now: .zero, count: 2)
        let log = [LogEntry(seq: 4, message: "a"), LogEntry(seq: 5, message: "b")]
        let held: (Int, Int) -> [LogEntry]? = { seq, count in Array(log.filter { $0.seq >= seq }.prefix(count)) }
        #expect(try instance.admit(first, nextSeq: 6, stored: held) == .retry(seq: 4))
        #expect(throws: ReplicationInstance.Refusal.idConflict(id: "k", seq: 4)) {
            try instance.admit(AppendRequest(batch: ["a", "x"], id: "k"), nextSeq: 6, stored: held)
        }
        #expect(try instance.admit(AppendRequest(batch: ["a", "x"], id: "k"), nextSeq: 6, stored: Self.unread) == .retry(seq: 4), "a failed read is no proof of a conflict")
    }

    /// A log that cannot be read back (every admission here of a new key reads nothing).
    private static func unread(_ seq: Int, _ count: Int) -> [LogEntry]? { nil }

    @Test func losingAndRegainingQuorumIsReportedOnce() throws {
        var instance = Self.instance()
        #expect(instance.onHeartbeatMissed("s1") == [.statusChanged(peer: "s1", .init(from: .healthy, to: .suspected))])
        _ = instance.onHeartbeatMissed("s1")
        _ = instance.onHeartbeatMissed("s2")
        let lost = instance.onHeartbeatMissed("s2")
        #expect(lost.contains(.quorumChanged(instance.quorum)) && !instance.quorum.isWritable)
        let regained = instance.onContact(from: "s2", answer(0), lastSeq: 0, now: .zero)
        #expect(regained.contains(.quorumChanged(instance.quorum)) && instance.quorum.isWritable)
        #expect(regained.contains(.wakeStream(peer: "s2")))
    }

    @Test func aStreamPipelinesUpToItsLimitAndNeverPassesTheDurablePrefix() throws {
        var instance = Self.instance(maxBatchSize: 2, maxInFlight: 2)
        _ = instance.onContact(from: "s1", answer(0), lastSeq: 0, now: .zero)  // the first heartbeat
        _ = try append(5, w: 1, to: &instance)
        #expect(instance.nextStreamStep(for: "s1", upTo: 3, now: .zero) == .send(from: 1, limit: 2))
        instance.onSending(to: "s1", seqs: 1...2)
        #expect(instance.nextStreamStep(for: "s1", upTo: 3, now: .zero) == .send(from: 3, limit: 1))
        instance.onSending(to: "s1", seqs: 3...3)
        #expect(instance.nextStreamStep(for: "s1", upTo: 5, now: .zero) == .idle(waitForData: false), "two in flight")
        _ = instance.onDelivered(to: "s1", answer(2), lastSeq: 5, now: .zero)
        #expect(instance.nextStreamStep(for: "s1", upTo: 5, now: .zero) == .send(from: 4, limit: 2))
        instance.onSending(to: "s1", seqs: 4...5)
        _ = instance.onDelivered(to: "s1", answer(5), lastSeq: 5, now: .zero)
        #expect(instance.nextStreamStep(for: "s1", upTo: 5, now: .zero) == .idle(waitForData: true))
    }

    /// Retention dropped what a secondary lacks: its stream sends from the log's start,
    /// marked, so that it starts its log again there; once it holds the start, it goes on.
    @Test func aSecondaryBehindTheMastersStartGetsTheLogFromItsStart() throws {
        var instance = Self.instance(maxBatchSize: 4)
        _ = instance.onContact(from: "s1", answer(2), lastSeq: 0, now: .zero)
        _ = try append(20, w: 1, to: &instance)
        #expect(instance.nextStreamStep(for: "s2", upTo: 20, now: .zero) == .send(from: 1, limit: 4), "nothing dropped yet")
        instance.onLogStart(11)
        #expect(instance.nextStreamStep(for: "s1", upTo: 20, now: .zero) == .sendFromStart(limit: 4))
        instance.onSending(to: "s1", seqs: 11...14)
        _ = instance.onDelivered(to: "s1", answer(14, from: "a+1"), lastSeq: 20, now: .zero)
        #expect(instance.nextStreamStep(for: "s1", upTo: 20, now: .zero) == .send(from: 15, limit: 4))
    }

    @Test func aFailedRoundDrainsBacksOffLongerEachTimeAndResendsFromWhatTheSecondaryHolds() throws {
        var instance = Self.instance(maxBatchSize: 1, maxInFlight: 2)
        _ = try append(3, w: 1, to: &instance)
        for seq in 1...2 {
            #expect(instance.nextStreamStep(for: "s1", upTo: 3, now: .zero) == .send(from: seq, limit: 1))
            instance.onSending(to: "s1", seqs: seq...seq)
        }
        let failure = ReplicationInstance.Failure(reason: "timed out", seqs: 1...1)
        instance.onDeliveryFailed(to: "s1", failure)
        #expect(instance.nextStreamStep(for: "s1", upTo: 3, now: .zero) == .idle(waitForData: false), "seq 2 still in flight")
        _ = instance.onDelivered(to: "s1", answer(0), lastSeq: 3, now: .zero)
        #expect(instance.nextStreamStep(for: "s1", upTo: 3, now: .zero) == .backOff(attempt: 1, status: .healthy, failure: failure))
        #expect(instance.peers["s1"]!.reportedProblem == .replicationFails(reason: "timed out"))
        #expect(instance.peers["s1"]!.reportedProblem?.description == "replication requests fail: timed out")
        instance.onBackOffOver(for: "s1")
        #expect(instance.nextStreamStep(for: "s1", upTo: 3, now: .zero) == .send(from: 1, limit: 1), "resent from matched")
        instance.onSending(to: "s1", seqs: 1...1)
        instance.onDeliveryFailed(to: "s1", failure)
        #expect(instance.nextStreamStep(for: "s1", upTo: 3, now: .zero) == .backOff(attempt: 2, status: .healthy, failure: failure))
    }

    @Test func theBackOffGrowsWhileNothingIsDeliveredAndRecoveryIsReported() throws {
        var instance = Self.instance(maxBatchSize: 5, maxInFlight: 1)
        _ = try append(1, w: 1, to: &instance)
        let failure = ReplicationInstance.Failure(reason: "refused", seqs: 1...1)
        for attempt in 1...3 {
            #expect(instance.nextStreamStep(for: "s1", upTo: 1, now: .zero) == .send(from: 1, limit: 1))
            instance.onSending(to: "s1", seqs: 1...1)
            instance.onDeliveryFailed(to: "s1", failure)
            #expect(instance.nextStreamStep(for: "s1", upTo: 1, now: .zero) == .backOff(attempt: attempt, status: .healthy, failure: failure))
            instance.onBackOffOver(for: "s1")
        }
        instance.onSending(to: "s1", seqs: 1...1)
        let directives = instance.onDelivered(to: "s1", answer(1), lastSeq: 1, now: .zero)
        #expect(directives.contains(.replicationRecovered(peer: "s1", failedRounds: 3)))
        #expect(instance.peers["s1"]!.reportedProblem == nil)
    }

    @Test func aRestartedSecondaryIsResentWhatItLostAndCaughtUp() throws {
        var instance = Self.instance(maxBatchSize: 10, maxInFlight: 1)
        _ = try append(4, w: 1, to: &instance)
        instance.onSending(to: "s1", seqs: 1...4)
        _ = instance.onDelivered(to: "s1", answer(4, from: "a"), lastSeq: 4, now: .zero)
        #expect(instance.nextStreamStep(for: "s1", upTo: 4, now: .zero) == .idle(waitForData: true))
        // A new process that kept only seq 1.
        let directives = instance.onContact(from: "s1", answer(1, from: "b"), lastSeq: 4, now: .seconds(1))
        #expect(directives.contains(.secondaryRestarted(peer: "s1", seq: 1)))
        #expect(directives.contains(.catchUpStarted(peer: "s1", behind: 3)))
        #expect(directives.contains(.wakeStream(peer: "s1")))
        #expect(instance.peers["s1"]!.matched == 1)
        #expect(instance.nextStreamStep(for: "s1", upTo: 4, now: .seconds(1)) == .send(from: 2, limit: 3))
        instance.onSending(to: "s1", seqs: 2...4)
        let caughtUp = instance.onDelivered(to: "s1", answer(4, from: "b"), lastSeq: 4, now: .seconds(3))
        #expect(caughtUp.contains(.catchUpFinished(peer: "s1", entries: 3, took: .seconds(2))))
    }

    @Test func aSecondaryOfAnotherLogOrWithAFailedDiskCountsAsMissing() throws {
        var instance = Self.instance()
        let waiter = try #require(try append(1, w: 2, to: &instance)[0])
        _ = instance.onContact(from: "s1", answer(1, log: "other"), lastSeq: 1, now: .zero)
        #expect(instance.peers["s1"]!.health.status == .suspected)
        #expect(instance.peers["s1"]!.problem == .holdsAnotherLog(held: "other", master: "log"))
        #expect(instance.peers["s1"]!.problem?.description.contains("holds master log other, not this master's log") == true)
        var failed = answer(1)
        failed.storageFailure = "the disk failed an fsync"
        _ = instance.onContact(from: "s2", failed, lastSeq: 1, now: .zero)
        #expect(instance.peers["s2"]!.problem == .storageFailed(reason: "the disk failed an fsync"))
        #expect(instance.holders(of: 1) == 1, "neither counts towards w")
        #expect(instance.onContact(from: "s1", answer(1), lastSeq: 1, now: .zero).first == .resume([waiter]))
        #expect(instance.peers["s1"]!.problem == nil)
    }

    @Test func aSmallBatchLingersOnlyWhileNobodyWaits() throws {
        var instance = Self.instance(maxBatchSize: 10, maxInFlight: 2, linger: .milliseconds(2))
        _ = try append(1, w: 1, to: &instance)
        #expect(instance.nextStreamStep(for: "s1", upTo: 1, now: .zero) == .linger(.milliseconds(2)))
        #expect(instance.nextStreamStep(for: "s1", upTo: 1, now: .zero) == .idle(waitForData: true))
        instance.onLingerOver(for: "s1")
        #expect(instance.nextStreamStep(for: "s1", upTo: 1, now: .zero) == .send(from: 1, limit: 1))
        instance.onSending(to: "s1", seqs: 1...1)
        // A client now waits for w=2: its entry leaves at once.
        _ = try append(1, w: 2, to: &instance, lastSeq: 1)
        #expect(instance.nextStreamStep(for: "s1", upTo: 2, now: .zero) == .send(from: 2, limit: 1))
    }

    @Test func aGivenUpWaiterIsNeverResumed() throws {
        var instance = Self.instance()
        let waiter = try #require(try append(1, w: 3, to: &instance)[0])
        instance.onGiveUp(waiter, seq: 1)
        #expect(instance.onContact(from: "s1", answer(1), lastSeq: 1, now: .zero).isEmpty)
        #expect(instance.onContact(from: "s2", answer(1), lastSeq: 1, now: .zero).isEmpty)
    }
}

extension ReplicationInstanceTests {
    /// A secondary whose hash at its seq is not the master's holds another log: it gets a
    /// `problem`, its acknowledgement completes no append, and it stops counting for quorum.
    @Test func aSecondaryWithAnotherHashDivergedAndCountsForNothing() throws {
        var instance = Self.instance()
        let waiter = try append(1, w: 2, to: &instance)[0]!
        var diverged = ReplicaState(seq: 1, incarnation: "a", logID: "log", hash: "1111111111111111")
        #expect(!instance.onContact(from: "s1", diverged, lastSeq: 1, masterHash: "2222222222222222", now: .zero).contains(.resume([waiter])))
        #expect(instance.peers["s1"]!.problem == .differsAtOrBefore(seq: 1, hash: "1111111111111111", masterHash: "2222222222222222"))
        #expect(instance.peers["s1"]!.problem?.description.hasPrefix("diverged: its log differs from the master's at or before seq 1") == true)
        _ = instance.onContact(from: "s1", diverged, lastSeq: 1, masterHash: "2222222222222222", now: .zero)
        #expect(instance.peers["s1"]!.health.status == .unhealthy)
        // The same answer with the master's hash counts at once.
        diverged.hash = "2222222222222222"
        #expect(instance.onContact(from: "s1", diverged, lastSeq: 1, masterHash: "2222222222222222", now: .zero).first == .resume([waiter]))
    }
}

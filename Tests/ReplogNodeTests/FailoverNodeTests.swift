import Foundation
import ReplogCore
import ReplogStorage
import Synchronization
import Testing
@testable import ReplogNode

/// The node around the election rules (`Node`), event by event.
@Suite struct FailoverNodeTests {
    /// Entries an earlier epoch's master sent that still wait for a gap to fill are dropped
    /// when a later epoch's master delivers: its own entry at the gap must not release them
    /// behind it (found by the real-node simulation, seed 4667: a node briefly listed the
    /// first message of a batch followed by another master's entries).
    @Test func heldBackEntriesOfAnEarlierEpochGoWhenALaterMasterDelivers() async throws {
        let replica = try SecondaryNode(clock: ManualClock()).node
        func deliver(_ seq: Int, _ message: String, epoch: Int) async throws -> ReplicaState {
            try await replica.storeDelivery(
                RecordFraming.DecodedRecords(entries: [LogEntry(seq: seq, message: message)], ids: []), of: "L", adopt: true, epoch: epoch
            ).state
        }
        _ = try await deliver(2, "old epoch 2", epoch: 1)
        #expect(replica.heldBackCount == 1)
        let answer = try await deliver(1, "new epoch 1", epoch: 2)
        #expect(answer.seq == 1)
        #expect(replica.heldBackCount == 0)
        #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["new epoch 1"])
    }

    /// A cut never takes what the member learned was committed (a master whose retention
    /// dropped its own hash at the next seq asks for less: the real-node simulation, seeds 24
    /// and 27), and takes nothing when the member already holds the master's entry after the
    /// cut, whatever it learned (seed 4732: a cut decided on an older answer took an entry
    /// that the master had counted towards `w`).
    @Test func aCutKeepsWhatIsCommittedAndNothingGoesWhenTheNextEntryIsTheMasters() async throws {
        let replica = try SecondaryNode(clock: ManualClock()).node
        _ = try await replica.receive((1...5).map { LogEntry(seq: $0, message: "m\($0)") }, of: "L")
        let masterNext = replica.store.hash(at: 3)
        #expect(try await replica.cutLog(after: 2, unlessNextHash: masterNext, keeping: 4).cut.isEmpty, "it holds the master's seq 3")
        #expect(try await replica.cutLog(after: 2, unlessNextHash: "another log", keeping: 4).cut.map(\.seq) == [5], "seqs 1-4 are committed")
        #expect(try replica.read(from: 1, limit: 10, level: .local).map(\.seq) == [1, 2, 3, 4])
    }

    /// A master stops stamping its requests when it steps down, and requests it sent as it did
    /// arrive without a stamp. A node of a cluster with failover refuses them: answering would
    /// confirm a deposed master to a linearizable read, or store what it sends (found by the
    /// real-node simulation, seed 324: a deposed master answered a linearizable read without
    /// a write the new master's majority had acknowledged). A node that never heard a master
    /// of an epoch still serves a master without failover.
    @Test func aNodeWithFailoverRefusesRequestsWithoutAnEpochStamp() async throws {
        let clock = ManualClock()
        func node() throws -> Node {
            let store = InMemoryLogStore()
            return try Node(
                settings: Node.Settings(me: nil, members: [], master: MasterSettings(secondaries: []), canVote: false, bootstrap: false),
                store: store, commit: GroupCommit(store: store, policy: .always), directory: nil, transport: InMemoryTransport(clock: clock),
                clock: clock)
        }
        let plain = try node()
        #expect(try await plain.probe(stamp: nil).seq == 0, "a master without failover is served")
        let member = try node()
        let stamp = EpochStamp(epoch: 1, master: "m", members: ["m", "x"], you: "x", history: EpochHistory([.init(epoch: 1, after: 0)]), startHash: nil)
        _ = try await member.probe(stamp: stamp, commit: 0)
        await #expect(throws: Node.StaleEpoch.self) { try await member.probe(stamp: nil) }
        await #expect(throws: Node.StaleEpoch.self) {
            try await member.receive([LogEntry(seq: 1, message: "from a deposed master")], of: "L", stamp: nil)
        }
        #expect(try member.read(from: 1, limit: 10, level: .local).isEmpty)
    }

    /// A deposed master comes back holding the new master's log up to the new epoch's start,
    /// then two entries of its own old epoch. It must not date those entries to the new epoch
    /// (taking on the new master's history), or it would count as more up to date than a
    /// candidate that holds the new epoch's first entry, and could win an election without
    /// what the new master's majority acknowledged (found by the real-node simulation, seed
    /// 2064). Here it stays at its old position, so it votes for that candidate.
    @Test func aStaleTailIsNotDatedToTheNewEpoch() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-failover-node-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = InMemoryLogStore()
        try store.append((1...17).map { LogEntry(seq: $0, message: $0 <= 15 ? "m\($0)" : "old epoch \($0)") })
        let clock = ManualClock()
        let node = try Node(
            settings: Node.Settings(me: nil, members: [], master: MasterSettings(secondaries: []), canVote: true, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always), directory: DataDirectory(path: folder.path, role: "secondary"),
            transport: InMemoryTransport(clock: clock), clock: clock)
        let history = EpochHistory([.init(epoch: 1, after: 0), .init(epoch: 2, after: 15)])
        let stamp = EpochStamp(
            epoch: 2, master: "m", members: ["m", "x", "c"], you: "x", history: history, startHash: store.hash(at: 15))
        _ = try await node.probe(stamp: stamp)
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout

        let answer = try await node.vote(VoteRequest(epoch: 3, candidate: "c", log: LogPosition(epoch: 2, seq: 16), preVote: false))
        #expect(answer.granted, "a node whose last entries are of epoch 1 is behind a log that ends in epoch 2")
    }

    /// A node's run returns only once the master it ran has stopped: the service group closes
    /// the transport next, and a stream or heartbeat of that master still running would use
    /// it closed. Here the only member never answers, so a heartbeat is in flight when the
    /// node is cancelled, and it takes a moment to end; it must have ended when `run`
    /// returns.
    @Test(.timeLimit(.minutes(1))) func aNodesRunReturnsOnlyAfterTheMasterItRanHasStopped() async throws {
        let transport = HangingTransport()
        let store = InMemoryLogStore()
        let node = try Node(
            settings: Node.Settings(me: "m", members: ["m", "x"], master: MasterSettings(secondaries: []), canVote: false, bootstrap: true),
            store: store, commit: GroupCommit(store: store, policy: .always), directory: nil, transport: transport, clock: ManualClock())
        let run = Task { try await node.run() }
        for await _ in transport.started.stream { break }
        run.cancel()
        try await run.value
        #expect(transport.inFlight == 0, "the master's heartbeat ended before the node's run returned")
    }
    /// A vote is answered only once the election record that grants it is in the data dir,
    /// and that write runs on the storage's I/O, after the node's lock is released (never
    /// under it, nor on the event loop the request came in on). A write the disk refuses
    /// answers nothing, and the next event writes the record again.
    @Test(.timeLimit(.minutes(1))) func aVoteWaitsForItsRecordWhichIsWrittenOffTheLock() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-failover-node-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let disk = HeldIO()
        let store = InMemoryLogStore()
        let clock = ManualClock()
        let node = try Node(
            settings: Node.Settings(me: "x", members: ["m", "x", "c"], master: MasterSettings(secondaries: []), canVote: true, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always, io: disk.io), directory: DataDirectory(path: folder.path, role: "secondary"),
            transport: InMemoryTransport(clock: clock), clock: clock)
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        func saved() throws -> FailoverMember.Kept? {
            let file = folder.appendingPathComponent("election.json")
            guard FileManager.default.fileExists(atPath: file.path) else { return nil }
            return try JSONDecoder().decode(FailoverMember.Kept.self, from: Data(contentsOf: file))
        }
        let request = VoteRequest(epoch: 1, candidate: "c", log: LogPosition(epoch: 0, seq: 0), preVote: false)
        var events = disk.events.stream.makeAsyncIterator()

        let refused = Task { try await node.vote(request) }
        Task { _ = try? await refused.value; disk.events.continuation.yield(.answered) }
        #expect(await events.next() == .write, "the vote waits for its record's write")
        #expect(node.currentMaster == nil, "the node's lock is free while the record is written (this reads under it)")
        #expect(try saved()?.record.votedFor == nil)
        disk.release(.fail)
        await #expect(throws: HeldIO.Refused.self) { try await refused.value }
        #expect(await events.next() == .answered)

        let granted = Task { try await node.vote(request) }
        Task { _ = try? await granted.value; disk.events.continuation.yield(.answered) }
        #expect(await events.next() == .write, "the record the refused write lost is written again")
        disk.release(.run)
        #expect(try await granted.value.granted)
        #expect(try saved()?.record == ElectionRecord(epoch: 1, votedFor: "c", history: EpochHistory()))
    }

    /// A master's log of 19 messages, and its stamp as master of epoch 6, which started
    /// after seq 14 (epoch 1 before it).
    private static func epochSix() throws -> (messages: [LogEntry], stamp: EpochStamp) {
        let messages = (1...19).map { LogEntry(seq: $0, message: "m\($0)") }
        let master = InMemoryLogStore()
        try master.append(messages)
        let history = EpochHistory([.init(epoch: 1, after: 0), .init(epoch: 6, after: 14)])
        return (messages, EpochStamp(epoch: 6, master: "m", members: ["m", "x", "c"], you: "x", history: history, startHash: master.hash(at: 14)))
    }

    /// A voting member that holds seqs `1...held` of `epochSix`, and a delivery of the rest
    /// of it stamped epoch 6, once it waits for its fsync (which `disk` holds).
    private static func deliveryWaitingForItsFsync(
        holding held: Int
    ) async throws -> (Node, DurableMemoryStore, HeldIO, ManualClock, Task<ReplicaState, any Error>) {
        let (messages, stamp) = try epochSix()
        let disk = HeldIO()
        let store = DurableMemoryStore()
        try store.append(Array(messages.prefix(held)))
        let clock = ManualClock()
        let node = try Node(
            settings: Node.Settings(me: nil, members: [], master: MasterSettings(secondaries: []), canVote: true, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always, io: disk.io), directory: nil,
            transport: InMemoryTransport(clock: clock), clock: clock)
        var events = disk.events.stream.makeAsyncIterator()
        let delivery = Task {
            try await node.receive(RecordFraming.DecodedRecords(entries: Array(messages[held...]), ids: []), of: "L", stamp: stamp)
        }
        #expect(await events.next() == .write, "the delivery waits for its fsync")
        return (node, store, disk, clock, delivery)
    }

    /// A member takes on its master's epoch history when its log holds the master's start
    /// (their hashes there agree). The hash is read as the delivery is stored: a retention
    /// pass that runs during the delivery's fsync may drop that seq, and a member that then
    /// failed to take on the history would date the master's entries to an older epoch and
    /// vote for a shorter log than its own (found by the real-node simulation, seed 1109: two
    /// acknowledged writes lost).
    @Test(.timeLimit(.minutes(1))) func retentionDuringADeliveryDoesNotHideTheMastersEpochStart() async throws {
        let (node, store, disk, clock, delivery) = try await Self.deliveryWaitingForItsFsync(holding: 13)
        #expect(try store.applyRetention(RetentionPolicy(messages: 2), now: Date()) > 0)
        #expect(store.firstSeq > 14, "retention dropped the master's epoch start")
        disk.release(.run)
        #expect(try await delivery.value.seq == 19)

        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        let answer = try await node.vote(VoteRequest(epoch: 7, candidate: "c", log: LogPosition(epoch: 6, seq: 15), preVote: false))
        #expect(!answer.granted, "its log (epoch 6, seq 19) is ahead of the candidate's")
    }

    /// A member that votes in a later epoch while a delivery of its master waits for its
    /// fsync refuses that delivery's answer: its vote counted only what was durable, so not
    /// those entries, and a deposed master that counted them towards `w` could answer `201`
    /// for entries the new master never held.
    @Test(.timeLimit(.minutes(1))) func anAnswerOfAnEpochTheNodeLeftWhileItsFsyncRanIsRefused() async throws {
        let (node, _, disk, clock, delivery) = try await Self.deliveryWaitingForItsFsync(holding: 14)
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        let vote = try await node.vote(VoteRequest(epoch: 7, candidate: "c", log: LogPosition(epoch: 6, seq: 14), preVote: false))
        #expect(vote.granted, "its durable log ends at seq 14, as the candidate's does")
        disk.release(.run)
        let refused = await #expect(throws: Node.StaleEpoch.self) { try await delivery.value }
        #expect(refused?.answer.epoch == 7, "the master of epoch 6 learns that it was deposed")
    }

    /// A delivery that waited (here for `--delay`) while the node voted in a later epoch
    /// stores nothing, and is refused: the log the vote was cast on is not the deposed
    /// master's to extend.
    @Test(.timeLimit(.minutes(1))) func aDeliveryOfAnEpochTheNodeLeftWhileItWaitedStoresNothing() async throws {
        let (messages, stamp) = try Self.epochSix()
        let store = DurableMemoryStore()
        try store.append(Array(messages.prefix(14)))
        let clock = ManualClock()
        var settings = Node.Settings(me: nil, members: [], master: MasterSettings(secondaries: []), canVote: true, bootstrap: false)
        settings.secondary.delay = .seconds(60)
        let node = try Node(
            settings: settings, store: store, commit: GroupCommit(store: store, policy: .always, io: BlockingIO { try $0() }), directory: nil,
            transport: InMemoryTransport(clock: clock), clock: clock)
        let delivery = Task {
            try await node.receive(RecordFraming.DecodedRecords(entries: Array(messages[14...]), ids: []), of: "L", stamp: stamp)
        }
        await clock.waitForSleepers(1)  // the delivery waits for its delay
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        let vote = try await node.vote(VoteRequest(epoch: 7, candidate: "c", log: LogPosition(epoch: 6, seq: 14), preVote: false))
        #expect(vote.granted)
        clock.advance(by: .seconds(60))
        let refused = await #expect(throws: Node.StaleEpoch.self) { try await delivery.value }
        #expect(refused?.answer.epoch == 7)
        #expect(store.lastSeq == 14, "nothing of epoch 6 was stored after the vote")
    }

    /// A member whose entries of a new epoch reach its disk, and which crashes before the
    /// election record that dates them to that epoch does, cannot date them after its
    /// restart (the log and `election.json` are two files, written apart). Claiming them
    /// would count them towards `w` while its position says an older epoch, and it would
    /// vote for a candidate of the new epoch whose log is shorter. So it cuts them at its
    /// master's first request, claims only the master's log up to its start, and dates what
    /// the master sends again.
    @Test(.timeLimit(.minutes(1))) func entriesARestartedMemberCannotDateAreCutAndSentAgain() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-failover-node-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (messages, stamp) = try Self.epochSix()
        let store = DurableMemoryStore()
        try store.append(Array(messages.prefix(14)))
        let clock = ManualClock()
        let settings = Node.Settings(me: nil, members: [], master: MasterSettings(secondaries: []), canVote: true, bootstrap: false)
        let tail = RecordFraming.DecodedRecords(entries: Array(messages[14...]), ids: [])
        let disk = HeldIO()
        let node = try Node(
            settings: settings, store: store, commit: GroupCommit(store: store, policy: .always, io: disk.io),
            directory: DataDirectory(path: folder.path, role: "secondary"), transport: InMemoryTransport(clock: clock), clock: clock)
        var events = disk.events.stream.makeAsyncIterator()
        let delivery = Task { try await node.receive(tail, of: "L", stamp: stamp) }
        #expect(await events.next() == .write, "the record of epoch 6 and its members")
        disk.release(.run)
        #expect(await events.next() == .write, "the record of the master log it follows")
        disk.release(.run)
        #expect(await events.next() == .write, "the fsync of seqs 15-19")
        disk.release(.run)
        #expect(await events.next() == .write, "the record that dates them to epoch 6")
        disk.release(.fail)  // the node crashes before that record is on disk
        await #expect(throws: HeldIO.Refused.self) { try await delivery.value }

        let restarted = try Node(
            settings: settings, store: store, commit: GroupCommit(store: store, policy: .always, io: BlockingIO { try $0() }),
            directory: DataDirectory(path: folder.path, role: "secondary"), transport: InMemoryTransport(clock: clock), clock: clock)
        #expect(try await restarted.probe(stamp: stamp).seq == 14, "its heartbeat answer claims none of seqs 15-19")
        #expect(store.lastSeq == 14)
        #expect(try await restarted.receive(tail, of: "L", stamp: stamp).seq == 19)
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        let answer = try await restarted.vote(VoteRequest(epoch: 7, candidate: "c", log: LogPosition(epoch: 6, seq: 15), preVote: false))
        #expect(!answer.granted, "its log (epoch 6, seq 19) is ahead of the candidate's")
    }

    /// A delivery that `--error-rate` fails after storing it still takes the master's epoch
    /// history on: otherwise the member would hold entries past the master's start that no
    /// later request could date (its log already reaches past the start), claim them in its
    /// answers, and vote as of an older epoch.
    @Test func aDeliveryFailedOnPurposeAfterStoringIsDatedAllTheSame() async throws {
        let (messages, stamp) = try Self.epochSix()
        let store = InMemoryLogStore()
        try store.append(Array(messages.prefix(14)))
        let clock = ManualClock()
        let node = try Node(
            settings: Node.Settings(
                me: nil, members: [], master: MasterSettings(secondaries: []), secondary: SecondarySettings(errorRate: 1), canVote: true, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always), directory: nil, transport: InMemoryTransport(clock: clock), clock: clock)
        await #expect(throws: Node.InjectedFailure.self) {
            try await node.receive(RecordFraming.DecodedRecords(entries: Array(messages[14...]), ids: []), of: "L", stamp: stamp)
        }
        #expect(try await node.probe(stamp: stamp).seq == 19)
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        let answer = try await node.vote(VoteRequest(epoch: 7, candidate: "c", log: LogPosition(epoch: 6, seq: 15), preVote: false))
        #expect(!answer.granted, "its log (epoch 6, seq 19) is ahead of the candidate's")
    }

    /// A cut rewrites the log's tail on the storage's I/O, not where its request came in.
    @Test(.timeLimit(.minutes(1))) func aCutRewritesTheLogOnTheStoragesIO() async throws {
        let (node, store, disk) = try Self.secondaryOnHeldIO(holding: 5)
        let stamp = EpochStamp(
            epoch: 1, master: "m", members: ["m", "x", "c"], you: "x", history: EpochHistory([.init(epoch: 1, after: 0)]), startHash: nil)
        var events = disk.events.stream.makeAsyncIterator()
        let cut = Task { try await node.truncate(TruncateRequest(after: 2, nextHash: nil), stamp: stamp) }
        Task { _ = try? await cut.value; disk.events.continuation.yield(.answered) }
        #expect(await events.next() == .write)
        #expect(store.lastSeq == 5, "the cut waits for the storage's I/O")
        disk.release(.run)
        try #require(await events.next() == .write, "the rollback file")
        disk.release(.run)
        #expect(try await cut.value.seq == 2)
        #expect(store.lastSeq == 2)
    }

    /// A cut that waited (behind another cut's disk work) while the node voted in a later
    /// epoch cuts nothing: the deposed master's word does not reach past the vote, nor, once
    /// the node is elected, into the new master's log.
    @Test(.timeLimit(.minutes(1))) func aCutOfAnEpochTheNodeLeftWhileItWaitedCutsNothing() async throws {
        let (node, store, disk, clock, stamp) = try Self.votingMemberOnHeldIO(holding: 5)
        var events = disk.events.stream.makeAsyncIterator()
        let first = Task { try await node.truncate(TruncateRequest(after: 4, nextHash: nil), stamp: stamp) }
        #expect(await events.next() == .write, "the first cut rewrites the log")
        let second = Task { try await node.truncate(TruncateRequest(after: 2, nextHash: nil), stamp: stamp) }
        while node.waitingForDiskWork == 0 { await Task.yield() }  // the second cut waits for the first
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        let vote = try await node.vote(VoteRequest(epoch: 2, candidate: "c", log: LogPosition(epoch: 1, seq: 5), preVote: false))
        #expect(vote.granted)
        disk.release(.run)
        #expect(await events.next() == .write, "the first cut's rollback file")
        disk.release(.run)
        await #expect(throws: Node.StaleEpoch.self, "its answer is refused too") { try await first.value }
        Task { _ = try? await second.value; disk.events.continuation.yield(.answered) }
        guard await events.next() == .answered else {
            Issue.record("the second cut rewrote the log after the node voted in a later epoch")
            return
        }
        let refused = await #expect(throws: Node.StaleEpoch.self) { try await second.value }
        #expect(refused?.answer.epoch == 2)
        #expect(store.lastSeq == 4, "only the cut decided before the vote ran")
    }

    /// While a cut rewrites the log, the node's position in an election ends where the cut
    /// does: a vote (or its own candidacy) on entries about to go would claim a log it will
    /// not hold.
    @Test(.timeLimit(.minutes(1))) func aVoteDuringACutComparesTheLogTheCutLeaves() async throws {
        let (node, store, disk, clock, stamp) = try Self.votingMemberOnHeldIO(holding: 5)
        // The candidate's entries are of no epoch too.
        let shorter = VoteRequest(epoch: 2, candidate: "c", log: LogPosition(epoch: 0, seq: 2), preVote: true)
        clock.advance(by: .seconds(10))
        #expect(try await node.vote(shorter).granted == false, "before the cut, its log is longer than the candidate's")
        var events = disk.events.stream.makeAsyncIterator()
        let cut = Task { try await node.truncate(TruncateRequest(after: 2, nextHash: nil), stamp: stamp) }
        #expect(await events.next() == .write, "the cut rewrites the log")
        clock.advance(by: .seconds(10))  // no master heard for longer than the election timeout
        var vote = shorter
        vote.preVote = false
        #expect(try await node.vote(vote).granted, "the candidate holds all that the cut leaves")
        disk.release(.run)
        #expect(await events.next() == .write, "the rollback file")
        disk.release(.run)
        _ = try? await cut.value
    }

    /// A node elected while its log is being rewritten (here started again at a master's
    /// start) takes over only once that work is done: its master's first appends must not
    /// land in a log the work still rewrites.
    @Test(.timeLimit(.minutes(1))) func aTakeoverWaitsForTheDiskWorkUnderWay() async throws {
        // Alone in its cluster, it elects itself once its election timeout passes.
        let store = InMemoryLogStore()
        let (node, disk, clock) = try Self.node(on: store, holding: 5, me: "x", members: ["x"], canVote: true)
        var events = disk.events.stream.makeAsyncIterator()
        var behind = RecordFraming.DecodedRecords(entries: [LogEntry(seq: 20, message: "m20")])
        behind.start = LogStart(firstSeq: 20, link: Array(repeating: 7, count: 32))
        let delivery = Task { try await node.receive(behind, of: "L", stamp: nil) }
        try #require(await events.next() == .write, "the log started again")
        let running = Task { try await node.run() }
        defer { running.cancel() }
        await clock.waitForSleepers(1)  // the election timer
        clock.advance(by: .seconds(10))
        // Elected, it either waits for the restart, or goes on to record its log's id.
        while node.waitingForDiskWork == 0, disk.held < 2 { await Task.yield() }
        #expect(disk.held == 1 && node.currentMaster == nil, "the takeover waits for the log's restart")
        disk.release(.run)
        _ = try await delivery.value
        #expect(await events.next() == .write, "the log's id, recorded as it takes over")
        disk.release(.run)
        await node.waitUntilSettled(upTo: .seconds(60))  // the manual clock never ends the wait: the takeover does
        #expect(node.currentMaster?.store.lastSeq == 20)
    }

    /// A voting member of master log "L" that holds seqs `1...held` fsynced (of no epoch:
    /// they came before it heard the master), whose storage I/O the test runs by hand; and
    /// the stamp of the master of epoch 1 among m, x and c.
    private static func votingMemberOnHeldIO(holding held: Int) throws -> (Node, DurableMemoryStore, HeldIO, ManualClock, EpochStamp) {
        let store = DurableMemoryStore()
        let (node, disk, clock) = try node(on: store, holding: held, canVote: true)
        let stamp = EpochStamp(
            epoch: 1, master: "m", members: ["m", "x", "c"], you: "x", history: EpochHistory([.init(epoch: 1, after: 0)]), startHash: nil)
        return (node, store, disk, clock, stamp)
    }

    /// A secondary of master log "L" that holds seqs `1...held` in memory, whose storage I/O
    /// the test runs by hand.
    private static func secondaryOnHeldIO(holding held: Int) throws -> (Node, InMemoryLogStore, HeldIO) {
        let store = InMemoryLogStore()
        let (node, disk, _) = try node(on: store, holding: held, canVote: false)
        return (node, store, disk)
    }

    /// A node of master log "L" on `store`, filled with seqs `1...held`, whose storage I/O the
    /// test runs by hand, on a manual clock.
    private static func node(
        on store: any LogStore, holding held: Int, me: String? = nil, members: [String] = [], canVote: Bool
    ) throws -> (Node, HeldIO, ManualClock) {
        let disk = HeldIO()
        try store.append((1...held).map { LogEntry(seq: $0, message: "m\($0)") })
        let clock = ManualClock()
        let node = try Node(
            settings: Node.Settings(me: me, members: members, master: MasterSettings(secondaries: []), canVote: canVote, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always, io: disk.io), directory: nil,
            transport: InMemoryTransport(clock: clock), clock: clock, logID: "L")
        return (node, disk, clock)
    }

    /// A deposed master's append whose fsync ran while its node, following the new master,
    /// cut the entry from its log gets no 201: that fsync covers a log that no longer holds
    /// the entry (the real-node simulation found it with a stalled disk).
    @Test(.timeLimit(.minutes(1))) func anAppendWhoseEntryWasCutWhileItsFsyncRanIsNotAcknowledged() async throws {
        // Alone in its cluster, it elects itself once its election timeout passes.
        let store = DurableMemoryStore()
        let (node, disk, clock) = try Self.node(on: store, holding: 1, me: "x", members: ["x"], canVote: true)
        var events = disk.events.stream.makeAsyncIterator()
        let running = Task { try await node.run() }
        defer { running.cancel() }
        await clock.waitForSleepers(1)  // the election timer
        clock.advance(by: .seconds(10))
        try #require(await events.next() == .write, "the log's id, recorded as it takes over")
        disk.release(.run)
        await node.waitUntilSettled(upTo: .seconds(60))  // the manual clock never ends the wait: the takeover does
        let master = try #require(node.currentMaster)
        let append = Task { try await master.append(AppendRequest(message: "a", w: 1)) }
        try #require(await events.next() == .write, "the append's fsync")
        // The master of a later epoch cuts what this node holds past seq 1, while that fsync
        // runs. (Its stamp names the members this node knows: one that learns other members
        // from a stamp makes its election state anew, and does not step down.)
        let stamp = EpochStamp(
            epoch: 5, master: "y", members: ["x"], you: "x", history: EpochHistory([.init(epoch: 5, after: 1)]),
            startHash: store.hash(at: 1))
        let cut = Task { try await node.truncate(TruncateRequest(after: 1, nextHash: nil), stamp: stamp) }
        try #require(await events.next() == .write, "the cut")
        disk.releaseNewest(.run)
        try #require(await events.next() == .write, "the rollback file")
        disk.releaseNewest(.run)
        #expect(try await cut.value.seq == 1)
        #expect(store.lastSeq == 1)
        disk.release(.run)  // the append's fsync ends
        // Whatever the append waits for on the clock then (the commit point) ends as the clock
        // moves: bounded, so that a build that answers it waits no longer than this.
        let outcome = Mutex<Result<Master.AppendResult, any Error>?>(nil)
        Task { let result = await append.result; outcome.withLock { $0 = result } }
        for _ in 0..<100_000 where outcome.withLock({ $0 == nil }) {
            clock.advance(by: .milliseconds(10))
            await Task.yield()
        }
        switch try #require(outcome.withLock { $0 }, "the append was answered") {
        case .success(let appended): Issue.record("a 201 for seq \(appended.seq), which the log no longer holds")
        case .failure(let error): #expect(error as? Master.AppendError == .notTheMaster(master: nil))
        }
    }

    /// A delivery that starts the log again at the master's start (the master's retention
    /// dropped what this node lacks) rewrites the log on the storage's thread pool, not under
    /// the replica's lock on an event loop: meanwhile a heartbeat is answered at once with
    /// what the node held, and the next delivery goes on from the new start.
    @Test(.timeLimit(.minutes(1))) func aLogStartedAgainIsRewrittenOnTheStoragesIO() async throws {
        let (node, store, disk) = try Self.secondaryOnHeldIO(holding: 5)
        var events = disk.events.stream.makeAsyncIterator()
        var behind = RecordFraming.DecodedRecords(entries: [LogEntry(seq: 20, message: "m20")])
        behind.start = LogStart(firstSeq: 20, link: Array(repeating: 7, count: 32))
        let delivery = Task { try await node.receive(behind, of: "L", stamp: nil) }
        Task { _ = try? await delivery.value; disk.events.continuation.yield(.answered) }
        try #require(await events.next() == .write, "the log started again")
        #expect(store.lastSeq == 5, "the restart waits for the storage's I/O")
        #expect(try await node.probe(stamp: nil).seq == 5, "a heartbeat meanwhile gets what the node held")
        let next = Task { try await node.receive([LogEntry(seq: 21, message: "m21")], of: "L", stamp: nil) }
        disk.release(.run)
        #expect(try await delivery.value.seq == 20)
        #expect(try await next.value.seq == 21)
        #expect(store.firstSeq == 20)
    }
}

/// A store in memory that a group commit fsyncs (through its `BlockingIO`), with a
/// segment per record, for retention to drop. It keeps no keys or batch marks.
private final class DurableMemoryStore: LogStore {
    private let inner = InMemoryLogStore(segmentBytes: 20)

    var isDurable: Bool { true }
    var lastSeq: Int { inner.lastSeq }
    var firstSeq: Int { inner.firstSeq }
    var start: LogStart { inner.start }
    func append(_ entries: [LogEntry]) throws(LogStoreError) {
        for entry in entries { try inner.append([entry]) }
    }
    func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] { try inner.read(from: seq, limit: limit) }
    func hash(at seq: Int) -> String? { inner.hash(at: seq) }
    func applyRetention(_ policy: RetentionPolicy, now: Date) throws(LogStoreError) -> Int { inner.applyRetention(policy, now: now) }
    func restart(at start: LogStart) throws(LogStoreError) { try inner.restart(at: start) }
    func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry] { try inner.truncate(after: seq) }
}

/// Blocking I/O a test runs by hand: each piece of work waits until the test lets it run or
/// fail, so that the test sees what happens while the disk writes.
private final class HeldIO: Sendable {
    enum Event: Equatable { case write, answered }
    enum Verdict { case run, fail }
    struct Refused: Error {}

    /// `.write` as each piece of work arrives; the test adds its own events.
    let events: (stream: AsyncStream<Event>, continuation: AsyncStream<Event>.Continuation) = AsyncStream.makeStream()
    private let waiting = Mutex<[CheckedContinuation<Verdict, Never>]>([])

    var io: BlockingIO {
        BlockingIO { [self] work in
            let verdict = await withCheckedContinuation { continuation in
                waiting.withLock { $0.append(continuation) }
                events.continuation.yield(.write)
            }
            guard verdict == .run else { throw Refused() }
            try work()
        }
    }

    /// How many pieces of work wait to be let through.
    var held: Int { waiting.withLock { $0.count } }

    /// Lets the oldest waiting piece of work run, or fail.
    func release(_ verdict: Verdict) {
        waiting.withLock { $0.removeFirst() }.resume(returning: verdict)
    }

    /// Lets the newest waiting piece of work run, or fail: work that came later goes first.
    func releaseNewest(_ verdict: Verdict) {
        waiting.withLock { $0.removeLast() }.resume(returning: verdict)
    }
}

/// A transport whose peers never answer: every request waits until it is cancelled.
private final class HangingTransport: ReplicationTransport {
    /// Yields as each request starts.
    let started: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation) = AsyncStream.makeStream()
    private let running = Mutex(0)

    /// Requests started and not ended.
    var inFlight: Int { running.withLock { $0 } }

    /// Waits until cancelled, then takes 200 ms more to end, as a request whose connection
    /// must be closed does: a run that returned without waiting for it finds it running.
    private func hang() async throws -> Never {
        running.withLock { $0 += 1 }
        defer { running.withLock { $0 -= 1 } }
        started.continuation.yield()
        try? await Task.sleep(for: .seconds(3_600))
        await withCheckedContinuation { ended in
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { ended.resume() }
        }
        throw CancellationError()
    }

    func replicate(_ batch: RecordBatch, of logID: String, to peer: String, timeout: Duration) async throws -> ReplicaState { try await hang() }
    func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState { try await hang() }
    func hash(of peer: String, at seq: Int, timeout: Duration) async throws -> String? { try await hang() }
}

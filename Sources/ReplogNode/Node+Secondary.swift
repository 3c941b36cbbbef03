import Foundation
import Logging
import ReplogCore
import ReplogStorage

/// What `--delay` and `--error-rate` do to a secondary, and its hold-back limit.
public struct SecondarySettings: Sendable {
    /// Each replication request waits this long before it is stored, listed and acknowledged.
    public var delay: Duration
    /// Probability of answering 500 *after* storing a replication request.
    public var errorRate: Double
    /// How far ahead of its contiguous prefix a secondary buffers out-of-order entries.
    public var holdBackCapacity: Int
    /// Longest a long poll (`GET /messages?wait=`) waits here, whatever it asks for.
    public var maxLongPoll: Duration

    public init(delay: Duration = .zero, errorRate: Double = 0, holdBackCapacity: Int = 100_000, maxLongPoll: Duration = .seconds(60)) {
        self.delay = delay
        self.errorRate = errorRate
        self.holdBackCapacity = holdBackCapacity
        self.maxLongPoll = maxLongPoll
    }
}

/// The secondary role of a node, and every request of a master (a delivery, a heartbeat,
/// a cut), whatever role the node plays: it asks `FailoverMember` whether to serve the
/// request, carries out what its `SecondaryInstance` decides about a delivery (record the
/// log it follows, start the log again, store, make durable), asks `FailoverMember` again
/// what the stored log means for its epoch history, and answers with what the instance
/// says it may claim. The instance is part of the node's state, behind the node's one lock:
/// a delivery's store step, a cut, and the election rules that rest on them (a vote, the
/// epoch history taken on) see one state, not two.
extension Node {
    /// The secondary stored the entries but was told (by `--error-rate`) to fail the request.
    public struct InjectedFailure: Error, Equatable {
        public var state: ReplicaState { stored.state }
        public let stored: Stored
    }

    /// What a delivery left in the store, as its store step saw it (under the lock that
    /// orders deliveries and cuts): what the failover rules ask of it (`HistoryAdoption`).
    public struct Stored: Sendable, Equatable {
        /// What it may answer with.
        public var state: ReplicaState
        /// Its hash at the seq asked for (`mark`) once stored, before the fsync.
        public var markHash: String?
        /// The last seq the store held just before this delivery's entries: read when they
        /// were appended, not when the request came, as a cut may run between the two.
        public var storedBefore: Int
        /// Whether this delivery started the log again at the master's start.
        public var startedAgain: Bool
    }

    /// The secondary's protocol state, and the disk work under way. Made anew each time the
    /// node goes back to following (a new incarnation); while it is the master, unused.
    struct SecondaryRole {
        var instance: SecondaryInstance
        var diskWork: DiskWork?
    }

    /// The log is being rewritten off the lock (a master log's id recorded, the log started
    /// again, a cut): deliveries and cuts wait for it, and heartbeats get what it claimed
    /// as the work began (it never claims more than the work leaves it).
    struct DiskWork {
        var claimed: ReplicaState
        /// Where a cut ends the log (nil for other work).
        var cutAfter: Int?
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    /// A secondary role, in its run `incarnation`, for `store` holding `logID`'s log through
    /// its last seq.
    static func secondaryRole(on store: any LogStore, following logID: String?, incarnation: String, settings: SecondarySettings) -> SecondaryRole {
        SecondaryRole(
            instance: SecondaryInstance(
                heldThrough: store.lastSeq, logID: logID, incarnation: incarnation, holdBackCapacity: settings.holdBackCapacity))
    }

    // MARK: A master's requests

    /// A master's delivery (`POST /replicate`).
    public func receive(
        _ entries: [LogEntry], ids: [String?] = [], of logID: String, stamp: EpochStamp? = nil, commit: Int? = nil
    ) async throws -> ReplicaState {
        try await receive(RecordFraming.DecodedRecords(entries: entries, ids: ids), of: logID, stamp: stamp, commit: commit)
    }

    /// A master's delivery (`POST /replicate`), with keys and batch marks, and (failover) the
    /// commit point this node may learn.
    public func receive(
        _ records: RecordFraming.DecodedRecords, of logID: String, stamp: EpochStamp? = nil, commit: Int? = nil
    ) async throws -> ReplicaState {
        try await follow(stamp)
        let cutsBefore = cuts
        let epochStart = state.withLock { $0.member.startToHash(for: stamp) }
        let stored: Stored
        var injected: InjectedFailure?
        do {
            stored = try await storeDelivery(records, of: logID, adopt: stamp != nil, epoch: stamp?.epoch, hashAt: epochStart)
        } catch let failure as InjectedFailure {
            // Stored, then failed by `--error-rate`: dated all the same, or no later request
            // could take the master's history on (its log would reach past the start).
            (stored, injected) = (failure.stored, failure)
        } catch let older as SecondaryInstance.OlderEpoch {
            throw stale(older)
        }
        state.withLock { $0.logID = logID }
        var answer = stored.state
        try await synced(
            answer, stamp: stamp, storedBefore: stored.storedBefore, startedAgain: stored.startedAgain,
            heldHash: { [store] seq in seq == epochStart ? stored.markHash ?? store.hash(at: seq) : store.hash(at: seq) })
        if let injected { throw injected }
        if cuts != cutsBefore { answer = replicaState }
        return try answering(answer, to: stamp, commit: commit)
    }

    /// A master's heartbeat (`GET /replicate`), with (failover) the commit point this node
    /// may learn.
    public func probe(stamp: EpochStamp?, commit: Int? = nil) async throws -> ReplicaState {
        try await follow(stamp)
        let cutsBefore = cuts
        var answer = replicaState
        try await synced(answer, stamp: stamp, storedBefore: store.lastSeq)
        if cuts != cutsBefore { answer = replicaState }
        return try answering(answer, to: stamp, commit: commit)
    }

    /// The refusal of a request of a master older than one that delivered here.
    private func stale(_ older: SecondaryInstance.OlderEpoch) -> StaleEpoch {
        let refusal = state.withLock { $0.member.refusal(answeringIn: older.epoch) }
        return StaleEpoch(answer: refusal ?? StaleEpochAnswer(epoch: older.latest, master: nil))
    }

    /// What a request of a master is answered with, once everything the answer claims is
    /// durable here: with failover, as an answer of the request's epoch, and refused if this
    /// node moved to a later epoch meanwhile (`FailoverMember.refusal(answeringIn:)`). Then
    /// it learns the commit point the master sent.
    private func answering(_ answer: ReplicaState, to stamp: EpochStamp?, commit: Int? = nil) throws(StaleEpoch) -> ReplicaState {
        guard let stamp else { return answer }
        if let refusal = state.withLock({ $0.member.refusal(answeringIn: stamp.epoch) }) { throw StaleEpoch(answer: refusal) }
        if let commit { commitPoint.learn(commit) }
        var answer = answer
        answer.epoch = stamp.epoch
        return answer
    }

    /// The master of this epoch says where this node's log parts from its own. The cut
    /// rewrites the log's tail and saves a rollback file: on the storage's thread pool.
    public func truncate(_ request: TruncateRequest, stamp: EpochStamp?) async throws -> ReplicaState {
        guard let stamp else { throw StaleEpoch(answer: StaleEpochAnswer(epoch: state.withLock { $0.member.kept.record.epoch }, master: nil)) }
        try await follow(stamp)
        try await cut(after: request.after, unlessNextHash: request.nextHash, epoch: stamp.epoch, "cut entries the master of this epoch does not hold")
        return try answering(replicaState, to: stamp)
    }

    /// Cuts the log after `seq` (`cutLog`: never what this node learned was committed,
    /// which no failover replaces; nothing when it holds the master's `nextHash` after it),
    /// keeps what went in a rollback file, and returns whether it cut anything once the
    /// election record that rests on the cut is kept.
    /// - Parameter cutsSeen: nothing is cut if the log was cut since this count of cuts.
    @discardableResult
    private func cut(
        after seq: Int, unlessNextHash nextHash: String?, unlessCutSince cutsSeen: Int? = nil, epoch: Int, _ message: Logger.Message
    ) async throws -> Bool {
        let (cut, recorded): ([LogEntry], Int)
        do {
            (cut, recorded) = try await cutLog(
                after: seq, unlessNextHash: nextHash, keeping: commitPoint.learned, epoch: epoch, unlessCutSince: cutsSeen)
        } catch let older as SecondaryInstance.OlderEpoch {
            throw stale(older)
        }
        guard let first = cut.first else { return false }
        let folder = directory
        let saved = (try? await commit.io.value { try folder.directory.withLock { try $0?.saveRollback(cut, epoch: epoch) } }) ?? nil
        logger.warning(message, metadata: [
            "replog.after": "\(first.seq - 1)", "replog.entries": "\(cut.count)", "replog.epoch": "\(epoch)",
            "replog.rollback": "\(saved ?? "(in memory: not kept)")",
            "replog.messages": "\(cut.prefix(5).map(\.message).joined(separator: ", "))\(cut.count > 5 ? ", …" : "")",
        ])
        try await election.keep(through: recorded)
        return true
    }

    /// How many times the log was cut.
    private var cuts: Int { state.withLock { $0.cuts } }

    /// Serves a request of a master: refuses an older epoch, follows a newer one (stepping
    /// down if this node was master), learns the cluster from the stamp. Returns once this
    /// node serves it as a secondary.
    private func follow(_ stamp: EpochStamp?) async throws {
        let now = clock.now
        let request = try await update({ $0.member.onMasterRequest(stamped: stamp, now: now) }) { request in
            if case .follow(_, let directives, _) = request { directives } else { [] }
        }
        switch request {
        case .serveWithoutFailover:
            if case .secondary = self.current { return }
            throw StaleEpoch(answer: StaleEpochAnswer(epoch: state.withLock { $0.member.kept.record.epoch }, master: nil))
        case .refuse(let answer):
            throw StaleEpoch(answer: answer)
        case .follow(let epoch, let directives, let newMaster):
            watch.followCommitPoint()
            await carryOut(directives)
            mastersKnown.advanced(to: epoch)
            if let newMaster { logger.info("following master", metadata: ["replog.master": "\(newMaster)", "replog.epoch": "\(epoch)"]) }
            if case .secondary = self.current { return }
            throw StaleEpoch(answer: StaleEpochAnswer(epoch: epoch, master: nil))
        }
    }

    /// After serving the master: takes on its epoch history if this node's log holds the
    /// master's through its last start (`FailoverMember.served`). Recorded before the answer
    /// leaves (a vote depends on it).
    /// A tail it cannot date (`HistoryAdoption.undatedTail`) is cut first, and the request
    /// served again on what is left.
    /// - Parameter heldHash: this node's hash at a seq, if it holds it.
    private func synced(
        _ answer: ReplicaState, stamp: EpochStamp?, storedBefore: Int, startedAgain: Bool = false,
        heldHash: ((Int) -> String?)? = nil
    ) async throws {
        guard let stamp else { return }
        let firstSeq = store.firstSeq
        let heldHash = heldHash ?? store.hash(at:)
        // The cuts counted as the tail was judged: a cut since (another request's) decided on
        // newer facts, and the log may hold the master's entries past it by now.
        let ((undated, cutsSeen), recorded) = record { state in
            let undated = state.member.served(
                epoch: stamp.epoch, masterHistory: stamp.history, masterStartHash: stamp.startHash, heldThrough: answer.seq,
                storedBefore: storedBefore, startedAgain: startedAgain, firstSeq: firstSeq, heldHash: heldHash)
            return (undated, state.cuts)
        }
        try await election.keep(through: recorded)
        guard let undated,
            try await cut(
                after: undated, unlessNextHash: nil, unlessCutSince: cutsSeen, epoch: stamp.epoch,
                "cut entries found on disk past the master's start, which no election record dates")
        else { return }
        try await synced(replicaState, stamp: stamp, storedBefore: store.lastSeq)
    }

    // MARK: What the secondary answers

    /// What this secondary holds now: its durable contiguous prefix. A heartbeat answer
    /// counts towards `w` like an acknowledgement, so it must not claim entries that are
    /// stored but still waiting for their fsync. While the log is rewritten (`DiskWork`), what
    /// it claimed as the work began.
    public var replicaState: ReplicaState {
        let storageFailure = commit.failure?.description
        var state = state.withLock { $0.secondary.diskWork?.claimed ?? claimed(by: $0.secondary.instance) }
        state.storageFailure = storageFailure
        return state
    }

    /// What `instance` may claim of the store now. Read under the lock that stores, so the
    /// durable prefix is never past the stored one.
    private func claimed(by instance: SecondaryInstance, atMost limit: Int = .max) -> ReplicaState {
        let seq = min(instance.claim(completeSeq: .max, durableSeq: commit.durableSeq), limit)
        return ReplicaState(seq: seq, incarnation: instance.incarnation, logID: instance.logID, hash: store.hash(at: seq))
    }

    /// Entries received out of order and waiting for a gap to fill.
    public var heldBackCount: Int { state.withLock { $0.secondary.instance.heldBackCount } }

    /// Where this secondary last started its log again, behind the master's retention.
    public var restartedAt: Int? { state.withLock { $0.secondary.instance.restartedAt } }

    // MARK: A delivery

    /// Stores a delivery of master log `logID` (entries may be duplicated or out of order;
    /// a batch counts, is acknowledged, listed and claimed, only once all of it is here),
    /// and returns once what it may claim is durable, with its hash at `mark` as it was once
    /// the delivery was stored, before its fsync: a retention pass that runs meanwhile may
    /// drop that seq, and with it what proves that this log holds the master's there
    /// (`HistoryAdoption`; the real-node simulation, seed 1109).
    /// - Parameters:
    ///   - adopt: see `SecondaryInstance.Delivery.adopt`.
    ///   - epoch: with failover, the epoch of the master that sent them
    ///     (`SecondaryInstance.Delivery.epoch`).
    /// - Throws: `ForeignLog` when this secondary holds another log; `OlderEpoch` when a
    ///   later master already delivered here; `StaleEpoch` when this node left `epoch`;
    ///   `InjectedFailure` (after storing) when `errorRate` says so;
    ///   `GroupCommit.Failed` once its disk failed an fsync (nothing is stored any more then).
    func storeDelivery(
        _ records: RecordFraming.DecodedRecords, of logID: String, adopt: Bool = false, epoch: Int? = nil, hashAt mark: Int? = nil
    ) async throws -> Stored {
        if settings.secondary.delay > .zero {
            try await clock.sleep(for: settings.secondary.delay)
        }
        if let failure = commit.failure { throw failure }
        if commit.writeWasRefused { await commit.retryRefusedWrite() }
        let delivery = SecondaryInstance.Delivery(
            logID: logID, entries: records.entries, ids: records.ids, continues: records.continues,
            start: records.start.map { ($0.firstSeq, $0.hash) }, adopt: adopt, epoch: epoch)
        let stored = try await storeWhenAdmitted(delivery, start: records.start, hashAt: mark)
        try await commit.makeDurable(through: stored.state.seq)
        watch.advanced(to: min(stored.state.seq, commit.durableSeq))
        if settings.secondary.errorRate > 0, roles.random() < settings.secondary.errorRate {
            secondaryMetrics.injectedFailures.increment()
            throw InjectedFailure(stored: stored)
        }
        return stored
    }

    private enum DeliveryStep {
        case stored(Stored)
        /// Carry out the admission off the lock; it held `heldThrough` before.
        case diskWork(SecondaryInstance.Admission, heldThrough: Int)
        case waitForDiskWork
    }

    /// Stores what `delivery` makes ready, once what its admission names is on disk.
    private func storeWhenAdmitted(_ delivery: SecondaryInstance.Delivery, start: LogStart?, hashAt mark: Int?) async throws -> Stored {
        while true {
            let step = try state.withLock { state throws -> DeliveryStep in
                // A delivery that waited (for `--delay`, for disk work) while this node moved to a
                // later epoch stores nothing: the log its vote was cast on is not the deposed
                // master's to extend (as Raft's follower refuses an older term's entries).
                if let epoch = delivery.epoch, let refusal = state.member.refusal(answeringIn: epoch) { throw StaleEpoch(answer: refusal) }
                guard state.secondary.diskWork == nil else { return .waitForDiskWork }
                let admission = try state.secondary.instance.admit(delivery, log: StoreLog(store: store))
                guard admission.follow == nil || !directory.isKept, admission.startAgainAt == nil else {
                    state.secondary.diskWork = DiskWork(claimed: claimed(by: state.secondary.instance))
                    return .diskWork(admission, heldThrough: state.secondary.instance.contiguousSeq)
                }
                return .stored(try stored(delivery, admitted: admission, in: &state.secondary.instance, hashAt: mark))
            }
            let (admission, heldThrough): (SecondaryInstance.Admission, Int)
            switch step {
            case .stored(let stored): return stored
            case .waitForDiskWork:
                await diskWorkDone()
                continue
            case .diskWork(let admitted, let held): (admission, heldThrough) = (admitted, held)
            }
            // Rare (once per master log, or once the master's retention passed this log): on
            // the storage's thread pool, while this node's other deliveries wait.
            do {
                try await commit.io.value { [store, commit, watch, directory] in
                    if let follow = admission.follow { try directory.directory.withLock { try $0?.setLog(follow) } }
                    if admission.startAgainAt != nil, let start {
                        try store.restart(at: start)
                        commit.restarted(at: start.firstSeq - 1)
                        watch.cut(to: start.firstSeq - 1)
                    }
                }
            } catch {
                endDiskWork { _ in }
                throw error
            }
            if admission.startAgainAt != nil, let start {
                logger.warning("restarted the log at the master's first kept seq: it no longer holds what this node lacked", metadata: [
                    "replog.firstSeq": "\(start.firstSeq)", "replog.heldThrough": "\(heldThrough)",
                ])
            }
            return try endDiskWork { try stored(delivery, admitted: admission, in: &$0.secondary.instance, hashAt: mark) }
        }
    }

    /// `delivery`, admitted and its admission carried out: stored (not yet durable).
    private func stored(
        _ delivery: SecondaryInstance.Delivery, admitted admission: SecondaryInstance.Admission, in instance: inout SecondaryInstance,
        hashAt mark: Int?
    ) throws -> Stored {
        let storedBefore = store.lastSeq
        let ready = try instance.onDelivery(delivery, admitted: admission, log: StoreLog(store: store))
        do {
            try store.append(ready.entries, ids: ready.ids, continues: ready.continues)
        } catch {
            instance.notStored(ready)
            throw error
        }
        secondaryMetrics.storedEntries.increment(by: ready.entries.count)
        secondaryMetrics.duplicateEntries.increment(by: ready.duplicates)
        secondaryMetrics.lastSeq.record(instance.contiguousSeq)
        let seq = instance.claim(completeSeq: store.completeSeq)
        return Stored(
            state: ReplicaState(seq: seq, incarnation: instance.incarnation, logID: delivery.logID, hash: store.hash(at: seq)),
            markHash: mark.flatMap { store.hash(at: $0) }, storedBefore: storedBefore, startedAgain: admission.startAgainAt != nil)
    }

    // MARK: A cut

    /// Cuts every entry after `seq` (the master's log parts from this one there) and
    /// returns them; held-back entries go too. Never what this node learned was committed,
    /// nothing when it holds the master's `nextHash` after `seq`
    /// (`SecondaryInstance.cut(after:masterNextHash:heldNextHash:committed:lastSeq:epoch:)`).
    /// Durable before it returns, rewritten on the storage's thread pool while this node's
    /// deliveries wait; the election state learns of the cut (`FailoverMember.cut`) in the
    /// step that ends it, before any delivery that waited goes on: a request served in
    /// between would otherwise judge the log by its length before the cut (a restarted
    /// node's tail that no election record dates, cut a second time with the master's entry
    /// behind it).
    /// - Parameters:
    ///   - epoch: with failover, the epoch of the master that asks.
    ///   - cutsSeen: nothing is cut if the log was cut since this count of cuts.
    /// - Throws: `OlderEpoch` when a later master already delivered here; `StaleEpoch` when
    ///   this node left `epoch`.
    /// - Returns: what was cut, and the version of the election record that rests on it.
    func cutLog(
        after seq: Int, unlessNextHash nextHash: String? = nil, keeping committed: Int = 0, epoch: Int? = nil, unlessCutSince cutsSeen: Int? = nil
    ) async throws -> (cut: [LogEntry], recorded: Int) {
        while true {
            let decided: Int?? = try state.withLock { state throws -> Int?? in
                // A cut that waited while this node moved to a later epoch cuts nothing: the
                // deposed master's word does not reach past the node's vote (nor, once the
                // node is elected, into its own log).
                if let epoch, let refusal = state.member.refusal(answeringIn: epoch) { throw StaleEpoch(answer: refusal) }
                guard state.secondary.diskWork == nil else { return nil }
                guard cutsSeen.map({ $0 == state.cuts }) ?? true,
                    let cut = try state.secondary.instance.cut(
                        after: seq, masterNextHash: nextHash, heldNextHash: store.hash(at: seq + 1), committed: committed, lastSeq: store.lastSeq,
                        epoch: epoch)
                else { return .some(nil) }
                // Meanwhile it claims no more than what the cut keeps.
                state.secondary.diskWork = DiskWork(claimed: claimed(by: state.secondary.instance, atMost: cut), cutAfter: cut)
                return cut
            }
            guard let decided else {
                await diskWorkDone()
                continue
            }
            guard let cutAfter = decided else { return ([], 0) }
            let cut: [LogEntry]
            do {
                cut = try await commit.io.value { [store, commit, watch] in
                    let cut = try store.truncate(after: cutAfter)
                    commit.truncated(after: cutAfter)
                    watch.cut(to: cutAfter)
                    return cut
                }
            } catch {
                endDiskWork { _ in }
                throw error
            }
            let recorded = endDiskWork { state in
                let lastSeq = store.lastSeq
                state.secondary.instance.wasCut(holdingThrough: lastSeq)
                guard !cut.isEmpty else { return 0 }
                state.cuts += 1
                if let epoch { state.member.cut(after: cutAfter, holdingThrough: lastSeq, epoch: epoch) }
                return keep(state.member)
            }
            return (cut, recorded)
        }
    }

    // MARK: Disk work

    /// How many deliveries and cuts wait for the disk work under way.
    var waitingForDiskWork: Int { state.withLock { $0.secondary.diskWork?.waiting.count ?? 0 } }

    /// Returns once no disk work runs (at once if none does).
    func diskWorkDone() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let parked = state.withLock { state in
                guard state.secondary.diskWork != nil else { return false }
                state.secondary.diskWork!.waiting.append(continuation)
                return true
            }
            if !parked { continuation.resume() }
        }
    }

    /// Ends the disk work with `done` (under the lock) and lets the waiting go on.
    private func endDiskWork<T: Sendable, E: Error>(_ done: (inout State) throws(E) -> T) throws(E) -> T {
        var waiting: [CheckedContinuation<Void, Never>] = []
        defer { for continuation in waiting { continuation.resume() } }
        return try state.withLock { (state: inout State) throws(E) -> T in
            waiting = state.secondary.diskWork?.waiting ?? []
            state.secondary.diskWork = nil
            return try done(&state)
        }
    }

    // MARK: Reading

    /// Returns once a read at `level` shows something at `seq` or later, or after `timeout`.
    public func waitForEntries(from seq: Int, level: ReadLevel = .committed, upTo timeout: Duration) async {
        await watch.wait(for: seq, level: level, upTo: min(timeout, settings.secondary.maxLongPoll), on: clock)
    }

    /// `read(from:limit:level:)` for readers over HTTP, a page at a time (`listingPageBytes`):
    /// off the cooperative threads when the log is on disk.
    public func list(from seq: Int, limit: Int, level: ReadLevel = .committed) async throws(LogStoreError) -> [LogEntry] {
        try await commit.readDurable(from: seq, limit: watch.limit(limit, from: seq, level: level), maxBytes: listingPageBytes)
    }
}

/// The store as the secondary's rules read it.
private struct StoreLog: HeldLog {
    let store: any LogStore

    func hash(at seq: Int) -> String? { store.hash(at: seq) }

    func messages(in seqs: ClosedRange<Int>) throws -> [Int: String] {
        let held = try store.read(from: seqs.lowerBound, limit: seqs.count)
        return Dictionary(uniqueKeysWithValues: held.map { ($0.seq, $0.message) })
    }
}

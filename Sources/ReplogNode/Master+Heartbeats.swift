import Logging
import ReplogCore
import ReplogStorage

/// Heartbeats, and how the master carries out what the protocol (`ReplicationInstance`)
/// decides when a secondary answers or stays silent.
extension Master {
    /// Probes every secondary each `heartbeatInterval` (at a fixed rate: a slow probe
    /// does not stretch the interval).
    func monitorHeartbeats() async {
        while !Task.isCancelled {
            let roundStarted = clock.now
            await withDiscardingTaskGroup { group in
                for peer in settings.secondaries {
                    group.addTask {
                        do {
                            let replica = try await self.transport.probe(peer, timeout: self.settings.heartbeatTimeout)
                            await self.onContact(peer, replica)
                        } catch TransportError.staleEpoch(let epoch) {
                            await self.node?.memberIsLater(peer, epoch: epoch)
                        } catch {
                            self.onHeartbeatMissed(peer, error: error)
                        }
                    }
                }
            }
            // One notion of read-only everywhere: /health's (no quorum, or a failed disk).
            let health = self.health
            for secondary in health.secondaries {
                metrics.peers[secondary.url]!.lag.record(secondary.lag)
                metrics.peers[secondary.url]!.diverged.record(secondary.problem?.isDivergence == true ? 1 : 0)
            }
            metrics.readOnly.record(health.readOnly ? 1 : 0)
            let untilNextRound = roundStarted + settings.heartbeatInterval - clock.now
            do { try await clock.sleep(for: max(untilNextRound, .zero)) } catch { return }
        }
    }

    /// A secondary answered a heartbeat with what it holds.
    func onContact(_ peer: String, _ replica: ReplicaState) async {
        await answered(by: peer, replica) { $0.onContact(from: peer, $1, lastSeq: $2, masterHash: $3, now: clock.now) }
    }

    /// A member answered (a heartbeat, a delivery) with what it holds: it counts as far as a
    /// hash this log still has vouches for it, and the event gets the end of this log and its
    /// hash at the member's seq. An elected master's node counts the same answer for its
    /// takeover, in the same step under the node's lock.
    func answered(
        by peer: String, _ answer: ReplicaState,
        _ event: (inout ReplicationInstance, ReplicaState, _ lastSeq: Int, _ masterHash: String?) -> [ReplicationInstance.Directive]
    ) async {
        let replica = answer.vouched(byLogStartingAt: store.firstSeq)
        let lastSeq = store.lastSeq
        let masterHash = store.hash(at: replica.seq)
        let now = clock.now
        let countsForTakeover: ((inout FailoverMember) -> ([FailoverInstance.Directive], Int?))? =
            elected == nil ? nil : { $0.onMemberAnswer(from: peer, replica, lastSeq: lastSeq, masterHash: masterHash, now: now) }
        let election = handle({ event(&$0, replica, lastSeq, masterHash) }, member: countsForTakeover)
        if let (result, recorded) = election { await node?.carryOut(memberAnswer: result, recorded: recorded) }
    }

    /// Searches where each diverged member's log parts from this one, until the master stops
    /// (which ends the searches still running).
    func runDivergenceSearches() async {
        await withDiscardingTaskGroup { group in
            for await (peer, seq) in divergedMembers.stream {
                group.addTask(executorPreference: taskExecutor) { await self.locateDivergence(of: peer, atOrBefore: seq) }
            }
        }
    }

    /// Finds where a diverged member's log parts from the master's and carries out the
    /// remedy (`DivergenceSearch`: start its log again, cut it, or report it). If the member
    /// stops answering, the search starts again at its next answer.
    func locateDivergence(of peer: String, atOrBefore last: Int) async {
        let start = store.start
        var search = DivergenceSearch(start: start.firstSeq - 1, differsAtOrBefore: last, masterLast: store.lastSeq, cuts: elected != nil)
        while true {
            switch search.next {
            case .ask(let seq):
                let theirs: String?
                do {
                    theirs = try await transport.hash(of: peer, at: seq, timeout: settings.heartbeatTimeout)
                } catch {
                    withState { $0.instance.onDivergenceRetry(peer) }
                    return
                }
                search.onHash(at: seq, theirs: theirs, ours: seq == start.firstSeq - 1 ? start.hash : store.hash(at: seq))
            case .retryLater:
                withState { $0.instance.onDivergenceRetry(peer) }
                return
            case .restartLog:
                await restartLog(of: peer, at: start)
                return
            case .cut(let agreed):
                await cutLog(of: peer, after: agreed)
                return
            case .report(let differs):
                let problem = withState { $0.instance.onDivergenceLocated(peer, seq: differs) }
                if let problem = problem ?? nil { logger.error("secondary diverged from the master's log", metadata: ["replog.peer": "\(peer)", "replog.problem": "\(problem)"]) }
                return
            }
        }
    }

    /// Has `peer` cut its log after `agreed`, where it parts from this master's: what it
    /// holds past there an earlier master wrote and no majority kept (it goes to the
    /// member's rollback folder), and it follows this log from there.
    private func cutLog(of peer: String, after agreed: Int) async {
        do {
            let cut = TruncateRequest(after: agreed, nextHash: store.hash(at: agreed + 1))
            let replica = try await transport.truncate(peer, cut, timeout: settings.heartbeatTimeout)
            logger.info("member cut its log to follow this master", metadata: ["replog.peer": "\(peer)", "replog.after": "\(agreed)"])
            // It holds exactly what it says now, maybe less than it acknowledged before
            // (and never, as far as this master counts, more than this master wrote).
            let holding = min(replica.seq, store.lastSeq)
            handle { $0.onMemberCut(peer, holding: holding) }
            await onContact(peer, replica)
        } catch {
            logger.info("member did not cut its log yet", metadata: ["replog.peer": "\(peer)", "replog.error": "\(error)"])
            withState { $0.instance.onDivergenceRetry(peer) }
        }
    }

    /// Sends `peer` this log from its start, marked so that the member starts its log again
    /// there (its own parts from this one before the start, or it lacks what went).
    private func restartLog(of peer: String, at start: LogStart) async {
        do {
            guard var batch = try await commit.readRecords(from: start.firstSeq, limit: settings.maxBatchSize, maxBytes: settings.maxBatchBytes) else {
                withState { $0.instance.onDivergenceRetry(peer) }
                return
            }
            batch.start = start
            let replica = try await transport.replicate(batch, of: logID, to: peer, timeout: settings.replicationTimeout)
            logger.info("member started its log again at this log's start", metadata: ["replog.peer": "\(peer)", "replog.firstSeq": "\(start.firstSeq)"])
            handle { $0.onMemberCut(peer, holding: min(replica.seq, store.lastSeq)) }
            await onContact(peer, replica)
        } catch {
            logger.info("member did not start its log again yet", metadata: ["replog.peer": "\(peer)", "replog.error": "\(error)"])
            withState { $0.instance.onDivergenceRetry(peer) }
        }
    }


    /// A heartbeat got no answer in time.
    func onHeartbeatMissed(_ peer: String, error: any Error) {
        logger.trace("heartbeat missed", metadata: ["replog.peer": "\(peer)", "replog.error": "\(error)"])
        handle { $0.onHeartbeatMissed(peer) }
    }

    /// Feeds one event to the protocol under the node's lock, and `memberEvent` (an elected
    /// master's) to the election state in the same step; answers the appends it completes,
    /// then carries out the rest of its directives outside the lock. Returns what the
    /// election state made of `memberEvent`, and the version of the election record that
    /// rests on it.
    @discardableResult
    func handle(
        _ event: (inout ReplicationInstance) -> [ReplicationInstance.Directive],
        member memberEvent: ((inout FailoverMember) -> ([FailoverInstance.Directive], Int?))? = nil
    ) -> (([FailoverInstance.Directive], taking: Int?), recorded: Int)? {
        typealias Handled = (directives: [ReplicationInstance.Directive], completed: [CheckedContinuation<WaitOutcome, Never>], commitSeq: Int?)
        func step(_ state: inout State) -> Handled {
            let directives = event(&state.instance)
            var completed: [CheckedContinuation<WaitOutcome, Never>] = []
            for case .resume(let waiters) in directives {
                completed += waiters.compactMap { state.waiters.finish($0, .satisfied) }
            }
            // Handed on under the lock: two events handled at once must hand on the members'
            // points in the order they were counted. A member's point goes down when it
            // restarts with less, so an older value handed on last would be what every later
            // heartbeat tells it.
            guard elected != nil, let commits = state.instance.takeCommitChange() else { return (directives, completed, nil) }
            node?.stamps?.setCommits(commits.members)
            return (directives, completed, commits.seq)
        }
        let handled: Handled
        var election: (([FailoverInstance.Directive], taking: Int?), recorded: Int)?
        if let memberEvent {
            guard let ((stepped, answer), recorded) = withStates({ state, member in (step(&state), memberEvent(&member)) }) else { return nil }
            (handled, election) = (stepped, (answer, recorded))
        } else {
            guard let stepped = withState({ step(&$0) }) else { return nil }
            handled = stepped
        }
        for continuation in handled.completed { continuation.resume(returning: .satisfied) }
        for directive in handled.directives { carryOut(directive) }
        if let commitSeq = handled.commitSeq {
            // The point only grows, so an older value that arrives late changes nothing.
            node?.commitPoint.learn(commitSeq)
            commitChanged.signal()
        }
        return election
    }

    /// With failover: tells the members of a commit point that no delivery carried to them
    /// yet (the last appends before a pause), so that their readers see those entries within
    /// moments instead of at the next heartbeat. One probe per member, a few milliseconds
    /// after the change, so that a burst of changes costs one round; a probe that fails
    /// counts as nothing (the heartbeats judge health).
    func announceCommits() async {
        guard elected != nil else { return }
        var announced: [String: Int] = [:]
        while !Task.isCancelled {
            await commitChanged.wait()
            do { try await clock.sleep(for: .milliseconds(5)) } catch { return }
            let due = withState { state in
                settings.secondaries.compactMap { peer in
                    state.instance.commitsHandedOn.members[peer].flatMap { $0 > announced[peer] ?? 0 ? (peer, $0) : nil }
                }
            } ?? []
            for (peer, commit) in due { announced[peer] = commit }
            await withDiscardingTaskGroup { group in
                for (peer, _) in due {
                    group.addTask {
                        guard let replica = try? await self.transport.probe(peer, timeout: self.settings.heartbeatTimeout) else { return }
                        await self.onContact(peer, replica)
                    }
                }
            }
        }
    }

    private func carryOut(_ directive: ReplicationInstance.Directive) {
        switch directive {
        case .resume:
            break  // done under the lock by `handle`
        case .statusChanged(let peer, let transition):
            metrics.peers[peer]!.show(transition.to)
            logger.info("secondary status changed", metadata: [
                "replog.peer": "\(peer)", "replog.status.from": "\(transition.from)", "replog.status.to": "\(transition.to)",
            ])
        case .quorumChanged(let quorum):
            metrics.readOnly.record(health.readOnly ? 1 : 0)
            let metadata: Logger.Metadata = [
                "replog.quorum.available": "\(quorum.available)", "replog.quorum.required": "\(quorum.required)",
            ]
            if quorum.isWritable { logger.info("quorum regained: master is writable", metadata: metadata) }
            else { logger.info("quorum lost: master is read-only", metadata: metadata) }
        case .secondaryRestarted(let peer, let seq):
            logger.info("secondary restarted", metadata: ["replog.peer": "\(peer)", "replog.seq": "\(seq)"])
        case .catchUpStarted(let peer, let behind):
            logger.info("catch-up started", metadata: ["replog.peer": "\(peer)", "replog.behind": "\(behind)"])
        case .catchUpFinished(let peer, let entries, let took):
            logger.info("catch-up finished", metadata: [
                "replog.peer": "\(peer)", "replog.entries": "\(entries)", "replog.ms": "\(took.milliseconds)",
            ])
        case .diverged(let peer, let seq, let problem):
            logger.error("secondary diverged from the master's log", metadata: ["replog.peer": "\(peer)", "replog.problem": "\(problem)"])
            divergedMembers.continuation.yield((peer, seq))
        case .replicationRecovered(let peer, let failedRounds):
            logger.info("replication recovered", metadata: ["replog.peer": "\(peer)", "replog.failedRounds": "\(failedRounds)"])
        case .wakeStream(let peer):
            signals[peer]!.recovered.signal()
            signals[peer]!.newData.signal()
        }
    }
}

import Foundation
import Logging
import ReplogCore

/// Heartbeats, and what the master learns whenever a secondary answers: its health, what it
/// holds, whether it restarted, which waiting appends that completes, and the quorum.
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
                            self.onContact(peer, replica)
                        } catch {
                            self.onHeartbeatMissed(peer, error: error)
                        }
                    }
                }
            }
            let lastSeq = store.lastSeq
            for secondary in health.secondaries { metrics.peers[secondary.url]!.lag.record(max(0, lastSeq - secondary.ackedSeq)) }
            let untilNextRound = roundStarted + settings.heartbeatInterval - clock.now
            do { try await clock.sleep(for: max(untilNextRound, .zero)) } catch { return }
        }
    }

    /// A secondary answered: update what it holds, its health, and the appends it completes.
    func onContact(_ peer: String, _ replica: ReplicaState) {
        if let held = replica.logID, held != logID {
            // It answers, but it follows another log: it can neither count towards `w` nor
            // receive ours. Treat it as missing and say why in /health.
            state.withLock {
                $0.peers[peer]!.problem = "holds master log \(held), not this master's \(logID): restart it with an empty log"
            }
            onHeartbeatMissed(peer, error: TransportError.foreignLog("secondary follows another master log"))
            return
        }
        if let failure = replica.storageFailure {
            // It answers, but it can store nothing: it holds no more than it did, and counts
            // towards neither `w` nor the quorum until it is restarted.
            state.withLock { $0.peers[peer]!.problem = failure }
            onHeartbeatMissed(peer, error: TransportError.badStatus(500))
            return
        }
        let lastSeq = store.lastSeq
        let now = ContinuousClock.now
        let (completed, transition, quorumChange, restarted, catchUp) = state.withLock { state in
            let wasWritable = state.quorum.isWritable
            var peer = state.peers[peer]!
            let transition = peer.health.onContact()
            peer.lastContact = Date()
            peer.problem = nil
            let restarted = peer.incarnation != nil && peer.incarnation != replica.incarnation
            if peer.incarnation != replica.incarnation {
                // A new process: what it holds now is the truth, even if it is less than before.
                peer.incarnation = replica.incarnation
                peer.matched = min(replica.seq, lastSeq)
                peer.rewinds += 1
            } else {
                peer.matched = max(peer.matched, min(replica.seq, lastSeq))
            }
            // A secondary that comes back behind is caught up; say when that starts and ends.
            var catchUp: CatchUpEvent?
            if let running = peer.catchUp, peer.matched >= running.target {
                catchUp = .finished(entries: running.target - running.from, took: now - running.started)
                peer.catchUp = nil
            } else if peer.catchUp == nil, restarted || transition != nil, peer.matched < lastSeq {
                peer.catchUp = (peer.matched, lastSeq, now)
                catchUp = .started(behind: lastSeq - peer.matched)
            }
            state.peers[peer.url] = peer
            let completed =
                restarted
                ? state.tracker.onRestart(of: peer.url, holding: peer.matched)
                : state.tracker.onAck(from: peer.url, seq: peer.matched)
            let continuations = completed.compactMap { state.waiters.finish($0, .satisfied) }
            return (continuations, transition, state.quorumChange(since: wasWritable), restarted, catchUp)
        }
        for continuation in completed { continuation.resume(returning: .satisfied) }
        if let transition { logTransition(peer, transition) }
        if let quorumChange { logQuorum(quorumChange) }
        if restarted {
            logger.info("secondary restarted", metadata: ["replog.peer": "\(peer)", "replog.seq": "\(replica.seq)"])
        }
        switch catchUp {
        case .started(let behind):
            logger.info("catch-up started", metadata: ["replog.peer": "\(peer)", "replog.behind": "\(behind)"])
        case .finished(let entries, let took):
            logger.info("catch-up finished", metadata: [
                "replog.peer": "\(peer)", "replog.entries": "\(entries)", "replog.ms": "\(took.milliseconds)",
            ])
        case nil:
            break
        }
        if transition != nil || restarted {
            signals[peer]!.recovered.signal()
            signals[peer]!.newData.signal()
        }
    }

    func onHeartbeatMissed(_ peer: String, error: any Error) {
        let (transition, quorumChange) = state.withLock { state in
            let wasWritable = state.quorum.isWritable
            let transition = state.peers[peer]!.health.onHeartbeatMissed()
            return (transition, state.quorumChange(since: wasWritable))
        }
        logger.trace("heartbeat missed", metadata: ["replog.peer": "\(peer)", "replog.error": "\(error)"])
        if let transition { logTransition(peer, transition) }
        if let quorumChange { logQuorum(quorumChange) }
    }

    func logTransition(_ peer: String, _ transition: PeerHealth.Transition) {
        metrics.peers[peer]!.show(transition.to)
        logger.info("secondary status changed", metadata: [
            "replog.peer": "\(peer)", "replog.status.from": "\(transition.from)", "replog.status.to": "\(transition.to)",
        ])
    }

    func logQuorum(_ quorum: Quorum) {
        metrics.readOnly.record(quorum.isWritable ? 0 : 1)
        let metadata: Logger.Metadata = ["replog.quorum.available": "\(quorum.available)", "replog.quorum.required": "\(quorum.required)"]
        if quorum.isWritable { logger.info("quorum regained: master is writable", metadata: metadata) }
        else { logger.info("quorum lost: master is read-only", metadata: metadata) }
    }
}

import Logging
import ReplogCore
import ReplogStorage

/// The replication stream of one secondary: the shell that carries out
/// `ReplicationInstance.nextStreamStep`.
///
/// It sends what the secondary misses, reading from the master's log (never from a queue
/// of copies), in batches with up to `maxInFlight` requests in flight, so a slow link or a
/// `--delay`ed secondary is kept busy rather than waited for. Requests may arrive out of
/// order; the secondary's hold-back buffer restores the order, and every answer says which
/// contiguous prefix it holds. What to send, when to linger and when to back off is the
/// protocol's decision; this loop only reads, sends, waits, and reports back.
extension Master {
    private enum StreamEvent: Sendable {
        case delivered(ReplicaState, entries: Int, started: Duration)
        case failed(ReplicationInstance.Failure)
        case newData
        case lingerOver
    }

    func replicate(to peer: String) async {
        let signals = self.signals[peer]!
        await withTaskGroup(of: StreamEvent.self) { group in
            // At most one task of each kind waits on this stream's signals (`WakeSignal`
            // takes one waiter at a time).
            var waitingForData = false
            var lingerTimerRunning = false
            while !Task.isCancelled {
                startWork: while true {
                    let sendable = ReplicationInstance.sendable(
                        sendsBeforeDurable: sendsBeforeDurable, written: store.completeSeq, durable: commit.durableSeq)
                    // Nothing more to do once the node runs another master: this one's run ends.
                    guard let step = withState({ $0.instance.nextStreamStep(for: peer, upTo: sendable, now: clock.now) }) else { break startWork }
                    switch step {
                    case .send(let from, let limit):
                        guard let batch = await read(from: from, limit: limit, for: peer) else { continue startWork }
                        withState { $0.instance.onSending(to: peer, seqs: batch.seqs) }
                        group.addTask { await self.send(batch, to: peer) }
                    case .sendFromStart(let limit):
                        let start = store.start
                        guard var batch = await read(from: start.firstSeq, limit: limit, for: peer) else { continue startWork }
                        batch.start = start
                        withState { $0.instance.onSending(to: peer, seqs: batch.seqs) }
                        group.addTask { await self.send(batch, to: peer) }
                    case .linger(let linger):
                        // A timer left from before a back-off ends this linger instead.
                        if !lingerTimerRunning {
                            lingerTimerRunning = true
                            group.addTask { [clock] in
                                await signals.urgent.wait(upTo: linger, on: clock)
                                return .lingerOver
                            }
                        }
                        break startWork
                    case .backOff(let attempt, let status, let failure):
                        await backOff(peer, attempt: attempt, status: status, after: failure)
                        guard !Task.isCancelled else { break startWork }
                        withState { $0.instance.onBackOffOver(for: peer) }
                    case .idle(let waitForData):
                        if waitForData, !waitingForData {
                            waitingForData = true
                            group.addTask {
                                await signals.newData.wait()
                                return .newData
                            }
                        }
                        break startWork
                    }
                }
                guard !Task.isCancelled, let event = await group.next() else { break }
                switch event {
                case .newData:
                    waitingForData = false
                case .lingerOver:
                    lingerTimerRunning = false
                    withState { $0.instance.onLingerOver(for: peer) }
                case .delivered(let answer, let entries, let started):
                    let peerMetrics = metrics.peers[peer]!
                    peerMetrics.replicationDuration.recordNanoseconds((clock.now - started).nanoseconds)
                    peerMetrics.batchEntries.record(entries)
                    await answered(by: peer, answer) { $0.onDelivered(to: peer, $1, lastSeq: $2, masterHash: $3, now: clock.now) }
                case .failed(let failure):
                    withState { $0.instance.onDeliveryFailed(to: peer, failure) }
                }
            }
            group.cancelAll()
        }
    }

    /// The records from `from` on as they are on disk (nothing is decoded or encoded again),
    /// or nil when there is nothing to send now: retention dropped `from` (the instance
    /// learns the new start, and the next step sends from it), or the read failed (the round
    /// fails, as a delivery's: it backs off, retries, and says why in /health; no entry is
    /// ever skipped).
    private func read(from: Int, limit: Int, for peer: String) async -> RecordBatch? {
        let failure: String
        do {
            if let batch = try await commit.readRecords(from: from, limit: limit, maxBytes: settings.maxBatchBytes) { return batch }
            failure = "the log holds no entry at seq \(from)"
        } catch LogStoreError.gone {
            let firstSeq = store.firstSeq
            withState { $0.instance.onLogStart(firstSeq) }
            return nil
        } catch {
            failure = "\(error)"
        }
        withState { $0.instance.onReadFailed(for: peer, ReplicationInstance.Failure(reason: failure, seqs: from...from)) }
        return nil
    }

    /// Waits out a failed round's back-off, or less if a heartbeat sees the secondary recover.
    private func backOff(_ peer: String, attempt: Int, status: PeerStatus, after failure: ReplicationInstance.Failure) async {
        metrics.peers[peer]!.retries.increment()
        let backoff = settings.retryPolicy.backoff(attempt: attempt, status: status, jitter: random())
        let metadata: Logger.Metadata = [
            "replog.peer": "\(peer)", "replog.seq.from": "\(failure.seqs.lowerBound)", "replog.seq.to": "\(failure.seqs.upperBound)",
            "replog.attempt": "\(attempt)", "replog.error": "\(failure.reason)", "replog.backoff.ms": "\(backoff.milliseconds)",
        ]
        // The first failure of a run is news; the retries after it are detail.
        if attempt == 1 { logger.info("replication failed, retrying", metadata: metadata) }
        else { logger.debug("replication failed, retrying", metadata: metadata) }
        await signals[peer]!.recovered.wait(upTo: backoff, on: clock)
    }

    private func send(_ batch: RecordBatch, to peer: String) async -> StreamEvent {
        let started = clock.now
        let seqs = batch.seqs
        do {
            let replica = try await transport.replicate(batch, of: logID, to: peer, timeout: settings.replicationTimeout)
            logger.debug("replicated", metadata: [
                "replog.peer": "\(peer)", "replog.seq.from": "\(seqs.lowerBound)", "replog.seq.to": "\(seqs.upperBound)",
                "replog.acked": "\(replica.seq)", "replog.ms": "\((clock.now - started).milliseconds)",
            ])
            return .delivered(replica, entries: batch.count, started: started)
        } catch TransportError.staleEpoch(let epoch) {
            await node?.memberIsLater(peer, epoch: epoch)
            return .failed(ReplicationInstance.Failure(reason: "\(TransportError.staleEpoch(epoch))", seqs: seqs))
        } catch {
            // A secondary that refuses this log (over HTTP, or in memory) cannot follow it: say why.
            let foreignLog =
                if case .foreignLog = error as? TransportError { true }
                else { error is SecondaryInstance.ForeignLog || error is SecondaryInstance.Diverged }
            return .failed(ReplicationInstance.Failure(reason: "\(error)", seqs: seqs, foreignLog: foreignLog))
        }
    }
}

import Logging
import ReplogCore

/// The replication stream of one secondary.
///
/// It sends what the secondary misses, reading from the master's log (never from a queue
/// of copies), in batches of up to `maxBatchSize` entries with up to `maxInFlight` requests
/// in flight, so a slow link or a `--delay`ed secondary is kept busy rather than waited
/// for. Requests may arrive out of order; the secondary's hold-back buffer restores the
/// order, and every answer says which contiguous prefix it holds. When a request fails,
/// the stream lets the others finish, rewinds to what the secondary acknowledged, backs
/// off, and retries: forever, until delivered.
extension Master {
    private enum StreamEvent: Sendable {
        case delivered(ReplicaState, entries: Int, started: ContinuousClock.Instant)
        case failed(any Error, seqs: ClosedRange<Int>)
        case newData
        case lingerOver
    }

    private struct StreamFailure {
        let error: any Error
        let seqs: ClosedRange<Int>
        /// Whether some request succeeded before this failure (then back-off starts over).
        let deliveredBefore: Bool
    }

    func replicate(to peer: String) async {
        var attempt = 0
        while !Task.isCancelled {
            guard let failure = await pipeline(to: peer), !Task.isCancelled else { return }
            if attempt > 0, failure.deliveredBefore {
                logger.info("replication recovered", metadata: ["replog.peer": "\(peer)", "replog.attempts": "\(attempt + 1)"])
            }
            attempt = failure.deliveredBefore ? 1 : attempt + 1
            metrics.peers[peer]!.retries.increment()
            let status = state.withLock { state in
                if case .foreignLog(let reason) = failure.error as? TransportError { state.peers[peer]!.problem = reason }
                state.peers[peer]!.replicationFailure = "\(failure.error)"
                return state.peers[peer]!.health.status
            }
            let backoff = settings.retryPolicy.backoff(attempt: attempt, status: status, jitter: random())
            let metadata: Logger.Metadata = [
                "replog.peer": "\(peer)", "replog.seq.from": "\(failure.seqs.lowerBound)", "replog.seq.to": "\(failure.seqs.upperBound)",
                "replog.attempt": "\(attempt)", "replog.error": "\(failure.error)", "replog.backoff.ms": "\(backoff.milliseconds)",
            ]
            // The first failure of a run is news; the retries after it are detail.
            if attempt == 1 { logger.info("replication failed, retrying", metadata: metadata) }
            else { logger.debug("replication failed, retrying", metadata: metadata) }
            await signals[peer]!.recovered.wait(upTo: backoff, on: clock)
        }
    }

    /// Keeps up to `maxInFlight` batches in flight until one fails (returned) or the task
    /// is cancelled (nil).
    private func pipeline(to peer: String) async -> StreamFailure? {
        await withTaskGroup(of: StreamEvent.self) { group in
            var (sentThrough, knownRewinds) = state.withLock { ($0.peers[peer]!.matched, $0.peers[peer]!.rewinds) }
            var inFlight = 0
            var waitingForData = false
            var delivered = false
            var failure: StreamFailure?
            var lingering = false  // a small batch is held back for a moment
            var lingerOver = false  // …and the moment has passed: send it
            while !Task.isCancelled {
                // The secondary restarted (seen here or by a heartbeat): resend from what it holds.
                let (matched, rewinds) = state.withLock { ($0.peers[peer]!.matched, $0.peers[peer]!.rewinds) }
                if rewinds != knownRewinds {
                    (sentThrough, knownRewinds) = (matched, rewinds)
                } else {
                    sentThrough = max(sentThrough, matched)
                }
                if failure == nil {
                    while inFlight < settings.maxInFlight {
                        let next = sentThrough + 1
                        // Only what is durable on the master may leave it.
                        let available = min(settings.maxBatchSize, commit.durableSeq - next + 1)
                        let batch: [LogEntry]
                        do {
                            batch = try store.read(from: next, limit: available, maxBytes: settings.maxBatchBytes)
                        } catch {
                            // The master cannot read its own log: fail like a delivery does
                            // (back off, retry, and say why in /health), never skip entries.
                            failure = StreamFailure(error: error, seqs: next...next, deliveredBefore: delivered)
                            break
                        }
                        guard let first = batch.first, let last = batch.last else { break }
                        // Nobody waits for these yet: hold a small batch back briefly so it
                        // leaves together with the next appends (one request instead of many).
                        if settings.replicationLinger > .zero, !lingerOver, batch.count == available,
                           batch.count < settings.maxBatchSize,
                           state.withLock({ state in
                               // Only while the traffic is w=1: no waiter now and none lately.
                               state.tracker.waitingCount == 0
                                   && clock.now - state.lastAppendWithWaiter > settings.replicationLinger * 10
                           })
                        {
                            if !lingering {
                                lingering = true
                                let (urgent, linger, clock) = (signals[peer]!.urgent, settings.replicationLinger, clock)
                                group.addTask {
                                    await urgent.wait(upTo: linger, on: clock)
                                    return .lingerOver
                                }
                            }
                            break
                        }
                        lingerOver = false
                        sentThrough = last.seq
                        inFlight += 1
                        group.addTask { await self.send(batch, seqs: first.seq...last.seq, to: peer) }
                    }
                    if failure == nil, inFlight < settings.maxInFlight, !waitingForData {
                        waitingForData = true
                        let newData = signals[peer]!.newData
                        group.addTask {
                            await newData.wait()
                            return .newData
                        }
                    }
                }
                if failure != nil, inFlight == 0 {
                    group.cancelAll()  // the new-data waiter
                    return failure
                }
                guard let event = await group.next() else { return failure }
                switch event {
                case .newData:
                    waitingForData = false
                case .lingerOver:
                    (lingering, lingerOver) = (false, true)
                case .delivered(let replica, let entries, let started):
                    inFlight -= 1
                    if !delivered { state.withLock { $0.peers[peer]!.replicationFailure = nil } }
                    delivered = true
                    let peerMetrics = metrics.peers[peer]!
                    peerMetrics.replicationDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
                    peerMetrics.batchEntries.record(entries)
                    onContact(peer, replica)
                case .failed(let error, let seqs):
                    inFlight -= 1
                    if failure == nil { failure = StreamFailure(error: error, seqs: seqs, deliveredBefore: delivered) }
                }
            }
            group.cancelAll()
            return nil
        }
    }

    private func send(_ batch: [LogEntry], seqs: ClosedRange<Int>, to peer: String) async -> StreamEvent {
        let started = ContinuousClock.now
        do {
            let replica = try await transport.replicate(batch, of: logID, to: peer, timeout: settings.replicationTimeout)
            logger.debug("replicated", metadata: [
                "replog.peer": "\(peer)", "replog.seq.from": "\(seqs.lowerBound)", "replog.seq.to": "\(seqs.upperBound)",
                "replog.acked": "\(replica.seq)", "replog.ms": "\((ContinuousClock.now - started).milliseconds)",
            ])
            return .delivered(replica, entries: batch.count, started: started)
        } catch {
            return .failed(error, seqs: seqs)
        }
    }
}

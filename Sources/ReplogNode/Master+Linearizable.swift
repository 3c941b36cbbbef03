import ReplogCore
import Synchronization

/// Linearizable reads (`?read=linearizable`), as etcd's ReadIndex: the master notes its
/// commit point, confirms with a majority that it still is the master of its epoch, then
/// answers with everything committed up to there. A deposed master that a partition cut
/// off cannot get that round, so it never answers one.
extension Master {
    /// Returns once a read that starts now may be answered from this master's committed log.
    /// - Throws: `notTheMaster(nil)` when no majority confirmed it in time, or when its
    ///   commit point does not yet cover its epoch's start (an older epoch's entries it
    ///   holds may then be beyond it, acknowledged by the master before it).
    public func confirmForRead() async throws(AppendError) {
        // Without failover there is no other master, ever: its durable log is the truth.
        guard let elected else { return }
        guard let readIndex = withState({ $0.instance.commitSeq }), readIndex >= elected.start else { throw .notTheMaster(master: nil) }
        guard await readRounds.confirm({ await self.confirmMajority() }) else { throw .notTheMaster(master: nil) }
        // Shown once it is kept in the data dir (at once, or within one write).
        await watch.wait(for: readIndex, level: .committed, upTo: settings.heartbeatTimeout, on: clock)
        guard watch.end(for: .committed) >= readIndex else { throw .notTheMaster(master: nil) }
    }

    /// One heartbeat round: whether a majority (this master included) answered in its epoch.
    /// It asks as few members as can make that majority, those that answered last first, and
    /// one more for each that fails: every probe costs both ends CPU that reads need too.
    private func confirmMajority() async -> Bool {
        let others = settings.clusterSize / 2  // members that must answer besides this master
        guard others > 0 else { return true }
        var untried: [String] = withState { state in
            settings.secondaries.sorted { (state.instance.peers[$0]?.lastContact ?? .zero) > (state.instance.peers[$1]?.lastContact ?? .zero) }
        } ?? []
        return await withTaskGroup(of: Bool.self) { group in
            func ask(_ peer: String) {
                group.addTask {
                    do {
                        let replica = try await self.transport.probe(peer, timeout: self.settings.heartbeatTimeout)
                        await self.onContact(peer, replica)
                        return true
                    } catch TransportError.staleEpoch(let epoch) {
                        await self.node?.memberIsLater(peer, epoch: epoch)
                        return false
                    } catch {
                        return false
                    }
                }
            }
            for _ in 0..<others where !untried.isEmpty { ask(untried.removeFirst()) }
            var confirmed = 0
            for await answered in group {
                if answered {
                    confirmed += 1
                    if confirmed >= others {
                        group.cancelAll()
                        return true
                    }
                } else if !untried.isEmpty {
                    ask(untried.removeFirst())
                }
            }
            return false
        }
    }
}

/// Rounds shared by the reads that wait at the same moment: a read joins the next round to
/// start (one that is running began before the read came, so it proves nothing for it).
/// Up to two rounds run at once, so that a read that comes while one runs starts the next
/// at once instead of waiting for it to end (a read then waits about one round, not one and
/// a half); reads that come while two run share the round that starts after them.
final class ReadRounds: Sendable {
    private struct State {
        var waiting: [CheckedContinuation<Bool, Never>] = []
        var running = 0
    }

    static let concurrentRounds = 2
    private let state = Mutex(State())
    private let taskExecutor: (any TaskExecutor)?

    init(taskExecutor: (any TaskExecutor)?) { self.taskExecutor = taskExecutor }

    /// Whether a round of `round` that started after this call confirmed.
    func confirm(_ round: @escaping @Sendable () async -> Bool) async -> Bool {
        await withCheckedContinuation { continuation in
            let readers = state.withLock { state -> [CheckedContinuation<Bool, Never>]? in
                state.waiting.append(continuation)
                return startRound(&state)
            }
            if let readers { Task(executorPreference: taskExecutor) { await self.run(round, for: readers) } }
        }
    }

    /// Takes the waiting reads into a new round, if one may start now.
    private func startRound(_ state: inout State) -> [CheckedContinuation<Bool, Never>]? {
        guard state.running < Self.concurrentRounds, !state.waiting.isEmpty else { return nil }
        state.running += 1
        defer { state.waiting = [] }
        return state.waiting
    }

    private func run(_ round: @escaping @Sendable () async -> Bool, for readers: [CheckedContinuation<Bool, Never>]) async {
        var readers = readers
        while true {
            let confirmed = await round()
            for reader in readers { reader.resume(returning: confirmed) }
            // Reads that came meanwhile start the next round here.
            guard let next = state.withLock({ state -> [CheckedContinuation<Bool, Never>]? in
                state.running -= 1
                return startRound(&state)
            }) else { return }
            readers = next
        }
    }
}

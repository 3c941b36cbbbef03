import Foundation
import ReplogCore

/// The master's bookkeeping, all behind one lock (`Master.state`).
extension Master {
    typealias WaiterID = WriteConcernTracker.WaiterID

    enum CatchUpEvent {
        case started(behind: Int)
        case finished(entries: Int, took: Duration)
    }

    enum WaitOutcome: Sendable, Equatable {
        case satisfied
        case timedOut
        case shutdown
    }

    struct Admission {
        let seq: Int
        let isRetry: Bool
        /// `nil` when the write concern was met at once.
        let waiter: WaiterID?
    }

    struct PeerState {
        let url: String
        var health: PeerHealth
        /// Highest seq the secondary holds, as far as the master knows; streams resume after it.
        var matched = 0
        /// Counts the times `matched` was reset because the secondary restarted, so its
        /// stream knows to resend from there.
        var rewinds = 0
        var incarnation: String?
        var lastContact: Date?
        var problem: String?
        /// Why the last replication request failed, until one succeeds again. Heartbeats
        /// can succeed while replication fails (a 413, an injected error), so this is kept
        /// apart from `problem`, which a heartbeat clears.
        var replicationFailure: String?
        /// A catch-up in progress: from which seq, up to which, since when.
        var catchUp: (from: Int, target: Int, started: ContinuousClock.Instant)?
    }

    struct State {
        var tracker: WriteConcernTracker
        var idempotency: IdempotencyWindow
        var peers: [String: PeerState]
        var waiters = Waiters()
        var nextWaiterID = 0
        /// When an append last had to wait for acknowledgements (replication lingers only
        /// while the traffic is `w=1`).
        var lastAppendWithWaiter: Duration = .seconds(-1_000_000)
        var shuttingDown = false

        init(settings: MasterSettings) {
            tracker = WriteConcernTracker(secondaries: settings.secondaries)
            idempotency = IdempotencyWindow(capacity: settings.idempotencyWindow)
            peers = Dictionary(uniqueKeysWithValues: settings.secondaries.map {
                ($0, PeerState(url: $0, health: PeerHealth(thresholds: settings.healthThresholds)))
            })
        }

        var quorum: Quorum { Quorum(secondaryStatuses: peers.values.map(\.health.status)) }

        /// The new quorum if writability changed since `wasWritable`.
        func quorumChange(since wasWritable: Bool) -> Quorum? {
            let quorum = self.quorum
            return quorum.isWritable == wasWritable ? nil : quorum
        }

        mutating func admit(seq: Int, w: Int, isRetry: Bool) -> Admission {
            let id = nextWaiterID
            nextWaiterID += 1
            guard !tracker.onAppend(id, seq: seq, required: w) else {
                return Admission(seq: seq, isRetry: isRetry, waiter: nil)
            }
            waiters.register(id)
            return Admission(seq: seq, isRetry: isRetry, waiter: id)
        }
    }

    /// Appends waiting for acknowledgements. An outcome may arrive before its append has
    /// suspended; it is kept until `suspend` collects it.
    struct Waiters {
        private enum Slot {
            case registered
            case suspended(CheckedContinuation<WaitOutcome, Never>)
            case finished(WaitOutcome)
        }

        private var slots: [WaiterID: Slot] = [:]

        mutating func register(_ id: WaiterID) { slots[id] = .registered }

        /// Parks `continuation`, or returns the outcome if it already arrived.
        mutating func suspend(_ id: WaiterID, _ continuation: CheckedContinuation<WaitOutcome, Never>) -> WaitOutcome? {
            switch slots[id] {
            case .registered:
                slots[id] = .suspended(continuation)
                return nil
            case .finished(let outcome):
                slots[id] = nil
                return outcome
            case .suspended, nil:
                preconditionFailure("waiter \(id) suspended twice or never registered")
            }
        }

        /// Records the first outcome of `id`; returns the continuation to resume, if parked.
        mutating func finish(_ id: WaiterID, _ outcome: WaitOutcome) -> CheckedContinuation<WaitOutcome, Never>? {
            switch slots[id] {
            case .registered:
                slots[id] = .finished(outcome)
                return nil
            case .suspended(let continuation):
                slots[id] = nil
                return continuation
            case .finished, nil:
                return nil  // already decided
            }
        }

        /// Forgets a waiter that will never suspend.
        mutating func discard(_ id: WaiterID) { slots[id] = nil }

        mutating func finishAll(_ outcome: WaitOutcome) -> [CheckedContinuation<WaitOutcome, Never>] {
            var continuations: [CheckedContinuation<WaitOutcome, Never>] = []
            for id in slots.keys.sorted() {
                if let continuation = finish(id, outcome) { continuations.append(continuation) }
            }
            return continuations
        }
    }
}

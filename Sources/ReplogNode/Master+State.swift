import ReplogCore

/// The master's state behind its one lock (`Master.state`): the protocol as a value
/// (`ReplicationInstance`) and the continuations of the appends that wait for it.
extension Master {
    typealias WaiterID = WriteConcernTracker.WaiterID

    enum WaitOutcome: Sendable, Equatable {
        case satisfied
        case timedOut
        case shutdown
    }

    /// Everything behind the master's one lock: the protocol, and the clients it answers.
    struct State {
        var instance: ReplicationInstance
        var waiters = Waiters()
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

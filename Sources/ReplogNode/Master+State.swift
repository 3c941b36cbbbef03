import ReplogCore

/// The master's state, behind its node's one lock (`Node.State.master`): the protocol as a
/// value (`ReplicationInstance`) and the continuations of the appends that wait for it.
extension Master {
    typealias WaiterID = WriteConcernTracker.WaiterID

    enum WaitOutcome: Sendable, Equatable {
        case satisfied
        case timedOut
        case shutdown
    }

    /// Everything a master keeps: the protocol, and the clients it answers.
    struct State {
        var instance: ReplicationInstance
        var waiters = Waiters()
    }

    /// A master's state in its node's: of the master the node runs, or of the last one it ran
    /// (whose loops end soon after it stepped down) until it runs the next.
    struct Role {
        let master: ObjectIdentifier
        var state: State
    }

    /// Runs `body` on this master's state under its node's one lock, where the election state
    /// is too, unless `refused` finds in that state why not; nil once the node runs another
    /// master (a stale master's loops then change nothing, and end).
    @discardableResult
    func withState<T: Sendable, E: Error>(
        refusing refused: (borrowing FailoverMember) -> E? = { _ in nil }, _ body: (inout State) throws(E) -> T
    ) throws(E) -> T? {
        try node?.state.withLock { node throws(E) -> T? in
            guard node.master?.master == ObjectIdentifier(self) else { return nil }
            if let refusal = refused(node.member) { throw refusal }
            return try body(&node.master!.state)
        }
    }

    /// `withState` with the node's election state as well, for the events that concern both
    /// (a member's answer); also returns the version of the election record to keep before
    /// anything that rests on the event leaves (`Node.record`).
    func withStates<T: Sendable>(_ body: (inout State, inout FailoverMember) -> T) -> (T, recorded: Int)? {
        guard let node else { return nil }
        return node.state.withLock { state -> (T, recorded: Int)? in
            guard state.master?.master == ObjectIdentifier(self) else { return nil }
            let result = body(&state.master!.state, &state.member)
            return (result, node.keep(state.member))
        }
    }

    /// What a master starts with: the keys of its log's latest appends (a master restarted
    /// from its data dir remembers them), its epoch's start, and the commit point it knew.
    func startingState(committedBefore: Int) -> State {
        var instance = ReplicationInstance(
            settings: settings.protocolSettings, logID: logID, remembered: store.recentIDs, epochStart: elected?.start, committed: committedBefore)
        instance.onLogStart(store.firstSeq)
        return State(instance: instance)
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

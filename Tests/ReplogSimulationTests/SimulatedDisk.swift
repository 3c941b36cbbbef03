import ReplogCore
import ReplogStorage
import Synchronization

/// A node's disk in the simulation: it keeps what was fsynced, and a power loss takes away
/// what was not (all of it, or a torn tail: the part of it that happened to reach the platter).
///
/// A node opens it (`open()`) each time it starts. A power loss closes every handle for
/// good, so a crashed node's leftover tasks can neither write nor fsync what the next run
/// of the node owns.
final class SimulatedDisk: Sendable {
    private struct State {
        var entries: [LogEntry] = []
        var ids: [String?] = []
        /// Batch marks (`RecordFraming`): `continues[i]` when entry `i + 1`'s batch goes on.
        var continues: [Bool] = []
        /// The running hash of `entries`, as a real store keeps it (rebuilt after a power loss,
        /// as a real store rebuilds it when it opens).
        var chain = HashChain()
        /// How many entries an fsync has covered.
        var durable = 0
        /// Bumped by every power loss; a handle of an older generation is dead.
        var generation = 0
        /// Bumped by every power loss and cut: entries at seqs seen before may differ now.
        var changes = 0
    }

    private let state = Mutex(State())

    /// Everything on the disk now, synced or not (what the checker compares).
    var entries: [LogEntry] { state.withLock { $0.entries } }

    /// How many entries an fsync has covered: a power loss now keeps at least these.
    var durableCount: Int { state.withLock { $0.durable } }

    /// Bumped whenever entries can go (a power loss, a cut): a checker that remembered how
    /// far it read must read again.
    var changes: Int { state.withLock { $0.changes } }

    /// Entries that a power loss now could take away.
    var unsyncedCount: Int { state.withLock { $0.entries.count - $0.durable } }

    /// Starts a run of the node on this disk.
    func open() -> Handle { Handle(disk: self, generation: state.withLock { $0.generation }) }

    /// The power goes: of what was not fsynced, only the first `keptUnsynced` entries are
    /// found on disk afterwards; what is found is durable from then on.
    func powerLoss(keptUnsynced: Int) {
        state.withLock { state in
            let kept = state.durable + min(keptUnsynced, state.entries.count - state.durable)
            state.entries.removeLast(state.entries.count - kept)
            state.ids.removeLast(state.ids.count - kept)
            state.continues.removeLast(state.continues.count - kept)
            // Recovery drops a batch whose end is missing, as `FileLogStore` does.
            while state.continues.last == true {
                state.entries.removeLast()
                state.ids.removeLast()
                state.continues.removeLast()
            }
            state.chain = HashChain()
            for entry in state.entries { state.chain.append(entry) }
            state.durable = state.entries.count
            state.generation += 1
            state.changes += 1
        }
    }

    /// One run of a node on the disk: the node's `LogStore`.
    final class Handle: LogStore {
        let disk: SimulatedDisk
        let generation: Int
        init(disk: SimulatedDisk, generation: Int) {
            self.disk = disk
            self.generation = generation
        }

        /// The keys on the disk now, as a file store keeps them up to date (a node elected
        /// master reads them when it takes over).
        var recentIDs: [RememberedID] {
            (try? withLiveDisk { state in
                state.ids.enumerated().compactMap { index, id in id.map { RememberedID(id: $0, seq: index + 1) } }
            }) ?? []
        }

        var isDurable: Bool { true }

        private func withLiveDisk<T>(_ body: (inout State) throws(LogStoreError) -> T) throws(LogStoreError) -> T {
            try disk.state.withLock { (state: inout State) throws(LogStoreError) -> T in
                guard state.generation == generation else { throw .io("the node lost power") }
                return try body(&state)
            }
        }

        var lastSeq: Int { (try? withLiveDisk { $0.entries.count }) ?? 0 }

        func append(_ entries: [LogEntry]) throws(LogStoreError) { try append(entries, ids: []) }

        func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError) { try append(entries, ids: ids, continues: []) }

        func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError) {
            try withLiveDisk { (state: inout State) throws(LogStoreError) in
                for (offset, entry) in entries.enumerated() {
                    guard entry.seq == state.entries.count + 1 else {
                        throw .notContiguous(expected: state.entries.count + 1, got: entry.seq)
                    }
                    state.entries.append(entry)
                    state.chain.append(entry)
                    state.ids.append(offset < ids.count ? ids[offset] : nil)
                    state.continues.append(offset < continues.count ? continues[offset] : false)
                }
            }
        }

        var completeSeq: Int { (try? withLiveDisk { ($0.continues.lastIndex(of: false) ?? -1) + 1 }) ?? 0 }

        func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] {
            try withLiveDisk { state in
                let start = max(seq, 1)
                guard limit > 0, start <= state.entries.count else { return [] }
                return Array(state.entries[(start - 1)..<(start - 1 + min(limit, state.entries.count - start + 1))])
            }
        }

        /// The records as a file store reads them for replication: keys and batch marks
        /// included, and never ending inside a batch.
        func readRecords(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch? {
            try withLiveDisk { state in
                let start = max(seq, 1)
                guard limit > 0, start <= state.entries.count else { return nil }
                var bytes: [UInt8] = []
                var last = start - 1
                for index in (start - 1)..<state.entries.count {
                    let size = RecordFraming.size(of: state.entries[index], id: state.ids[index])
                    let batchGoesOn = index > 0 && state.continues[index - 1]
                    if !batchGoesOn, last >= start, index >= start - 1 + limit || bytes.count + size > maxBytes { break }  // one larger entry goes alone
                    RecordFraming.encode(state.entries[index], id: state.ids[index], continues: state.continues[index], into: &bytes)
                    last = index + 1
                }
                return RecordBatch(bytes: bytes, seqs: start...last)
            }
        }

        func hash(at seq: Int) -> String? {
            (try? withLiveDisk { $0.chain.hash(at: seq) }) ?? nil
        }

        func sync() throws(LogStoreError) {
            try withLiveDisk { $0.durable = $0.entries.count }
        }

        /// Cuts everything after `seq`, durably (as `FileLogStore` does), and returns it.
        func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry] {
            try withLiveDisk { state in
                guard seq < state.entries.count else { return [] }
                let cut = Array(state.entries[max(seq, 0)...])
                state.entries.removeLast(cut.count)
                state.ids.removeLast(cut.count)
                state.continues.removeLast(cut.count)
                state.chain = HashChain()
                for entry in state.entries { state.chain.append(entry) }
                state.durable = min(state.durable, state.entries.count)
                state.changes += 1
                return cut
            }
        }
    }
}

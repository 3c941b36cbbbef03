import Foundation
import ReplogCore
import ReplogStorage
import Synchronization

/// A node's disk in the simulation: it keeps what was fsynced, and a power loss takes away
/// what was not (all of it, or a torn tail: the part of it that happened to reach the platter).
///
/// Retention works as in `FileLogStore`: the log is cut into segments of `segmentEntries`
/// entries, and `applyRetention` drops whole old ones, durably, moving the log's start; a
/// secondary behind its master's start starts its log again there (`restart(at:)`). What
/// retention dropped is hidden from the node but kept for the checker (`entries`), so that
/// a dropped entry can still be shown to have been the acknowledged one.
///
/// A node opens it (`open()`) each time it starts. A power loss closes every handle for
/// good, so a crashed node's leftover tasks can neither write nor fsync what the next run
/// of the node owns.
final class SimulatedDisk: Sendable {
    private struct State {
        /// The seq of `entries[0]`: 1, or the start of a log that was started again.
        var knownFrom = 1
        /// Everything this disk held from `knownFrom` on, including what retention dropped
        /// (the node sees only what follows `chain.base`).
        var entries: [LogEntry] = []
        var ids: [String?] = []
        /// Batch marks (`RecordFraming`): `continues[i]` when the next entry's batch goes on.
        var continues: [Bool] = []
        /// The running hash of the visible log from its start, as a real store keeps it
        /// (rebuilt after a power loss, as a real store rebuilds it when it opens).
        var chain = HashChain()
        /// The last seq an fsync covered.
        var durable = 0
        /// Where each segment starts, and the chain's full link before it (retention moves
        /// the start to one of these, as `FileLogStore` does).
        var segmentStarts: [Int] = []
        var segmentLinks: [[UInt8]] = []
        /// Bumped by every power loss; a handle of an older generation is dead.
        var generation = 0
        /// Bumped by every power loss, cut and restart: entries at seqs seen before may differ now.
        var changes = 0

        var lastSeq: Int { knownFrom - 1 + entries.count }
        var firstSeq: Int { chain.base + 1 }
        func index(_ seq: Int) -> Int { seq - knownFrom }

        /// Drops every entry after `seq` (and every segment that then starts after the log).
        mutating func keep(through seq: Int) {
            let count = lastSeq - seq
            entries.removeLast(count)
            ids.removeLast(count)
            continues.removeLast(count)
            while let last = segmentStarts.last, last > seq {
                segmentStarts.removeLast()
                segmentLinks.removeLast()
            }
            chain = HashChain(base: chain.base, link: chain.baseLink)
            for seq in stride(from: firstSeq, through: lastSeq, by: 1) { chain.append(entries[index(seq)]) }
        }

        func refuseBeforeStart(_ seq: Int) throws(LogStoreError) {
            if seq < firstSeq { throw .gone(firstSeq: firstSeq) }
        }
    }

    private let state = Mutex(State())
    /// How many entries a segment takes before the next one starts.
    let segmentEntries: Int

    init(segmentEntries: Int = 64) {
        self.segmentEntries = segmentEntries
    }

    /// Everything the disk held from `knownFrom` on, synced or not, including what retention
    /// dropped (what the checker compares).
    var entries: [LogEntry] { state.withLock { $0.entries } }

    /// The seq of `entries.first`: 1 unless the node started its log again (`restart(at:)`).
    var knownFrom: Int { state.withLock { $0.knownFrom } }

    /// The first seq the node still holds (retention).
    var firstSeq: Int { state.withLock { $0.firstSeq } }

    var lastSeq: Int { state.withLock { $0.lastSeq } }

    /// The chain's hash at `lastSeq`: two disks with the same one hold the same log, even
    /// where retention dropped it.
    var lastHash: String? { state.withLock { $0.chain.hash(at: $0.lastSeq) } }

    /// The last seq an fsync covered: a power loss now keeps at least these.
    var durableSeq: Int { state.withLock { $0.durable } }

    /// Bumped whenever entries can go (a power loss, a cut, a restart): a checker that
    /// remembered how far it read must read again.
    var changes: Int { state.withLock { $0.changes } }

    /// Entries that a power loss now could take away.
    var unsyncedCount: Int { state.withLock { $0.lastSeq - $0.durable } }

    /// Starts a run of the node on this disk.
    func open() -> Handle { Handle(disk: self, generation: state.withLock { $0.generation }) }

    /// The power goes: of what was not fsynced, only the first `keptUnsynced` entries are
    /// found on disk afterwards; what is found is durable from then on.
    func powerLoss(keptUnsynced: Int) {
        state.withLock { state in
            var kept = state.durable + min(keptUnsynced, state.lastSeq - state.durable)
            // Recovery drops a batch whose end is missing, as `FileLogStore` does.
            while kept >= state.firstSeq, state.continues[state.index(kept)] { kept -= 1 }
            state.keep(through: kept)
            state.durable = state.lastSeq
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
        /// master reads them when it takes over): retention keeps the keys of what it drops,
        /// a log started again knows none before its start.
        var recentIDs: [RememberedID] {
            (try? withLiveDisk { state in
                state.ids.enumerated().compactMap { index, id in id.map { RememberedID(id: $0, seq: state.knownFrom + index) } }
            }) ?? []
        }

        var isDurable: Bool { true }

        private func withLiveDisk<T>(_ body: (inout State) throws(LogStoreError) -> T) throws(LogStoreError) -> T {
            try disk.state.withLock { (state: inout State) throws(LogStoreError) -> T in
                guard state.generation == generation else { throw .io("the node lost power") }
                return try body(&state)
            }
        }

        var lastSeq: Int { (try? withLiveDisk { $0.lastSeq }) ?? 0 }

        var start: LogStart { (try? withLiveDisk { LogStart(firstSeq: $0.firstSeq, link: $0.chain.baseLink) }) ?? LogStart(firstSeq: 1, link: HashChain().lastLink) }

        var firstSeq: Int { (try? withLiveDisk { $0.firstSeq }) ?? 1 }

        func append(_ entries: [LogEntry]) throws(LogStoreError) { try append(entries, ids: []) }

        func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError) { try append(entries, ids: ids, continues: []) }

        func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError) {
            let segmentEntries = disk.segmentEntries
            try withLiveDisk { (state: inout State) throws(LogStoreError) in
                for (offset, entry) in entries.enumerated() where entry.seq != state.lastSeq + 1 + offset {
                    throw .notContiguous(expected: state.lastSeq + 1 + offset, got: entry.seq)
                }
                for (offset, entry) in entries.enumerated() {
                    if state.segmentStarts.last.map({ entry.seq - $0 >= segmentEntries }) ?? true {
                        state.segmentStarts.append(entry.seq)
                        state.segmentLinks.append(state.chain.lastLink)
                    }
                    state.entries.append(entry)
                    state.chain.append(entry)
                    state.ids.append(offset < ids.count ? ids[offset] : nil)
                    state.continues.append(offset < continues.count ? continues[offset] : false)
                }
            }
        }

        var completeSeq: Int {
            (try? withLiveDisk { state in
                var seq = state.lastSeq
                while seq >= state.firstSeq, state.continues[state.index(seq)] { seq -= 1 }
                return seq
            }) ?? 0
        }

        func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] {
            try withLiveDisk { (state: inout State) throws(LogStoreError) -> [LogEntry] in
                let start = max(seq, 1)
                guard limit > 0, start <= state.lastSeq else { return [] }
                try state.refuseBeforeStart(start)
                let from = state.index(start)
                return Array(state.entries[from..<(from + min(limit, state.lastSeq - start + 1))])
            }
        }

        /// The records as a file store reads them for replication: keys and batch marks
        /// included, and never ending inside a batch.
        func readRecords(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch? {
            try withLiveDisk { (state: inout State) throws(LogStoreError) -> RecordBatch? in
                let start = max(seq, 1)
                guard limit > 0, start <= state.lastSeq else { return nil }
                try state.refuseBeforeStart(start)
                var bytes: [UInt8] = []
                var last = start - 1
                for seq in start...state.lastSeq {
                    let index = state.index(seq)
                    let size = RecordFraming.size(of: state.entries[index], id: state.ids[index])
                    let batchGoesOn = seq > state.firstSeq && state.continues[index - 1]
                    if !batchGoesOn, last >= start, seq >= start + limit || bytes.count + size > maxBytes { break }  // one larger entry goes alone
                    RecordFraming.encode(state.entries[index], id: state.ids[index], continues: state.continues[index], into: &bytes)
                    last = seq
                }
                return RecordBatch(bytes: bytes, seqs: start...last)
            }
        }

        func hash(at seq: Int) -> String? {
            (try? withLiveDisk { $0.chain.hash(at: seq) }) ?? nil
        }

        func sync() throws(LogStoreError) {
            try withLiveDisk { $0.durable = $0.lastSeq }
        }

        /// Cuts everything after `seq`, durably (as `FileLogStore` does), and returns it.
        func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry] {
            try withLiveDisk { (state: inout State) throws(LogStoreError) -> [LogEntry] in
                guard seq < state.lastSeq else { return [] }
                try state.refuseBeforeStart(seq + 1)
                let cut = Array(state.entries[state.index(seq + 1)...])
                state.keep(through: seq)
                state.durable = min(state.durable, state.lastSeq)
                state.changes += 1
                return cut
            }
        }

        /// Drops the oldest whole segments `policy` no longer keeps (never the last), durably.
        func applyRetention(_ policy: RetentionPolicy, now: Date) throws(LogStoreError) -> Int {
            try withLiveDisk { state in
                let views = state.segmentStarts.enumerated().map { index, first in
                    let last = index + 1 < state.segmentStarts.count ? state.segmentStarts[index + 1] - 1 : state.lastSeq
                    let bytes = stride(from: first, through: last, by: 1).reduce(0) { total, seq in
                        total + RecordFraming.size(of: state.entries[state.index(seq)], id: state.ids[state.index(seq)])
                    }
                    return RetentionPolicy.Segment(lastSeq: last, bytes: bytes, lastWrite: now)
                }
                let count = policy.segmentsToDrop(views, lastSeq: state.lastSeq, now: now)
                guard count > 0 else { return 0 }
                let (start, link) = (state.segmentStarts[count], state.segmentLinks[count])
                let dropped = start - state.firstSeq
                state.chain.forget(before: start, link: link)
                state.segmentStarts.removeFirst(count)
                state.segmentLinks.removeFirst(count)
                // The start is written durably: a power loss never brings the dropped ones back.
                state.durable = max(state.durable, start - 1)
                return dropped
            }
        }

        /// Replaces the log with an empty one that starts at `start`, durably.
        func restart(at start: LogStart) throws(LogStoreError) {
            guard let link = start.linkBytes, start.firstSeq >= 1 else { throw .io("a log start needs a seq and a 64-digit link") }
            try withLiveDisk { state in
                state.knownFrom = start.firstSeq
                state.entries = []
                state.ids = []
                state.continues = []
                state.segmentStarts = []
                state.segmentLinks = []
                state.chain = HashChain(base: start.firstSeq - 1, link: link)
                state.durable = start.firstSeq - 1
                state.changes += 1
            }
        }
    }
}

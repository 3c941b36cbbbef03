import Synchronization
import ReplogCore

/// Where a node keeps its log.
///
/// A store only ever holds a contiguous prefix `1...lastSeq` of the total order:
/// ordering and hold-back happen before entries reach it, so a store never has gaps.
/// Implementations MUST be safe to call from many tasks at once.
public protocol LogStore: Sendable {
    /// The highest stored seq, 0 when empty.
    var lastSeq: Int { get }

    /// Appends entries that continue the log.
    ///
    /// - Parameter entries: MUST start at `lastSeq + 1` and be contiguous.
    func append(_ entries: [LogEntry]) throws(LogStoreError)

    /// Appends entries with the clients' idempotency keys (`ids[i]` belongs to
    /// `entries[i]`; missing or `nil` means none). A store that survives a restart keeps
    /// them and hands them back in `recentIDs`; one that does not may drop them.
    func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError)

    /// Appends entries with keys and batch marks: `continues[i]` says that `entries[i + 1]`
    /// (in this call or a later one) belongs to the same atomic batch (`RecordFraming`).
    /// A store that cannot keep the marks throws rather than drop them.
    func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError)

    /// The highest seq that ends a batch (`lastSeq` when no batch is open): nothing past it
    /// may be listed, acknowledged or sent on alone, since part of a batch is no message.
    var completeSeq: Int { get }

    /// The idempotency keys of the latest entries that had one, oldest first: found when the
    /// store was opened and kept up to date by appends and cuts (empty for a store that
    /// starts empty every time). A master reads them when it starts (or is elected).
    var recentIDs: [RememberedID] { get }

    /// Up to `limit` entries starting at `seq` (1-based), in order.
    /// - Throws: when the entries cannot be read back (a disk error): never a short answer.
    func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry]

    /// Like `read(from:limit:)`, but stops before the entry that would take the result past
    /// `maxBytes` as records (`RecordFraming`, the size on disk and on the wire). The first
    /// entry is always included, however large, so that a reader always makes progress.
    func read(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> [LogEntry]

    /// Like `read(from:limit:maxBytes:)`, but as the records themselves, ready to send to a
    /// secondary, and never ending inside a batch: it goes on to the batch's last record
    /// (as far as the store holds it), whatever `limit` and `maxBytes` say. `nil` when
    /// there is nothing at `seq`.
    func readRecords(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch?

    /// Makes every entry appended before the call durable (a no-op for memory).
    func sync() throws(LogStoreError)

    /// Whether `sync` does anything: `false` for a store that forgets everything anyway.
    var isDurable: Bool { get }

    /// The fsync that failed, if one did: the store then refuses every write and sync.
    var failedSync: String? { get }

    /// The log's running hash at `seq` (`HashChain`), for any `seq` from 0 to `lastSeq`;
    /// nil beyond, or from a store that keeps no chain.
    func hash(at seq: Int) -> String?

    /// Cuts every entry after `seq` and returns them, oldest first; durable before it
    /// returns. Only failover does this: a node that was master (or followed one) holds
    /// entries the new master lacks, and must drop them to follow it.
    func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry]
}

extension LogStore {
    public func sync() throws(LogStoreError) {}
    public var isDurable: Bool { false }
    public var failedSync: String? { nil }
    public func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError) { try append(entries) }
    public func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError) {
        guard !continues.contains(true) else { throw .io("this log store cannot keep atomic batches") }
        try append(entries, ids: ids)
    }
    public var completeSeq: Int { lastSeq }
    public var recentIDs: [RememberedID] { [] }
    public func hash(at seq: Int) -> String? { nil }
    public func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry] {
        throw .io("this log store cannot cut its log")
    }

    public func readRecords(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch? {
        let entries = try read(from: seq, limit: limit, maxBytes: maxBytes)
        return entries.isEmpty ? nil : RecordBatch(entries)
    }

    public func read(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> [LogEntry] {
        Array(try read(from: seq, limit: limit).prefix(recordBytes: maxBytes))
    }
}

extension Array where Element == LogEntry {
    /// The longest prefix whose records take at most `maxBytes`; never empty unless `self` is.
    public func prefix(recordBytes maxBytes: Int) -> ArraySlice<LogEntry> {
        var total = 0
        for (index, entry) in enumerated() {
            total += RecordFraming.size(of: entry)
            if total > maxBytes { return self[..<Swift.max(index, 1)] }
        }
        return self[...]
    }
}

public enum LogStoreError: Error, Equatable, CustomStringConvertible {
    /// The caller tried to append something other than `lastSeq + 1`.
    case notContiguous(expected: Int, got: Int)
    /// The operating system refused a file operation.
    case io(String)

    public var description: String {
        switch self {
        case .notContiguous(let expected, let got):
            "append must continue the log: expected seq \(expected), got \(got)"
        case .io(let reason):
            reason
        }
    }
}

/// The course's log: kept in memory, gone when the process ends.
public final class InMemoryLogStore: LogStore {
    private struct State {
        var messages: [String] = []
        /// `continues[i]`: the entry at seq `i + 1` is not the last of its batch.
        var continues: [Bool] = []
        var chain = HashChain()
        var completeSeq = 0

        mutating func findCompleteSeq() {
            completeSeq = (continues.lastIndex(of: false) ?? -1) + 1
        }

        func entries(from start: Int, limit: Int) -> [LogEntry] {
            guard limit > 0, start <= messages.count else { return [] }
            let count = min(limit, messages.count - start + 1)  // no `start + limit`: limit may be Int.max
            return (start..<start + count).map { LogEntry(seq: $0, message: messages[$0 - 1]) }
        }
    }

    private let state = Mutex(State())

    public init() {}

    public var lastSeq: Int { state.withLock { $0.messages.count } }

    public var completeSeq: Int { state.withLock { $0.completeSeq } }

    public func append(_ entries: [LogEntry]) throws(LogStoreError) {
        try append(entries, ids: [], continues: [])
    }

    public func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError) {
        try append(entries, ids: ids, continues: [])
    }

    public func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError) {
        try state.withLock { (state: inout State) throws(LogStoreError) in
            // Nothing of a broken batch is kept: check all of it before storing any.
            for (offset, entry) in entries.enumerated() where entry.seq != state.messages.count + 1 + offset {
                throw .notContiguous(expected: state.messages.count + 1 + offset, got: entry.seq)
            }
            for (index, entry) in entries.enumerated() {
                state.messages.append(entry.message)
                let continuesBatch = continues.at(index) ?? false
                state.continues.append(continuesBatch)
                if !continuesBatch { state.completeSeq = entry.seq }
                state.chain.append(entry)
            }
        }
    }

    public func readRecords(from seq: Int, limit: Int, maxBytes: Int) -> RecordBatch? {
        state.withLock { state in
            let start = max(seq, 1)
            guard limit > 0, start <= state.messages.count else { return nil }
            var entries = Array(state.entries(from: start, limit: limit).prefix(recordBytes: maxBytes))
            // Never end inside a batch: go on to its last record.
            while let last = entries.last, last.seq < state.messages.count, state.continues[last.seq - 1] {
                entries.append(LogEntry(seq: last.seq + 1, message: state.messages[last.seq]))
            }
            return RecordBatch(entries, continues: entries.map { state.continues[$0.seq - 1] })
        }
    }

    public func hash(at seq: Int) -> String? {
        state.withLock { $0.chain.hash(at: seq) }
    }

    public func truncate(after seq: Int) -> [LogEntry] {
        state.withLock { state in
            let keep = max(0, min(seq, state.messages.count))
            let cut = (keep..<state.messages.count).map { LogEntry(seq: $0 + 1, message: state.messages[$0]) }
            state.messages.removeLast(state.messages.count - keep)
            state.continues.removeLast(state.continues.count - keep)
            state.findCompleteSeq()
            state.chain = HashChain(of: state.messages)
            return cut
        }
    }

    public func read(from seq: Int, limit: Int) -> [LogEntry] {
        state.withLock { $0.entries(from: max(seq, 1), limit: limit) }
    }
}

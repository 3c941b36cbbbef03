import Foundation
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

    /// `readRecords`, if that needs no wait for a disk; `.none` when part of it would have
    /// to come from the disk (then read it where waiting is fine: `BlockingIO`).
    func readRecordsWithoutWaiting(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch??

    /// Makes every entry appended before the call durable (a no-op for memory). Runs file
    /// I/O: call it off the cooperative threads.
    func sync() throws(LogStoreError)

    /// Hands every entry appended before the call to the operating system, so that a crash
    /// of the process (not of the machine) loses none of them (a no-op for memory, and for
    /// a store whose `append` writes). Runs file I/O: call it off the cooperative threads.
    /// - Throws: `LogStoreError.refusedWrite` when the disk refuses: not final, and nothing
    ///   is lost; the store refuses appends until a later `flush` or `sync` succeeds.
    func flush() throws(LogStoreError)

    /// Why the last write failed, while appends wait for one that succeeds (a full disk).
    var refusedWrite: String? { get }

    /// Whether reads may wait for a disk: then nodes read through `BlockingIO`, off the
    /// cooperative threads.
    var readsFromDisk: Bool { get }

    /// Whether `sync` does anything: `false` for a store that forgets everything anyway.
    var isDurable: Bool { get }

    /// The fsync that failed, if one did: the store then refuses every write and sync.
    var failedSync: String? { get }

    /// The log's running hash at `seq` (`HashChain`), for any `seq` from 0 to `lastSeq`;
    /// nil beyond, or from a store that keeps no chain.
    func hash(at seq: Int) -> String?

    /// Where the log starts: seq 1, or later once retention dropped its beginning (reads
    /// before `start.firstSeq` throw `LogStoreError.gone`).
    var start: LogStart { get }

    /// `start.firstSeq`, without building the link's text (asked on every heartbeat).
    var firstSeq: Int { get }

    /// Drops the oldest whole segments that `policy` no longer keeps (never the one being
    /// written), durably; returns how many entries went. Runs file I/O: call it off the
    /// cooperative threads.
    func applyRetention(_ policy: RetentionPolicy, now: Date) throws(LogStoreError) -> Int

    /// Replaces the whole log with an empty one that starts at `start` (a secondary that
    /// fell behind its master's first seq), durably.
    func restart(at start: LogStart) throws(LogStoreError)

    /// Cuts every entry after `seq` and returns them, oldest first; durable before it
    /// returns. Only failover does this: a node that was master (or followed one) holds
    /// entries the new master lacks, and must drop them to follow it.
    func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry]
}

extension LogStore {
    public func sync() throws(LogStoreError) {}
    public func flush() throws(LogStoreError) {}
    public func readRecordsWithoutWaiting(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch?? {
        .some(try readRecords(from: seq, limit: limit, maxBytes: maxBytes))
    }
    public var refusedWrite: String? { nil }
    public var readsFromDisk: Bool { false }
    public var isDurable: Bool { false }
    public var failedSync: String? { nil }
    public func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError) { try append(entries) }
    public func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError) {
        guard !continues.contains(true) else { throw .io("this log store cannot keep atomic batches") }
        try append(entries, ids: ids)
    }
    public var completeSeq: Int { lastSeq }
    public var start: LogStart { LogStart(firstSeq: 1, link: HashChain().lastLink) }
    public var firstSeq: Int { 1 }
    public func applyRetention(_ policy: RetentionPolicy, now: Date) throws(LogStoreError) -> Int { 0 }
    public func restart(at start: LogStart) throws(LogStoreError) {
        throw .io("this log store cannot start its log again")
    }
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
    /// The entries asked for are no longer kept: the log starts at `firstSeq` (retention).
    case gone(firstSeq: Int)
    /// The disk refused a write (a full disk): not final, the store tries again.
    case refusedWrite(String)

    public var description: String {
        switch self {
        case .notContiguous(let expected, let got):
            "append must continue the log: expected seq \(expected), got \(got)"
        case .io(let reason), .refusedWrite(let reason):
            reason
        case .gone(let firstSeq):
            "no longer kept: the log starts at seq \(firstSeq) (retention)"
        }
    }
}

/// The course's log: kept in memory, gone when the process ends.
///
/// Retention works as in the file store: the log is cut into virtual segments of
/// `segmentBytes` (counted as records would take on disk) and whole old ones go, so
/// `--retain-*` bound a node's memory too.
public final class InMemoryLogStore: LogStore {
    private struct Segment {
        let firstSeq: Int
        var bytes = 0
        var lastWrite: Date
        /// The chain's full link at `firstSeq - 1`.
        let startLink: [UInt8]
    }

    private struct State {
        /// `messages[i]` is the entry at seq `chain.base + 1 + i`.
        var messages: [String] = []
        /// `continues[i]`: that entry is not the last of its batch.
        var continues: [Bool] = []
        var chain = HashChain()
        var completeSeq = 0
        var segments: [Segment] = []

        var firstSeq: Int { chain.base + 1 }
        var lastSeq: Int { chain.base + messages.count }

        mutating func findCompleteSeq() {
            completeSeq = continues.lastIndex(of: false).map { firstSeq + $0 } ?? chain.base
        }

        func message(at seq: Int) -> String { messages[seq - firstSeq] }
        func continues(_ seq: Int) -> Bool { continues[seq - firstSeq] }

        func entries(from start: Int, limit: Int) -> [LogEntry] {
            guard limit > 0, start <= lastSeq else { return [] }
            let count = min(limit, lastSeq - start + 1)  // no `start + limit`: limit may be Int.max
            return (start..<start + count).map { LogEntry(seq: $0, message: message(at: $0)) }
        }

        func refuseBeforeStart(_ seq: Int) throws(LogStoreError) {
            if seq < firstSeq { throw .gone(firstSeq: firstSeq) }
        }
    }

    private let state = Mutex(State())
    /// Where a virtual segment closes (`--segment-bytes`).
    public let segmentBytes: Int

    public init(segmentBytes: Int = 64 << 20) {
        self.segmentBytes = segmentBytes
    }

    public var lastSeq: Int { state.withLock { $0.lastSeq } }

    public var completeSeq: Int { state.withLock { $0.completeSeq } }

    public var start: LogStart { state.withLock { LogStart(firstSeq: $0.firstSeq, link: $0.chain.baseLink) } }

    public var firstSeq: Int { state.withLock { $0.firstSeq } }

    public func append(_ entries: [LogEntry]) throws(LogStoreError) {
        try append(entries, ids: [], continues: [])
    }

    public func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError) {
        try append(entries, ids: ids, continues: [])
    }

    public func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError) {
        try state.withLock { (state: inout State) throws(LogStoreError) in
            // Nothing of a broken batch is kept: check all of it before storing any.
            for (offset, entry) in entries.enumerated() where entry.seq != state.lastSeq + 1 + offset {
                throw .notContiguous(expected: state.lastSeq + 1 + offset, got: entry.seq)
            }
            guard let first = entries.first else { return }
            let bytes = entries.reduce(0) { $0 + RecordFraming.size(of: $1) }
            if state.segments.last.map({ $0.bytes > 0 && $0.bytes + bytes > segmentBytes }) ?? true {
                state.segments.append(Segment(firstSeq: first.seq, lastWrite: Date(), startLink: state.chain.lastLink))
            }
            state.segments[state.segments.count - 1].bytes += bytes
            state.segments[state.segments.count - 1].lastWrite = Date()
            for (index, entry) in entries.enumerated() {
                state.messages.append(entry.message)
                let continuesBatch = continues.at(index) ?? false
                state.continues.append(continuesBatch)
                if !continuesBatch { state.completeSeq = entry.seq }
                state.chain.append(entry)
            }
        }
    }

    public func readRecords(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch? {
        let taken = try state.withLock { (state: inout State) throws(LogStoreError) -> (entries: [LogEntry], continues: [Bool])? in
            let start = max(seq, 1)
            guard limit > 0, start <= state.lastSeq else { return nil }
            try state.refuseBeforeStart(start)
            var entries = Array(state.entries(from: start, limit: limit).prefix(recordBytes: maxBytes))
            // Never end inside a batch: go on to its last record.
            while let last = entries.last, last.seq < state.lastSeq, state.continues(last.seq) {
                entries.append(LogEntry(seq: last.seq + 1, message: state.message(at: last.seq + 1)))
            }
            return (entries, entries.map { state.continues($0.seq) })
        }
        // Encoded outside the lock (the messages are shared, not copied): appends do not
        // wait while a batch of large messages is written out.
        return taken.map { RecordBatch($0.entries, continues: $0.continues) }
    }

    public func hash(at seq: Int) -> String? {
        state.withLock { $0.chain.hash(at: seq) }
    }

    public func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry] {
        try state.withLock { (state: inout State) throws(LogStoreError) -> [LogEntry] in
            let keep = min(seq, state.lastSeq)
            guard keep < state.lastSeq else { return [] }
            try state.refuseBeforeStart(keep + 1)
            let cut = state.entries(from: keep + 1, limit: .max)
            state.messages.removeLast(cut.count)
            state.continues.removeLast(cut.count)
            state.findCompleteSeq()
            // The chain goes back to the start of the segment that now ends the log.
            while let last = state.segments.last, last.firstSeq > keep + 1 || (last.firstSeq == keep + 1 && state.segments.count > 1) {
                state.segments.removeLast()
            }
            if let last = state.segments.last {
                let kept = state.entries(from: last.firstSeq, limit: max(0, keep - last.firstSeq + 1))
                state.chain.cut(after: last.firstSeq - 1, link: last.startLink)
                for entry in kept { state.chain.append(entry) }
                state.segments[state.segments.count - 1].bytes = kept.reduce(0) { $0 + RecordFraming.size(of: $1) }
            }
            return cut
        }
    }

    public func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] {
        try state.withLock { (state: inout State) throws(LogStoreError) -> [LogEntry] in
            let start = max(seq, 1)
            guard limit > 0, start <= state.lastSeq else { return [] }
            try state.refuseBeforeStart(start)
            return state.entries(from: start, limit: limit)
        }
    }

    public func applyRetention(_ policy: RetentionPolicy, now: Date) -> Int {
        state.withLock { state in
            let views = state.segments.enumerated().map { index, segment in
                let lastSeq = index + 1 < state.segments.count ? state.segments[index + 1].firstSeq - 1 : state.lastSeq
                return RetentionPolicy.Segment(lastSeq: lastSeq, bytes: segment.bytes, lastWrite: segment.lastWrite)
            }
            let count = policy.segmentsToDrop(views, lastSeq: state.lastSeq, now: now)
            guard count > 0 else { return 0 }
            let next = state.segments[count]
            let dropped = next.firstSeq - state.firstSeq
            state.messages.removeFirst(dropped)
            state.continues.removeFirst(dropped)
            state.chain.forget(before: next.firstSeq, link: next.startLink)
            state.segments.removeFirst(count)
            return dropped
        }
    }

    public func restart(at start: LogStart) throws(LogStoreError) {
        guard let link = start.linkBytes, start.firstSeq >= 1 else { throw .io("a log start needs a seq and a 64-digit link") }
        state.withLock { state in
            state = State()
            state.chain = HashChain(base: start.firstSeq - 1, link: link)
            state.completeSeq = start.firstSeq - 1
        }
    }
}

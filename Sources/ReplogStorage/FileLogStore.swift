import CReplogReadNowait
import Foundation
import NIOCore
import ReplogCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A log kept in append-only segment files, recovered after a crash.
///
/// - Every entry is framed with its length and a CRC-32C (`RecordFraming`).
/// - A segment is named after its first seq (`00000000000000000001.seg`) and closed when it
///   passes `segmentSize`; a new one starts.
/// - An index in memory (one 4-byte offset per entry) maps seq to file position, so a read
///   of any range goes straight to its bytes and never scans the log.
/// - `append` touches no file: it encodes the records into the segment's unwritten bytes,
///   so nothing slow happens under the appender's lock (the master's sequencing lock).
///   `flush` hands them to the operating system (one `pwrite` per segment for everything
///   appended since the last one) and `sync` flushes and makes it durable (fsync). Both
///   run where the caller runs them: `GroupCommit`, on SwiftNIO's thread pool. Reads see
///   unwritten bytes too (from memory).
/// - A write the disk refuses (a full disk) is not final: the bytes stay unwritten, appends
///   are refused until a `flush` succeeds (`refusedWrite`), and nothing is lost or reordered.
/// - Opening the store recovers it: segments are replayed and checked, and a torn or
///   corrupt tail is cut off and reported in `recovery`.
/// - A failed fsync is final: every later `append` and `sync` fails too, until the store is
///   opened again. After a failed fsync the kernel may have dropped the pages it could not
///   write, so a later fsync that succeeds would vouch for data that is gone.
public final class FileLogStore: LogStore {
    public struct Options: Sendable {
        /// Size after which a segment is closed and a new one started.
        public var segmentSize: Int
        /// How many of the latest idempotency keys opening the store hands back (`recentIDs`).
        public var recentIDLimit: Int
        /// The fsync system call; tests replace it to make the disk fail.
        public var syncFile: @Sendable (Int32) -> Int32
        /// The pwrite system call (descriptor, bytes, offset); tests replace it to fill the disk.
        public var writeFile: @Sendable (Int32, UnsafeRawBufferPointer, Int) -> Int
        public init(
            segmentSize: Int = 64 << 20, recentIDLimit: Int = IdempotencyWindow.defaultCapacity,
            syncFile: @escaping @Sendable (Int32) -> Int32 = systemFsync,
            writeFile: @escaping @Sendable (Int32, UnsafeRawBufferPointer, Int) -> Int = systemPwrite
        ) {
            self.segmentSize = segmentSize
            self.recentIDLimit = recentIDLimit
            self.syncFile = syncFile
            self.writeFile = writeFile
        }
    }

    /// What recovery found and did when the store was opened.
    public struct Recovery: Sendable, Equatable, CustomStringConvertible {
        public var segments = 0
        public var entries = 0
        /// Bytes cut off a torn or corrupt tail (0 when the log was clean).
        public var truncatedBytes = 0
        /// Segment files removed because they came after the damage.
        public var removedSegments: [String] = []
        /// Why the tail was cut, when it was.
        public var problem: String?

        public var description: String {
            var text = "\(entries) entries in \(segments) segments"
            if let problem {
                text += "; cut \(truncatedBytes) bytes at the tail (\(problem))"
                if !removedSegments.isEmpty { text += " and removed \(removedSegments.joined(separator: ", "))" }
            }
            return text
        }
    }

    private struct Segment {
        let firstSeq: Int
        let path: String
        /// -1 until the first `flush` creates the file: a rollover opens nothing under the
        /// appender's lock.
        var descriptor: Int32
        /// Byte offset of each entry: entry `firstSeq + i` starts at `offsets[i] & offsetMask`;
        /// the top bit is its record's batch mark (`continuesBit`), so that reads can end
        /// at a batch's end without touching the disk.
        var offsets: [UInt32]
        /// Bytes of records, written or not.
        var size: Int
        /// Bytes in the file; the rest (`size - written`) are `unwritten`, in memory until a
        /// `flush`.
        var written: Int
        var unwritten: [UInt8] = []
        /// The hash chain's full link at `firstSeq - 1` (`HashChain.lastLink`): a cut rebuilds
        /// the chain from here, reading one segment rather than the whole log.
        let startLink: [UInt8]
        var lastSeq: Int { firstSeq + offsets.count - 1 }

        static let continuesBit: UInt32 = 1 << 31
        static let offsetMask = ~continuesBit

        /// Where the record of `seq` starts.
        func offset(of seq: Int) -> Int { Int(offsets[seq - firstSeq] & Self.offsetMask) }
        /// Where the record of `seq` ends.
        func end(of seq: Int) -> Int { seq == lastSeq ? size : offset(of: seq + 1) }
        /// Whether the record of `seq` is followed by more of its batch.
        func continues(_ seq: Int) -> Bool { offsets[seq - firstSeq] & Self.continuesBit != 0 }

        mutating func index(at offset: Int, continues: Bool) {
            offsets.append(UInt32(offset) | (continues ? Self.continuesBit : 0))
        }
    }

    private struct State {
        var segments: [Segment]
        var lastSeq: Int
        /// The last seq that ends a batch (`LogStore.completeSeq`).
        var completeSeq: Int
        /// The running hash of everything written (`HashChain`).
        var chain: HashChain
        /// The latest idempotency keys, oldest first (trimmed in steps, to at most twice the limit).
        var recentIDs: [RememberedID]
        /// The first fsync that failed; nothing is written or synced after it.
        var failedSync: String?
        /// Why the last `flush` could not write (a full disk): appends wait until one can.
        var refusedWrite: String?
        /// Segments closed since the last `sync`, by first seq, and whether a new segment's
        /// name still has to reach the disk (set when `flush` creates its file): the next
        /// `sync` flushes them, off the appender's lock (a rollover used to fsync inside the
        /// master's lock).
        var closedUnsynced: [Int] = []
        var directoryUnsynced = false
        /// Descriptors of segments that retention, a cut or a restart removed, closed at the
        /// next retention pass: a read that found its range before the removal may still be
        /// reading from one (a closed number could already name another file).
        var retired: [Int32] = []
        var firstSeq: Int { chain.base + 1 }

        func refuseAfterFailedSync() throws(LogStoreError) {
            if let failedSync {
                throw .io("an earlier fsync failed (\(failedSync)); reopen the log to recover what is on disk")
            }
        }

        /// Appends wait while the disk refuses the bytes before them: a full disk must not
        /// fill the memory too.
        func refuseWhileWritesAreRefused() throws(LogStoreError) {
            if let refusedWrite { throw .refusedWrite("the disk refused a write (\(refusedWrite)); appends wait until it takes one") }
        }
    }

    public let directory: URL
    public let options: Options
    public let recovery: Recovery
    /// The idempotency keys of the latest entries that had one (up to `recentIDLimit`): found
    /// at recovery, then kept up to date by appends and cuts, so that a node elected master
    /// knows the keys its log holds.
    public var recentIDs: [RememberedID] {
        state.withLock { state in
            state.recentIDs.count > options.recentIDLimit ? Array(state.recentIDs.suffix(options.recentIDLimit)) : state.recentIDs
        }
    }
    private let state: Mutex<State>
    /// Held by retention and by a restart of the log for as long as each writes `start.json`
    /// and changes the segments, so that an older start never lands after a newer one.
    private let startWrites = Mutex(())
    /// Held by whatever writes segment files (`flush`, `sync`, a cut, a restart), one at a
    /// time; never by `append`, which only adds to the unwritten bytes. Taken before `state`.
    private let fileWrites = Mutex(())
    /// Set once with `State.failedSync`: nodes ask on every append, without the lock.
    private let hasFailedSync = Atomic(false)
    /// Whether `State.refusedWrite` is set, for the same reason.
    private let hasRefusedWrite = Atomic(false)

    /// Opens (creating if needed) the log in `directory` and recovers it.
    public init(directory: URL, options: Options = Options()) throws(LogStoreError) {
        self.directory = directory
        self.options = options
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw .io("cannot create \(directory.path): \(error.localizedDescription)")
        }
        var recovery = Recovery()
        var recentIDs: [RememberedID] = []
        var chain = HashChain()
        let segments = try Self.recover(directory, &recovery, &recentIDs, keeping: options.recentIDLimit, chain: &chain)
        self.recovery = recovery
        let lastSeq = chain.count
        // Recovery cut any batch it found only part of.
        self.state = Mutex(State(segments: segments, lastSeq: lastSeq, completeSeq: lastSeq, chain: chain, recentIDs: recentIDs))
    }

    /// Closing the store writes what it still holds, as closing a file does (a crash of the
    /// process skips this, and loses only what no `flush` wrote).
    deinit {
        try? flushAlone()
        state.withLock { state in
            state.segments.forEach { if $0.descriptor >= 0 { close($0.descriptor) } }
            state.retired.forEach { close($0) }
        }
    }

    public var lastSeq: Int { state.withLock { $0.lastSeq } }

    public var completeSeq: Int { state.withLock { $0.completeSeq } }

    public func hash(at seq: Int) -> String? { state.withLock { $0.chain.hash(at: seq) } }

    public var isDurable: Bool { true }

    public var readsFromDisk: Bool { true }

    public var refusedWrite: String? {
        hasRefusedWrite.load(ordering: .acquiring) ? state.withLock { $0.refusedWrite } : nil
    }

    public var failedSync: String? {
        hasFailedSync.load(ordering: .acquiring) ? state.withLock { $0.failedSync } : nil
    }

    public func append(_ entries: [LogEntry]) throws(LogStoreError) {
        try append(entries, ids: [])
    }

    public func append(_ entries: [LogEntry], ids: [String?]) throws(LogStoreError) {
        try append(entries, ids: ids, continues: [])
    }

    public func append(_ entries: [LogEntry], ids: [String?], continues: [Bool]) throws(LogStoreError) {
        guard !entries.isEmpty else { return }
        try state.withLock { (state: inout State) throws(LogStoreError) in
            try state.refuseAfterFailedSync()
            try state.refuseWhileWritesAreRefused()
            var bytes: [UInt8] = []
            var relativeOffsets: [Int] = []
            for (index, entry) in entries.enumerated() {
                guard entry.seq == state.lastSeq + 1 + index else {
                    throw .notContiguous(expected: state.lastSeq + 1 + index, got: entry.seq)
                }
                relativeOffsets.append(bytes.count)
                RecordFraming.encode(entry, id: ids.at(index) ?? nil, continues: continues.at(index) ?? false, into: &bytes)
            }
            if state.segments.isEmpty || (state.segments[state.segments.count - 1].size > 0
                && state.segments[state.segments.count - 1].size + bytes.count > options.segmentSize)
            {
                rollOver(&state, firstSeq: state.lastSeq + 1)
            }
            var segment = state.segments.removeLast()
            defer { state.segments.append(segment) }
            segment.unwritten += bytes
            for (index, offset) in relativeOffsets.enumerated() {
                let continuesBatch = continues.at(index) ?? false
                segment.index(at: segment.size + offset, continues: continuesBatch)
                if !continuesBatch { state.completeSeq = entries[index].seq }
            }
            segment.size += bytes.count
            state.lastSeq += entries.count
            for entry in entries { state.chain.append(entry) }
            for (index, id) in ids.prefix(entries.count).enumerated() {
                if let id { state.recentIDs.append(RememberedID(id: id, seq: entries[index].seq)) }
            }
            // Trim in steps, not per entry: a million keys must not cost a million shifts.
            if state.recentIDs.count >= 2 * max(options.recentIDLimit, 1) {
                state.recentIDs.removeFirst(state.recentIDs.count - options.recentIDLimit)
            }
        }
    }

    public func read(from seq: Int, limit: Int) throws(LogStoreError) -> [LogEntry] {
        try read(from: seq, limit: limit, maxBytes: .max)
    }

    public func read(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> [LogEntry] {
        guard case .done(let read) = try records(from: seq, limit: limit, maxBytes: maxBytes, wholeBatches: false, waiting: true),
              let batch = read
        else { return [] }
        var entries: [LogEntry] = []
        entries.reserveCapacity(batch.count)
        batch.bytes.withUnsafeBytes { buffer in
            var offset = 0
            while case .record(let entry, let size, _, _) = RecordFraming.decode(buffer, at: offset) {
                entries.append(entry)
                offset += size
            }
        }
        return entries
    }

    /// The records as they are on disk (keys and batch marks included), for replication.
    public func readRecords(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch? {
        guard case .done(let batch) = try records(from: seq, limit: limit, maxBytes: maxBytes, wholeBatches: true, waiting: true) else { return nil }
        return batch
    }

    /// `readRecords` if the bytes are in memory or the page cache (recent ones are): `.none`
    /// when a part would have to come from the disk (`RWF_NOWAIT`).
    public func readRecordsWithoutWaiting(from seq: Int, limit: Int, maxBytes: Int) throws(LogStoreError) -> RecordBatch?? {
        guard case .done(let batch) = try records(from: seq, limit: limit, maxBytes: maxBytes, wholeBatches: true, waiting: false) else { return .none }
        return .some(batch)
    }

    private enum Records {
        case done(RecordBatch?)
        /// A read that was not allowed to wait needed the disk.
        case wouldWait
    }

    private func records(from seq: Int, limit: Int, maxBytes: Int, wholeBatches: Bool, waiting: Bool) throws(LogStoreError) -> Records {
        // Work out which bytes to read under the lock; read them outside it, so a large
        // read never holds up appends. Written bytes never change, so this is safe (and a
        // segment removed meanwhile stays open until the next retention pass). Bytes not
        // written yet are copied from memory under the lock.
        var gone: Int?
        let (pieces, seqs) = state.withLock { state -> ([Piece], ClosedRange<Int>?) in
            let start = max(seq, 1)
            guard limit > 0, start <= state.lastSeq else { return ([], nil) }
            guard start >= state.firstSeq else {
                gone = state.firstSeq
                return ([], nil)
            }
            var last = start + min(limit, state.lastSeq - start + 1) - 1
            if maxBytes < .max { last = Self.lastSeq(from: start, through: last, within: maxBytes, in: state.segments) }
            if wholeBatches { last = Self.batchEnd(of: last, in: state) }
            var pieces: [Piece] = []
            var index = Self.segmentIndex(containing: start, in: state.segments)
            var next = start
            while next <= last, index < state.segments.count {
                let segment = state.segments[index]
                let upTo = min(last, segment.lastSeq)
                let (begin, end) = (segment.offset(of: next), segment.end(of: upTo))
                if begin < segment.written {
                    pieces.append(.file(segment.descriptor, begin, min(end, segment.written), segment.path))
                }
                if end > segment.written {
                    let from = max(begin, segment.written) - segment.written
                    pieces.append(.memory(Array(segment.unwritten[from..<end - segment.written])))
                }
                next = upTo + 1
                index += 1
            }
            return (pieces, start...last)
        }
        if let gone { throw .gone(firstSeq: gone) }
        guard let seqs else { return .done(nil) }
        // One allocation of the batch's size, not a buffer that doubles as it grows.
        var records = ByteBufferAllocator().buffer(capacity: pieces.reduce(0) { $0 + $1.count })
        for piece in pieces {
            let read: [UInt8]
            switch piece {
            case .file(let descriptor, let start, let end, let path):
                if waiting {
                    read = try Self.readBytes(descriptor, from: start, count: end - start, path: path)
                } else {
                    guard let cached = Self.readCachedBytes(descriptor, from: start, count: end - start) else { return .wouldWait }
                    read = cached
                }
            case .memory(let unwritten):
                read = unwritten
            }
            records.writeBytes(read)
        }
        return .done(RecordBatch(buffer: records, seqs: seqs))
    }

    /// Part of a read: a range of a segment file, or bytes not written yet.
    private enum Piece {
        case file(Int32, Int, Int, String)
        case memory([UInt8])

        var count: Int {
            switch self {
            case .file(_, let start, let end, _): end - start
            case .memory(let bytes): bytes.count
            }
        }
    }

    /// Hands every unwritten byte to the operating system: after it returns, a crash of the
    /// process (not of the machine) loses nothing appended before the call.
    /// - Throws: `LogStoreError.refusedWrite` when the disk refuses (a full disk): the
    ///   bytes stay unwritten, and appends are refused until a later `flush` succeeds.
    public func flush() throws(LogStoreError) {
        try fileWrites.withLock { _ throws(LogStoreError) in try flushAlone() }
    }

    /// `flush` with `fileWrites` held.
    private func flushAlone() throws(LogStoreError) {
        // A snapshot of each segment's unwritten bytes (copy on write: appends that come
        // meanwhile copy them once), and nothing else of it: a copy of the index would make
        // the next append copy all of it. Under `fileWrites` no segment goes away but by
        // retention, which drops only segments with nothing unwritten.
        typealias Pending = (firstSeq: Int, descriptor: Int32, path: String, written: Int, unwritten: [UInt8])
        let pending = try state.withLock { (state: inout State) throws(LogStoreError) -> [Pending] in
            try state.refuseAfterFailedSync()
            return state.segments.filter { !$0.unwritten.isEmpty }.map { ($0.firstSeq, $0.descriptor, $0.path, $0.written, $0.unwritten) }
        }
        for segment in pending {
            var descriptor = segment.descriptor
            do throws(LogStoreError) {
                if descriptor < 0 {
                    descriptor = open(segment.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                    guard descriptor >= 0 else { throw .io("cannot create \(segment.path): \(Self.errnoText())") }
                    state.withLock { state in
                        state.directoryUnsynced = true
                        Self.update(segment.firstSeq, in: &state) { $0.descriptor = descriptor }
                    }
                }
                try write(segment.unwritten, to: descriptor, at: segment.written, path: segment.path)
            } catch {
                let reason = "\(error)"
                state.withLock { $0.refusedWrite = reason }
                hasRefusedWrite.store(true, ordering: .releasing)
                throw .refusedWrite(reason)
            }
            state.withLock { state in
                Self.update(segment.firstSeq, in: &state) { written in
                    written.written += segment.unwritten.count
                    written.unwritten.removeFirst(segment.unwritten.count)
                }
            }
        }
        if hasRefusedWrite.load(ordering: .acquiring) {
            state.withLock { $0.refusedWrite = nil }
            hasRefusedWrite.store(false, ordering: .releasing)
        }
    }

    /// Changes the segment that starts at `firstSeq`, if the log still holds it.
    private static func update(_ firstSeq: Int, in state: inout State, _ change: (inout Segment) -> Void) {
        let index = segmentIndex(containing: firstSeq, in: state.segments)
        guard index < state.segments.count, state.segments[index].firstSeq == firstSeq else { return }
        change(&state.segments[index])
    }

    /// Makes every entry appended before this call durable: writes what is unwritten, then
    /// fsyncs (`fileWrites` is held throughout, so no file is created meanwhile).
    public func sync() throws(LogStoreError) {
        try fileWrites.withLock { _ throws(LogStoreError) in
            try flushAlone()
            try syncWritten()
        }
    }

    /// Fsyncs what is written, with `fileWrites` held.
    private func syncWritten() throws(LogStoreError) {
        // What to flush, in order: segments closed since the last sync, the folder (their
        // successors' names), then the segment being written. A later segment's entries are
        // durable only once every earlier one is; recovery removes segments after a gap.
        // (Only names and descriptors leave the lock: a copy of the current segment's index
        // would make the next append copy all of it.) A closed segment that got bytes after
        // the flush above (appended before its close) stays on the list for the next sync;
        // a segment whose file no `flush` created yet holds nothing written.
        typealias File = (firstSeq: Int, descriptor: Int32, path: String)
        let (closed, closedWhole, directoryUnsynced, current) = try state.withLock { (state: inout State) throws(LogStoreError) in
            try state.refuseAfterFailedSync()
            let closedSegments = state.segments.filter { state.closedUnsynced.contains($0.firstSeq) && $0.descriptor >= 0 }
            let closed: [File] = closedSegments.map { ($0.firstSeq, $0.descriptor, $0.path) }
            let closedWhole = closedSegments.filter { $0.unwritten.isEmpty }.map(\.firstSeq)
            let current = state.segments.last.flatMap { $0.descriptor >= 0 && !state.closedUnsynced.contains($0.firstSeq) ? File($0.firstSeq, $0.descriptor, $0.path) : nil }
            return (closed, closedWhole, state.directoryUnsynced, current)
        }
        for segment in closed + (current.map { [$0] } ?? []) {
            guard options.syncFile(segment.descriptor) == 0 else {
                let reason = "fsync \(segment.path): \(Self.errnoText())"
                throw state.withLock { recordFailedSync(reason, in: &$0) }
            }
            if segment.firstSeq == closed.last?.firstSeq, directoryUnsynced { Self.syncDirectory(directory) }
        }
        guard !closed.isEmpty || directoryUnsynced else { return }
        if closed.isEmpty { Self.syncDirectory(directory) }
        state.withLock { state in
            state.closedUnsynced.removeAll { closedWhole.contains($0) }
            if directoryUnsynced { state.directoryUnsynced = false }
        }
    }

    /// Cuts the entries after `seq`: later segments are removed, the one holding `seq + 1`
    /// is shortened, and both reach the disk before this returns. The chain is rebuilt from
    /// the start of the segment that then ends the log (its `startLink`), so a cut reads that
    /// segment, not the whole log.
    public func truncate(after seq: Int) throws(LogStoreError) -> [LogEntry] {
        try fileWrites.withLock { _ throws(LogStoreError) in
            // Everything in the files first: the cut below works on them.
            try flushAlone()
            return try truncateWritten(after: seq)
        }
    }

    /// `truncate(after:)` once everything is written, with `fileWrites` held.
    private func truncateWritten(after seq: Int) throws(LogStoreError) -> [LogEntry] {
        let keep = max(0, seq)
        let cut = try read(from: keep + 1, limit: .max)
        guard !cut.isEmpty else { return [] }
        // The segment that ends the log after the cut: the last one starting at or before
        // `keep + 1` (the cut keeps none of it when it starts there).
        let (start, startLink) = state.withLock { state in
            let segment = state.segments.last { $0.firstSeq <= keep + 1 } ?? state.segments[0]
            return (segment.firstSeq, segment.startLink)
        }
        let keptOfLast = keep >= start ? try read(from: start, limit: keep - start + 1) : []
        try state.withLock { (state: inout State) throws(LogStoreError) in
            try state.refuseAfterFailedSync()
            // Retention dropped the segment the chain is rebuilt from meanwhile: nothing changes.
            guard start - 1 >= state.chain.base else { throw .gone(firstSeq: state.firstSeq) }
            while let last = state.segments.last, last.firstSeq > keep + 1 || (last.firstSeq == keep + 1 && state.segments.count > 1) {
                state.retired.append(last.descriptor)  // a read may still be using it
                unlink(last.path)
                state.closedUnsynced.removeAll { $0 == last.firstSeq }
                state.segments.removeLast()
            }
            if var segment = state.segments.popLast() {
                let size = keep + 1 <= segment.lastSeq ? segment.offset(of: keep + 1) : segment.size
                guard ftruncate(segment.descriptor, off_t(size)) == 0, options.syncFile(segment.descriptor) == 0 else {
                    throw recordFailedSync("cut \(segment.path) after seq \(keep): \(Self.errnoText())", in: &state)
                }
                segment.offsets.removeLast(segment.offsets.count - (keep + 1 - segment.firstSeq))
                segment.size = size
                segment.written = size
                segment.unwritten = []
                state.segments.append(segment)
            }
            Self.syncDirectory(directory)
            state.lastSeq = keep
            state.completeSeq = Self.completeSeq(through: keep, in: state.segments)
            state.chain.cut(after: start - 1, link: startLink)
            for entry in keptOfLast { state.chain.append(entry) }
            state.recentIDs.removeAll { $0.seq > keep }
        }
        return cut
    }

    public var start: LogStart {
        state.withLock { LogStart(firstSeq: $0.firstSeq, link: $0.chain.baseLink) }
    }

    public var firstSeq: Int { state.withLock { $0.firstSeq } }

    /// Drops the oldest whole segments that `policy` no longer keeps. The new start is on disk
    /// (`start.json`) before any segment goes, so a crash between the two leaves segments
    /// that recovery removes, never a log without its start.
    public func applyRetention(_ policy: RetentionPolicy, now: Date) throws(LogStoreError) -> Int {
        try startWrites.withLock { _ throws(LogStoreError) in try applyRetentionAlone(policy, now: now) }
    }

    /// `applyRetention` while no restart writes the start (`startWrites` held).
    private func applyRetentionAlone(_ policy: RetentionPolicy, now: Date) throws(LogStoreError) -> Int {
        let plan = state.withLock { state -> (drop: [Segment], start: LogStart)? in
            for descriptor in state.retired { close(descriptor) }
            state.retired.removeAll()
            let views = state.segments.map { segment in
                var status = stat()
                let written = segment.descriptor >= 0 && fstat(segment.descriptor, &status) == 0
                    ? Date(timeIntervalSince1970: TimeInterval(status.st_mtim.tv_sec)) : now
                return RetentionPolicy.Segment(lastSeq: segment.lastSeq, bytes: segment.size, lastWrite: written)
            }
            let count = policy.segmentsToDrop(views, lastSeq: state.lastSeq, now: now)
            // A segment still (partly) in memory waits for the next pass: its flush is on the way.
            guard count > 0, state.failedSync == nil, state.segments.prefix(count).allSatisfy({ $0.unwritten.isEmpty && $0.descriptor >= 0 })
            else { return nil }
            let next = state.segments[count]
            return (Array(state.segments.prefix(count)), LogStart(firstSeq: next.firstSeq, link: next.startLink))
        }
        guard let plan else { return 0 }
        // The keys of what goes stay known (in memory, and in `start.json` for recovery): a
        // retry of one is answered with its seq, not appended again.
        let droppedIDs = state.withLock { state in state.recentIDs.filter { $0.seq < plan.start.firstSeq }.suffix(options.recentIDLimit) }
        try plan.start.save(in: directory, ids: Array(droppedIDs))
        let applied = state.withLock { state in
            // A cut or a restart of the log since the plan: leave it to the next pass (the
            // start on disk is no later than what the log holds, so recovery is unharmed).
            guard state.segments.prefix(plan.drop.count).map(\.firstSeq) == plan.drop.map(\.firstSeq),
                  state.segments.count > plan.drop.count, state.segments[plan.drop.count].firstSeq == plan.start.firstSeq
            else { return false }
            state.segments.removeFirst(plan.drop.count)
            state.chain.forget(before: plan.start.firstSeq, link: plan.start.linkBytes!)
            state.closedUnsynced.removeAll { $0 < plan.start.firstSeq }
            state.retired += plan.drop.map(\.descriptor)
            return true
        }
        guard applied else { return 0 }
        for segment in plan.drop { unlink(segment.path) }
        Self.syncDirectory(directory)
        return plan.start.firstSeq - (plan.drop.first?.firstSeq ?? plan.start.firstSeq)
    }

    /// Replaces the log with an empty one that starts at `start`: the start reaches the disk
    /// first, then every segment goes (recovery would remove them too).
    public func restart(at start: LogStart) throws(LogStoreError) {
        try startWrites.withLock { _ throws(LogStoreError) in
            try fileWrites.withLock { _ throws(LogStoreError) in try restartAlone(at: start) }
        }
    }

    /// `restart(at:)` while no retention pass writes the start (`startWrites` held).
    private func restartAlone(at start: LogStart) throws(LogStoreError) {
        guard let link = start.linkBytes, start.firstSeq >= 1 else { throw .io("a log start needs a seq and a 64-digit link") }
        try state.withLock { (state: inout State) throws(LogStoreError) in try state.refuseAfterFailedSync() }
        try start.save(in: directory)
        let dropped = state.withLock { state in
            let dropped = state.segments
            state.retired += dropped.map(\.descriptor).filter { $0 >= 0 }
            state.segments = []
            state.lastSeq = start.firstSeq - 1
            state.completeSeq = start.firstSeq - 1
            state.chain = HashChain(base: start.firstSeq - 1, link: link)
            state.recentIDs = []
            state.closedUnsynced = []
            state.refusedWrite = nil
            hasRefusedWrite.store(false, ordering: .releasing)
            state.directoryUnsynced = true
            return dropped
        }
        for segment in dropped { unlink(segment.path) }
        Self.syncDirectory(directory)
    }

    /// An fsync just failed: the store refuses everything from now on. Returns the error to throw.
    private func recordFailedSync(_ reason: String, in state: inout State) -> LogStoreError {
        state.failedSync = state.failedSync ?? reason
        hasFailedSync.store(true, ordering: .releasing)  // after the reason, for lock-free readers
        return .io(reason)
    }

    // MARK: Segments

    /// Closes the current segment and starts the next. No file is touched here (this runs
    /// under the appender's lock): the next `flush` creates the file, and the next `sync`
    /// flushes the closed segment and the new name before anything of the new segment counts
    /// as durable.
    private func rollOver(_ state: inout State, firstSeq: Int) {
        if let current = state.segments.last { state.closedUnsynced.append(current.firstSeq) }
        let path = directory.appendingPathComponent(Self.segmentName(firstSeq)).path
        state.segments.append(
            Segment(firstSeq: firstSeq, path: path, descriptor: -1, offsets: [], size: 0, written: 0, startLink: state.chain.lastLink))
    }

    static func segmentName(_ firstSeq: Int) -> String {
        let digits = String(firstSeq)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    /// The last seq in `start...last` whose records from `start` on fit in `maxBytes`
    /// (at least `start`), measured with the index alone, before anything is read.
    private static func lastSeq(from start: Int, through last: Int, within maxBytes: Int, in segments: [Segment]) -> Int {
        var total = 0
        var seq = start
        var index = segmentIndex(containing: start, in: segments)
        while seq <= last, index < segments.count {
            let segment = segments[index]
            while seq <= min(last, segment.lastSeq) {
                total += segment.end(of: seq) - segment.offset(of: seq)
                if total > maxBytes { return max(seq - 1, start) }
                seq += 1
            }
            index += 1
        }
        return last
    }

    /// The seq of the last record of the batch that holds `seq`, as far as the log holds it.
    private static func batchEnd(of seq: Int, in state: State) -> Int {
        guard seq < state.lastSeq else { return seq }
        var last = seq
        var index = segmentIndex(containing: seq, in: state.segments)
        while last < state.lastSeq {
            if last > state.segments[index].lastSeq { index += 1 }
            guard state.segments[index].continues(last) else { break }
            last += 1
        }
        return last
    }

    /// The last seq at or before `seq` whose record ends a batch (0 if none does).
    private static func completeSeq(through seq: Int, in segments: [Segment]) -> Int {
        var candidate = seq
        var index = segments.count - 1
        while candidate > 0, index >= 0 {
            if candidate < segments[index].firstSeq { index -= 1; continue }
            if !segments[index].continues(candidate) { return candidate }
            candidate -= 1
        }
        return max(0, (segments.first?.firstSeq ?? 1) - 1)
    }

    private static func segmentIndex(containing seq: Int, in segments: [Segment]) -> Int {
        var low = 0
        var high = segments.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if segments[middle].firstSeq <= seq { low = middle } else { high = middle - 1 }
        }
        return low
    }

    // MARK: Recovery

    /// Replays the segments; collects the idempotency keys of the last `keeping` entries
    /// that had one, and rebuilds the hash chain of what it keeps.
    private static func recover(
        _ directory: URL, _ recovery: inout Recovery, _ recentIDs: inout [RememberedID], keeping limit: Int,
        chain: inout HashChain
    ) throws(LogStoreError) -> [Segment] {
        defer { if recentIDs.count > limit { recentIDs.removeFirst(recentIDs.count - limit) } }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw .io("cannot list \(directory.path): \(error.localizedDescription)")
        }
        var files = names.compactMap { name -> (Int, String)? in
            guard name.hasSuffix(".seg"), let first = Int(name.dropLast(4)) else { return nil }
            return (first, name)
        }.sorted { $0.0 < $1.0 }

        var segments: [Segment] = []
        var nextSeq = 1
        // Retention (or a restart at the master's first seq) moved the log's start: the chain
        // goes on from the link kept there, and segments before it are leftovers of a crash
        // between writing the start and removing them.
        if let start = try LogStart.load(from: directory), let link = start.linkBytes {
            nextSeq = start.firstSeq
            chain = HashChain(base: start.firstSeq - 1, link: link)
            recentIDs = LogStart.loadIDs(from: directory).filter { $0.seq < start.firstSeq }
            for (firstSeq, name) in files where firstSeq < start.firstSeq {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
            }
            files.removeAll { $0.0 < start.firstSeq }
        }
        // Entries of a batch whose last record has not come yet, and the chain's link before
        // them: if the batch's end never comes, the chain goes back there.
        var openBatch: [LogEntry] = []
        var linkBeforeOpenBatch = chain.lastLink
        for (firstSeq, name) in files {
            let path = directory.appendingPathComponent(name).path
            if recovery.problem != nil || firstSeq != nextSeq {
                // After damage (or a gap in the names) nothing can be trusted: remove it.
                recovery.problem = recovery.problem ?? "segment \(name) does not continue at seq \(nextSeq)"
                recovery.truncatedBytes += (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                recovery.removedSegments.append(name)
                try? FileManager.default.removeItem(atPath: path)
                continue
            }
            let descriptor = open(path, O_RDWR | O_CLOEXEC)
            guard descriptor >= 0 else { throw .io("cannot open \(path): \(errnoText())") }
            let size = Int(lseek(descriptor, 0, SEEK_END))
            let bytes = try readBytes(descriptor, from: 0, count: size, path: path)
            var segment = Segment(firstSeq: firstSeq, path: path, descriptor: descriptor, offsets: [], size: 0, written: 0, startLink: chain.lastLink)
            bytes.withUnsafeBytes { buffer in
                var offset = 0
                scan: while offset < buffer.count {
                    switch RecordFraming.decode(buffer, at: offset) {
                    case .record(let entry, let size, let id, let continues) where entry.seq == nextSeq:
                        if let id {
                            recentIDs.append(RememberedID(id: id, seq: entry.seq))
                            // Trim in steps, not per entry: a million keys must not cost a million shifts.
                            if recentIDs.count >= 2 * max(limit, 1) { recentIDs.removeFirst(recentIDs.count - limit) }
                        }
                        segment.index(at: offset, continues: continues)
                        if openBatch.isEmpty { linkBeforeOpenBatch = chain.lastLink }
                        chain.append(entry)
                        openBatch.append(entry)
                        if !continues { openBatch.removeAll() }
                        offset += size
                        nextSeq += 1
                    case .record(let entry, _, _, _):
                        recovery.problem = "\(name) holds seq \(entry.seq) where \(nextSeq) was expected"
                        break scan
                    case .truncated:
                        recovery.problem = "\(name) ends inside a record (torn write)"
                        break scan
                    case .corrupt(let reason):
                        recovery.problem = "\(name) at byte \(offset): \(reason)"
                        break scan
                    }
                }
                segment.size = offset
                segment.written = offset
            }
            if segment.size < size {
                recovery.truncatedBytes += size - segment.size
                guard ftruncate(descriptor, off_t(segment.size)) == 0, fsync(descriptor) == 0 else {
                    throw .io("cannot truncate \(path): \(errnoText())")
                }
            }
            segments.append(segment)
        }
        if let first = openBatch.first {
            // A batch is all or nothing: one that lost its end (a crash while it was written,
            // or a secondary that had not received all of it) goes.
            recovery.problem = recovery.problem ?? "the log ends inside a batch (seqs \(first.seq)...\(nextSeq - 1) without its last record)"
            try cutOpenBatch(startingAt: first.seq, in: &segments, directory, &recovery)
            chain.cut(after: first.seq - 1, link: linkBeforeOpenBatch)
            recentIDs.removeAll { $0.seq >= first.seq }
            nextSeq = first.seq
        }
        recovery.segments = segments.count
        recovery.entries = nextSeq - 1
        if !recovery.removedSegments.isEmpty { syncDirectory(directory) }
        return segments
    }

    /// Recovery: removes the records from `seq` on (an unfinished batch) from the segments.
    private static func cutOpenBatch(
        startingAt seq: Int, in segments: inout [Segment], _ directory: URL, _ recovery: inout Recovery
    ) throws(LogStoreError) {
        while let last = segments.last, last.firstSeq >= seq, segments.count > 1 || last.firstSeq > seq {
            recovery.truncatedBytes += last.size
            recovery.removedSegments.append(URL(fileURLWithPath: last.path).lastPathComponent)
            close(last.descriptor)
            unlink(last.path)
            segments.removeLast()
        }
        guard var segment = segments.popLast() else { return }
        let size = seq <= segment.lastSeq ? segment.offset(of: seq) : segment.size
        guard ftruncate(segment.descriptor, off_t(size)) == 0, fsync(segment.descriptor) == 0 else {
            throw .io("cannot truncate \(segment.path): \(errnoText())")
        }
        recovery.truncatedBytes += segment.size - size
        segment.offsets.removeLast(max(0, segment.lastSeq - seq + 1))
        segment.size = size
        segment.written = size
        segments.append(segment)
        syncDirectory(directory)
    }

    // MARK: System calls

    private func write(_ bytes: [UInt8], to descriptor: Int32, at offset: Int, path: String) throws(LogStoreError) {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                options.writeFile(descriptor, UnsafeRawBufferPointer(rebasing: buffer[written...]), offset + written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                let reason = Self.errnoText()
                // Leave no half record behind: the next flush writes from the same offset.
                _ = ftruncate(descriptor, off_t(offset))
                throw .io("write \(path): \(reason)")
            }
            written += result
        }
    }

    private static func readBytes(_ descriptor: Int32, from offset: Int, count: Int, path: String) throws(LogStoreError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset + done))
            }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                throw .io("read \(path) at byte \(offset + done): " + (result == 0 ? "the file ends early" : errnoText()))
            }
            done += result
        }
        return bytes
    }

    /// The bytes, if the kernel has all of them in memory; nil when reading them would wait
    /// for the disk (or fails: the caller reads again where it may wait, and sees the error).
    private static func readCachedBytes(_ descriptor: Int32, from offset: Int, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        let result = bytes.withUnsafeMutableBytes { buffer in
            replog_pread_nowait(descriptor, buffer.baseAddress, count, off_t(offset))
        }
        return result == count ? bytes : nil
    }

    static func syncDirectory(_ directory: URL) {
        let descriptor = open(directory.path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        close(descriptor)
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    public static let systemFsync: @Sendable (Int32) -> Int32 = { fsync($0) }

    public static let systemPwrite: @Sendable (Int32, UnsafeRawBufferPointer, Int) -> Int = { descriptor, bytes, offset in
        pwrite(descriptor, bytes.baseAddress, bytes.count, off_t(offset))
    }
}

import Foundation
import Synchronization
import ReplogCore
import ReplogStorage
import ReplogTestKit
import Testing

/// A fresh folder under the system temp dir, removed when the test ends.
final class TemporaryFolder {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("replog-test-\(UUID().uuidString)")
    deinit { try? FileManager.default.removeItem(at: url) }
}

@Suite struct RecordFramingTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksumBytewise(Array("123456789".utf8)) == 0xE306_9283)
    }

    /// The processor's instruction and the eight tables both give the definition's checksum
    /// for every length and alignment.
    @Test func theFastChecksumsAreTheDefinitionsForEveryLengthAndOffset() {
        var generator = SplitMix64(seed: 7)
        let bytes = (0..<300).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        for start in 0..<9 {
            for end in start...bytes.count where end - start < 40 || end % 37 == 0 {
                let slice = Array(bytes[start..<end])
                let definition = CRC32C.checksumBytewise(slice)
                #expect(slice.withUnsafeBytes { CRC32C.checksum($0) } == definition, "\(start)..<\(end)")
                #expect(slice.withUnsafeBytes { CRC32C.checksumInSoftware($0) } == definition, "\(start)..<\(end)")
            }
        }
    }

    /// The build machines (x86-64) have the instruction: the fast path is the one measured.
    @Test func theChecksumUsesTheProcessorsInstructionWhereThereIsOne() {
        #if arch(x86_64) || arch(arm64)
        #expect(CRC32C.inHardware)
        #endif
    }

    @Test(arguments: ["", "hello", "ünïcødé ✓", String(repeating: "x", count: 100_000)])
    func roundTrip(message: String) {
        var bytes: [UInt8] = []
        RecordFraming.encode(LogEntry(seq: 42, message: message), into: &bytes)
        bytes.withUnsafeBytes { buffer in
            #expect(RecordFraming.decode(buffer, at: 0) == .record(LogEntry(seq: 42, message: message), size: bytes.count))
        }
    }

    /// The layout on disk (and on the wire) byte by byte, so a change to it cannot go unnoticed.
    @Test func layoutIsLengthChecksumSeqText() {
        var bytes: [UInt8] = []
        RecordFraming.encode(LogEntry(seq: 258, message: "hi"), into: &bytes)
        let payload: [UInt8] = [2, 1, 0, 0, 0, 0, 0, 0, UInt8(ascii: "h"), UInt8(ascii: "i")]
        let checksum = CRC32C.checksum(payload)
        let expected = [10, 0, 0, 0] + (0..<4).map { UInt8(truncatingIfNeeded: checksum >> (8 * $0)) } + payload
        #expect(bytes == expected)
    }

    /// A master's record may keep the client's idempotency key: the length's top bit says
    /// so, the key sits between seq and text, and the checksum covers it.
    @Test func aRecordWithAnIdempotencyKey() {
        var bytes: [UInt8] = []
        RecordFraming.encode(LogEntry(seq: 258, message: "hi"), id: "k1", into: &bytes)
        let payload: [UInt8] = [2, 1, 0, 0, 0, 0, 0, 0, 2, 0, UInt8(ascii: "k"), UInt8(ascii: "1"), UInt8(ascii: "h"), UInt8(ascii: "i")]
        let checksum = CRC32C.checksum(payload)
        let expected = [14, 0, 0, 0x80] + (0..<4).map { UInt8(truncatingIfNeeded: checksum >> (8 * $0)) } + payload
        #expect(bytes == expected)
        #expect(RecordFraming.size(of: LogEntry(seq: 258, message: "hi"), id: "k1") == bytes.count)
        bytes.withUnsafeBytes { buffer in
            #expect(RecordFraming.decode(buffer, at: 0) == .record(LogEntry(seq: 258, message: "hi"), size: bytes.count, id: "k1"))
            #expect(RecordFraming.decodeAll(buffer) == .success([LogEntry(seq: 258, message: "hi")]))
        }
        var flipped = bytes
        flipped[11] ^= 1  // inside the key
        flipped.withUnsafeBytes { #expect(RecordFraming.decode($0, at: 0) == .corrupt("checksum mismatch")) }
    }

    @Test func aBatchRoundTripsAndADamagedOneIsRefused() {
        let entries = (1...50).map { LogEntry(seq: $0, message: String(repeating: "m", count: $0)) }
        let batch = RecordFraming.encode(entries)
        batch.withUnsafeBytes { #expect(RecordFraming.decodeAll($0) == .success(entries)) }
        [UInt8]().withUnsafeBytes { #expect(RecordFraming.decodeAll($0) == .success([])) }

        let cut = Array(batch.dropLast()).withUnsafeBytes { RecordFraming.decodeAll($0) }
        #expect(cut == .failure(.init(description: "record 50 is cut short at byte \(batch.count - 66)")))
        var damaged = batch
        damaged[damaged.count - 1] ^= 1
        let corrupt = damaged.withUnsafeBytes { RecordFraming.decodeAll($0) }
        #expect(corrupt == .failure(.init(description: "record 50 at byte \(batch.count - 66): checksum mismatch")))
    }

    @Test func aShortTailIsTruncatedNotCorrupt() {
        var bytes: [UInt8] = []
        RecordFraming.encode(LogEntry(seq: 1, message: "hello"), into: &bytes)
        for cut in [1, 7, bytes.count - 1] {
            Array(bytes.prefix(cut)).withUnsafeBytes { #expect(RecordFraming.decode($0, at: 0) == .truncated) }
        }
    }

    @Test func everyFlippedBitIsDetected() {
        var bytes: [UInt8] = []
        RecordFraming.encode(LogEntry(seq: 7, message: "payload"), into: &bytes)
        for bit in 32..<(bytes.count * 8) {  // every bit after the length field
            var damaged = bytes
            damaged[bit / 8] ^= 1 << (bit % 8)
            damaged.withUnsafeBytes { buffer in
                if case .record = RecordFraming.decode(buffer, at: 0) { Issue.record("bit \(bit) flip not detected") }
            }
        }
    }
}

@Suite struct FileLogStoreTests {
    private func entries(_ range: ClosedRange<Int>) -> [LogEntry] { range.map { LogEntry(seq: $0, message: "message \($0)") } }

    private func newestSegment(in folder: URL) throws -> URL {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".seg") }.sorted()
        return folder.appendingPathComponent(try #require(names.last))
    }

    /// A byte-bounded read (what a replication batch is made of) gives the same entries from
    /// both stores, across segment boundaries, and always at least one entry.
    @Test func readsBoundedByBytesAgreeAcrossStores() throws {
        let folder = TemporaryFolder()
        let file = try FileLogStore(directory: folder.url, options: .init(segmentSize: 300))  // a few entries per segment
        let memory = InMemoryLogStore()
        let all = (1...40).map { LogEntry(seq: $0, message: String(repeating: "m", count: ($0 * 37) % 90)) }
        try file.append(all)
        try memory.append(all)
        for from in [1, 7, 39] {
            for maxBytes in [0, 16, 60, 100, 250, 1_000, .max] {
                let expected = Array(all[(from - 1)...].prefix(25))
                let within = Array(expected.prefix(recordBytes: maxBytes))
                #expect(!within.isEmpty)
                let bytes = within.reduce(0) { $0 + RecordFraming.size(of: $1) }
                #expect(bytes <= max(maxBytes, RecordFraming.size(of: within[0])))
                if within.count < expected.count {  // the longest such prefix: one more would not fit
                    #expect(bytes + RecordFraming.size(of: expected[within.count]) > maxBytes)
                }
                #expect(try file.read(from: from, limit: 25, maxBytes: maxBytes) == within, "file, from \(from), \(maxBytes) bytes")
                #expect(try memory.read(from: from, limit: 25, maxBytes: maxBytes) == within, "memory, from \(from), \(maxBytes) bytes")
            }
        }
        #expect(try memory.read(from: 41, limit: 25, maxBytes: 100).isEmpty)
        #expect(try file.read(from: 41, limit: 25, maxBytes: 100).isEmpty)
    }

    @Test func appendsReadsAndSurvivesReopening() throws {
        let folder = TemporaryFolder()
        do {
            let store = try FileLogStore(directory: folder.url)
            try store.append(entries(1...3))
            try store.append(entries(4...10))
            try store.sync()
            #expect(try store.read(from: 3, limit: 2) == entries(3...4))
        }
        let reopened = try FileLogStore(directory: folder.url)
        #expect(reopened.lastSeq == 10)
        #expect(reopened.recovery.problem == nil)
        #expect(try reopened.read(from: 1, limit: .max) == entries(1...10))
        try reopened.append(entries(11...11))
        #expect(reopened.lastSeq == 11)
    }

    /// Small segments: ranges that span segment boundaries are read through the index.
    @Test func rollsOverAndIndexesAcrossSegments() throws {
        let folder = TemporaryFolder()
        do {
            let store = try FileLogStore(directory: folder.url, options: .init(segmentSize: 200))
            for seq in 1...100 { try store.append(entries(seq...seq)) }
        }
        let store = try FileLogStore(directory: folder.url, options: .init(segmentSize: 200))
        #expect(store.recovery.segments > 10)
        #expect(try store.read(from: 1, limit: .max) == entries(1...100))
        #expect(try store.read(from: 37, limit: 25) == entries(37...61))
        #expect(try store.read(from: 100, limit: 5) == entries(100...100))
        #expect(try store.read(from: 101, limit: 5).isEmpty)
    }

    /// Closing a segment fsyncs nothing under the appender's lock: the next `sync` flushes
    /// every segment closed since, then the one being written, and a crash before it cannot
    /// leave later entries behind a gap (recovery removes segments after one).
    @Test func aRolloverFsyncsNothingUntilTheNextSync() throws {
        let folder = TemporaryFolder()
        let fsyncs = Atomic(0)
        let options = FileLogStore.Options(segmentSize: 10) { descriptor in
            fsyncs.add(1, ordering: .relaxed)
            return FileLogStore.systemFsync(descriptor)
        }
        let store = try FileLogStore(directory: folder.url, options: options)
        try store.append(entries(1...3))  // a batch stays in one segment
        for seq in 4...5 { try store.append(entries(seq...seq)) }  // each closes the full segment before it
        #expect(fsyncs.load(ordering: .relaxed) == 0, "appends and rollovers fsync nothing")
        try store.sync()
        #expect(fsyncs.load(ordering: .relaxed) == 3, "2 closed segments and the current one")
        try store.sync()
        #expect(fsyncs.load(ordering: .relaxed) == 4, "then only the current one")
        #expect(try FileLogStore(directory: folder.url, options: options).read(from: 1, limit: .max) == entries(1...5))
    }

    /// After a failed fsync (here: of the segment being written, or of one that an append
    /// closed since the last sync) the store writes and syncs nothing more, even once the
    /// disk answers again: the kernel may have dropped the pages it could not write.
    /// Reopening recovers what is on disk.
    @Test(arguments: ["sync", "rollover"])
    func aFailedFsyncRefusesEverythingAfter(failingCall: String) throws {
        let folder = TemporaryFolder()
        let diskFails = Atomic(false)
        let options = FileLogStore.Options(segmentSize: failingCall == "rollover" ? 10 : 1 << 20) { descriptor in
            if diskFails.load(ordering: .relaxed) {
                errno = EIO
                return -1
            }
            return FileLogStore.systemFsync(descriptor)
        }
        let store = try FileLogStore(directory: folder.url, options: options)
        try store.append(entries(1...1))
        try store.sync()
        diskFails.store(true, ordering: .relaxed)
        var written = 1
        if failingCall == "rollover" {
            try store.append(entries(2...2))  // closes segment 1 without an fsync (under the appender's lock)
            written = 2
        }
        do {
            try store.sync()
            Issue.record("the sync should have failed")
        } catch {
            // The closed segment is flushed first, and its failure is the one reported.
            #expect(error.description.contains("00000000000000000001.seg"), "\(error)")
        }
        diskFails.store(false, ordering: .relaxed)
        let next = written + 1
        #expect(throws: LogStoreError.self) { () throws in try store.append(entries(next...next)) }
        #expect(throws: LogStoreError.self) { () throws in try store.sync() }
        do {
            try store.append(entries(next...next))
        } catch {
            #expect(error.description.hasPrefix("an earlier fsync failed (fsync "), "\(error)")
            #expect(error.description.contains("Input/output error"), "\(error)")
        }
        #expect(store.lastSeq == written)
        let reopened = try FileLogStore(directory: folder.url, options: options)
        try reopened.append(entries(next...next))
        try reopened.sync()
        #expect(try reopened.read(from: 1, limit: .max) == entries(1...next))
    }

    /// Keys written with entries come back when the store is opened again (the latest
    /// `recentIDLimit` of them, oldest first); reads return the entries alone.
    /// A replication batch is the bytes on disk, across segments and with the keys, and it
    /// decodes to exactly the entries a list returns.
    @Test func recordsForReplicationAreTheBytesOnDisk() throws {
        let folder = TemporaryFolder()
        let store = try FileLogStore(directory: folder.url, options: FileLogStore.Options(segmentSize: 100))
        for seq in 1...10 { try store.append(entries(seq...seq), ids: [seq % 2 == 0 ? "key-\(seq)" : nil]) }
        let batch = try #require(try store.readRecords(from: 3, limit: 6, maxBytes: .max))
        #expect(batch.seqs == 3...8)
        #expect(try batch.entries() == entries(3...8))
        var expected: [UInt8] = []
        for seq in 3...8 { RecordFraming.encode(entries(seq...seq)[0], id: seq % 2 == 0 ? "key-\(seq)" : nil, into: &expected) }
        #expect(batch.bytes == expected, "keys travel with their records")
        #expect(try store.readRecords(from: 11, limit: 5, maxBytes: .max) == nil)
        let small = try #require(try store.readRecords(from: 1, limit: 10, maxBytes: 1))
        #expect(small.seqs == 1...1, "one record at least, however small the limit")
    }

    @Test func keepsIdempotencyKeysAcrossReopening() throws {
        let folder = TemporaryFolder()
        let options = FileLogStore.Options(segmentSize: 100, recentIDLimit: 3)
        do {
            let store = try FileLogStore(directory: folder.url, options: options)
            for seq in 1...10 { try store.append(entries(seq...seq), ids: [seq % 2 == 0 ? "key-\(seq)" : nil]) }
            #expect(store.recentIDs == [6, 8, 10].map { RememberedID(id: "key-\($0)", seq: $0) }, "kept up to date by appends")
            _ = try store.truncate(after: 9)
            #expect(store.recentIDs.map(\.seq) == [4, 6, 8], "and by cuts")
            try store.append(entries(10...10), ids: ["key-10"])
        }
        let store = try FileLogStore(directory: folder.url, options: options)
        #expect(store.recovery.segments > 1)
        #expect(store.recentIDs == [6, 8, 10].map { RememberedID(id: "key-\($0)", seq: $0) })
        #expect(try store.read(from: 1, limit: .max) == entries(1...10))
        #expect(try FileLogStore(directory: folder.url).recentIDs.map(\.seq) == [2, 4, 6, 8, 10])
    }

    /// A segment cut short behind the store's back is an error when read, never a short
    /// answer that a caller could take for the whole log.
    @Test func aSegmentShortenedUnderneathIsAReadError() throws {
        let folder = TemporaryFolder()
        let store = try FileLogStore(directory: folder.url)
        try store.append(entries(1...5))
        try store.flush()  // into the file, which is then cut underneath
        let handle = try FileHandle(forWritingTo: try newestSegment(in: folder.url))
        try handle.truncate(atOffset: 40)  // inside entry 2 (each record here is 25 bytes)
        try handle.close()
        #expect(try store.read(from: 1, limit: 1).isEmpty == false, "the first record is still whole")
        #expect {
            try store.read(from: 1, limit: .max)
        } throws: { error in
            (error as? LogStoreError)?.description.contains("the file ends early") == true
        }
    }

    @Test func refusesGapsLikeTheMemoryStore() throws {
        let folder = TemporaryFolder()
        let store = try FileLogStore(directory: folder.url)
        #expect(throws: LogStoreError.notContiguous(expected: 1, got: 2)) { () throws in try store.append(entries(2...2)) }
    }

    /// A crash in the middle of a write leaves half a record: recovery cuts it and says so.
    @Test func tornTailIsCutOff() throws {
        let folder = TemporaryFolder()
        do {
            let store = try FileLogStore(directory: folder.url)
            try store.append(entries(1...5))
        }
        let segment = try newestSegment(in: folder.url)
        let handle = try FileHandle(forWritingTo: segment)
        let size = try handle.seekToEnd()
        try handle.truncate(atOffset: size - 3)
        try handle.close()

        let store = try FileLogStore(directory: folder.url)
        #expect(store.lastSeq == 4)
        #expect(store.recovery.problem?.contains("torn write") == true)
        #expect(store.recovery.truncatedBytes > 0)
        try store.append(entries(5...6))  // the log continues cleanly after the cut
        try store.flush()
        #expect(try FileLogStore(directory: folder.url).read(from: 1, limit: .max) == entries(1...6))
    }

    /// A flipped bit in the middle cuts the log there, and later segments go too.
    @Test func corruptRecordCutsTheRest() throws {
        let folder = TemporaryFolder()
        do {
            let store = try FileLogStore(directory: folder.url, options: .init(segmentSize: 150))
            for seq in 1...20 { try store.append(entries(seq...seq)) }
        }
        let first = folder.url.appendingPathComponent("00000000000000000001.seg")
        var bytes = try Data(contentsOf: first)
        bytes[bytes.count - 2] ^= 0x40  // inside the last record's message
        try bytes.write(to: first)

        let store = try FileLogStore(directory: folder.url, options: .init(segmentSize: 150))
        #expect(store.recovery.problem?.contains("checksum mismatch") == true)
        #expect(!store.recovery.removedSegments.isEmpty)
        #expect(try store.read(from: 1, limit: .max) == entries(1...store.lastSeq))
        #expect(store.lastSeq < 20)
    }

    /// `append` touches no file, so nothing slow happens under the master's lock: the bytes
    /// wait in memory, where reads find them, until a `flush` writes them all in one go.
    @Test func appendsWaitInMemoryUntilAFlushWritesThemAtOnce() throws {
        let folder = TemporaryFolder()
        let writes = Mutex(0)
        let store = try FileLogStore(directory: folder.url, options: .init(writeFile: { descriptor, bytes, offset in
            writes.withLock { $0 += 1 }
            return FileLogStore.systemPwrite(descriptor, bytes, offset)
        }))
        try store.append(entries(1...2))
        try store.append(entries(3...3))
        #expect(writes.withLock { $0 } == 0)
        #expect(try FileLogStore(directory: folder.url).lastSeq == 0, "nothing is in a file yet")
        #expect(try store.read(from: 1, limit: .max) == entries(1...3))
        try store.flush()
        #expect(writes.withLock { $0 } == 1, "one write for three appends")
        try store.append(entries(4...5))
        // A read across what is written and what is not yet.
        #expect(try store.read(from: 2, limit: .max) == entries(2...5))
        #expect(try store.readRecords(from: 1, limit: .max, maxBytes: .max)?.bytes == RecordBatch(entries(1...5)).bytes)
        try store.flush()
        #expect(try FileLogStore(directory: folder.url).read(from: 1, limit: .max) == entries(1...5))
    }

    /// Appends go on while a sync writes (they take no file lock). One that lands in a segment
    /// during the write and is then closed by the next append leaves that segment with bytes
    /// the sync did not write: the next sync must still fsync it once it writes them, or a
    /// power loss could take entries it called durable. Checked as: after each sync, every
    /// file's last write is followed by an fsync of that file.
    @Test func aSegmentClosedWhileASyncWritesIsFsyncedOnceItsLastBytesAreWritten() throws {
        let folder = TemporaryFolder()
        let events = Mutex<[(String, Int32)]>([])
        let store = Mutex<FileLogStore?>(nil)
        let raced = Atomic(false)
        let options = FileLogStore.Options(segmentSize: 60, syncFile: { descriptor in
            events.withLock { $0.append(("fsync", descriptor)) }
            return FileLogStore.systemFsync(descriptor)
        }, writeFile: { descriptor, bytes, offset in
            events.withLock { $0.append(("write", descriptor)) }
            if !raced.exchange(true, ordering: .relaxed), let store = store.withLock({ $0 }) {
                try? store.append([LogEntry(seq: 2, message: "message 2")])  // fits in segment 1, after the snapshot
                try? store.append([LogEntry(seq: 3, message: "message 3")])  // closes segment 1
            }
            return FileLogStore.systemPwrite(descriptor, bytes, offset)
        })
        let opened = try FileLogStore(directory: folder.url, options: options)
        store.withLock { $0 = opened }
        defer { store.withLock { $0 = nil } }
        try opened.append(entries(1...1))
        for _ in 1...2 {
            try opened.sync()
            let unsynced = events.withLock { events in
                Set(events.map(\.1)).filter { descriptor in events.last { $0.1 == descriptor }?.0 == "write" }
            }
            #expect(unsynced.isEmpty, "written but not fsynced since: \(unsynced)")
        }
        let didRace = raced.load(ordering: .relaxed)
        #expect(didRace)
        #expect(try FileLogStore(directory: folder.url).read(from: 1, limit: .max) == entries(1...3))
    }

    /// A replication stream reads recent records at once, from memory or the page cache,
    /// without a hop to the thread pool; only a read that would wait for the disk goes there.
    /// The same bytes either way.
    @Test func recentRecordsAreReadWithoutWaiting() throws {
        let folder = TemporaryFolder()
        let store = try FileLogStore(directory: folder.url)
        try store.append(entries(1...3))
        try store.flush()
        try store.append(entries(4...5))
        let cached = try store.readRecordsWithoutWaiting(from: 2, limit: .max, maxBytes: .max)
        let waited = try store.readRecords(from: 2, limit: .max, maxBytes: .max)
        #if os(Linux)
        #expect(cached == .some(waited), "just written: in the page cache")
        #else
        #expect(cached == nil || cached == .some(waited))
        #endif
        #expect(waited?.seqs == 2...5)
    }

    /// A write the disk refuses (a full disk) is not final, unlike a failed fsync: the bytes
    /// stay in memory, appends are refused meanwhile (a full disk must not fill the memory
    /// too), and once a write succeeds the log goes on with nothing lost or reordered.
    @Test func aRefusedWriteKeepsTheBytesAndRefusesAppendsUntilAWriteSucceeds() throws {
        let folder = TemporaryFolder()
        let disk = FillableDisk(full: true)
        let store = try FileLogStore(directory: folder.url, options: .init(writeFile: disk.write))
        try store.append(entries(1...2))
        #expect { try store.flush() } throws: { error in
            guard case .refusedWrite(let reason) = error as? LogStoreError else { return false }
            return reason.contains("No space left on device")
        }
        #expect(store.refusedWrite?.contains("No space left on device") == true)
        #expect(store.failedSync == nil, "not final")
        #expect { try store.append(entries(3...3)) } throws: { error in
            if case .refusedWrite = error as? LogStoreError { true } else { false }
        }
        #expect(try store.read(from: 1, limit: .max) == entries(1...2))
        disk.makeRoom()
        try store.flush()
        #expect(store.refusedWrite == nil)
        try store.append(entries(3...3))
        try store.sync()
        #expect(try FileLogStore(directory: folder.url).read(from: 1, limit: .max) == entries(1...3))
    }
}

@Suite struct DataDirectoryTests {
    @Test func remembersRoleAndLog() throws {
        let folder = TemporaryFolder()
        var directory = try DataDirectory(path: folder.url.path, role: "master")
        try directory.setLog("log-1")
        #expect(try DataDirectory(path: folder.url.path, role: "master").metadata.log == "log-1")
    }

    @Test func refusesAnotherRolesFolder() throws {
        let folder = TemporaryFolder()
        _ = try DataDirectory(path: folder.url.path, role: "master")
        #expect(throws: DataDirectory.Problem.self) { try DataDirectory(path: folder.url.path, role: "secondary") }
    }

    /// A folder of format 1 (no keys in records) is marked with the current format when opened, before
    /// anything is written, so that an older replog refuses it instead of cutting its log.
    @Test func marksAnOlderFormatBeforeWriting() throws {
        let folder = TemporaryFolder()
        try FileManager.default.createDirectory(at: folder.url, withIntermediateDirectories: true)
        let file = folder.url.appendingPathComponent("replog.json")
        try Data(#"{"format": 1, "role": "master", "log": "L"}"#.utf8).write(to: file)
        let directory = try DataDirectory(path: folder.url.path, role: "master")
        #expect(directory.metadata.format == DataDirectory.formatVersion && directory.metadata.log == "L")
        #expect(try JSONDecoder().decode(DataDirectory.Metadata.self, from: Data(contentsOf: file)).format == DataDirectory.formatVersion)
    }

    @Test func refusesANewerFormat() throws {
        let folder = TemporaryFolder()
        try FileManager.default.createDirectory(at: folder.url, withIntermediateDirectories: true)
        try Data(#"{"format": 99, "role": "master"}"#.utf8).write(to: folder.url.appendingPathComponent("replog.json"))
        #expect {
            try DataDirectory(path: folder.url.path, role: "master")
        } throws: { ($0 as? DataDirectory.Problem)?.description.contains("newer replog") == true }
    }

    @Test func refusesSegmentsWithoutMetadata() throws {
        let folder = TemporaryFolder()
        try FileManager.default.createDirectory(at: folder.url, withIntermediateDirectories: true)
        try Data().write(to: folder.url.appendingPathComponent("00000000000000000001.seg"))
        #expect(throws: DataDirectory.Problem.self) { try DataDirectory(path: folder.url.path, role: "secondary") }
    }
}

/// Failover cuts a deposed master's tail: what stays must be exactly the prefix, on disk.
@Suite struct LogTruncationTests {
    private func entries(_ range: ClosedRange<Int>, _ prefix: String = "m") -> [LogEntry] {
        range.map { LogEntry(seq: $0, message: "\(prefix)\($0)") }
    }

    @Test(arguments: [0, 3, 4, 5, 9, 12])
    func aCutAcrossSegmentsKeepsExactlyThePrefixAfterAReopen(after seq: Int) throws {
        let folder = TemporaryFolder()
        // Segments of about three records each, so that cuts fall at, inside and between segments.
        let options = FileLogStore.Options(segmentSize: 60)
        do {
            let store = try FileLogStore(directory: folder.url, options: options)
            try store.append(entries(1...10))
            try store.sync()
            let cut = try store.truncate(after: seq)
            #expect(cut == (seq < 10 ? entries((seq + 1)...10) : []))
            #expect(store.lastSeq == min(seq, 10))
            #expect(store.hash(at: min(seq, 10)) == InMemoryLogStore.chainHash(of: entries(1...10).prefix(min(seq, 10))))
            // The log goes on after the cut with other messages.
            try store.append(entries((min(seq, 10) + 1)...12, "new"))
            try store.sync()
        }
        let reopened = try FileLogStore(directory: folder.url, options: options)
        #expect(reopened.recovery.problem == nil)
        #expect(try reopened.read(from: 1, limit: .max) == Array(entries(1...10).prefix(min(seq, 10))) + entries((min(seq, 10) + 1)...12, "new"))
    }

    /// A cut reads only the segment that ends the log afterwards, and rebuilds the chain from
    /// that segment's start: in a large log it costs one segment, not the log. Shown by
    /// damaging the first segment underneath, which a read from seq 1 would stumble on.
    @Test func aCutReadsOnlyTheSegmentThatEndsTheLog() throws {
        let folder = TemporaryFolder()
        let store = try FileLogStore(directory: folder.url, options: .init(segmentSize: 60))
        for seq in 1...10 { try store.append(entries(seq...seq)) }  // segments of about three records
        try store.flush()  // into the files, the first of which is then damaged
        let hashAt8 = store.hash(at: 8)
        let first = folder.url.appendingPathComponent("00000000000000000001.seg")
        let handle = try FileHandle(forWritingTo: first)
        try handle.write(contentsOf: Data(repeating: 0, count: 16))
        try handle.close()
        #expect(try store.truncate(after: 8) == entries(9...10))
        #expect(store.hash(at: 8) == hashAt8)
        try store.append(entries(9...9, "new"))
        #expect(store.hash(at: 9) == InMemoryLogStore.chainHash(of: entries(1...8) + entries(9...9, "new")))
    }

    @Test func theInMemoryLogCutsToo() throws {
        let store = InMemoryLogStore()
        try? store.append(entries(1...5))
        #expect(try store.truncate(after: 2) == entries(3...5))
        #expect(try store.read(from: 1, limit: .max) == entries(1...2))
        #expect(store.hash(at: 2) == InMemoryLogStore.chainHash(of: entries(1...2)))
    }
}

extension InMemoryLogStore {
    /// The chain hash at the end of `entries`, computed on a fresh store.
    static func chainHash(of entries: some Collection<LogEntry>) -> String? {
        let store = InMemoryLogStore()
        try? store.append(Array(entries))
        return store.hash(at: entries.count)
    }
}

import Foundation
import ReplogCore
import ReplogStorage
import Testing

/// A batch (`"messages": [...]`) is all or nothing in every store: its records carry a
/// batch mark, reads for replication never end inside one, recovery drops one whose end is
/// missing, and `completeSeq` (what nodes list and acknowledge) never points inside one.
@Suite struct AtomicBatchStorageTests {
    private func entries(_ range: ClosedRange<Int>, _ prefix: String = "m") -> [LogEntry] {
        range.map { LogEntry(seq: $0, message: "\(prefix)\($0)") }
    }

    /// Marks for a batch of `range`: every record but the last continues.
    private func marks(_ range: ClosedRange<Int>, open: Bool = false) -> [Bool] {
        range.map { $0 < range.upperBound || open }
    }

    @Test func theBatchMarkIsBit30OfTheLengthAndRoundTrips() throws {
        var bytes: [UInt8] = []
        RecordFraming.encode(LogEntry(seq: 258, message: "hi"), id: "k1", continues: true, into: &bytes)
        #expect(Array(bytes[0..<4]) == [14, 0, 0, 0xC0])
        bytes.withUnsafeBytes { buffer in
            #expect(RecordFraming.decode(buffer, at: 0) == .record(LogEntry(seq: 258, message: "hi"), size: bytes.count, id: "k1", continues: true))
        }
        let batch = RecordBatch(entries(1...3), ids: ["a"], continues: marks(1...3))
        #expect(try batch.keyedEntries() == .init(entries: entries(1...3), ids: ["a", nil, nil], continues: [true, true, false]))
    }

    private func stores(_ folder: TemporaryFolder) throws -> [(String, any LogStore)] {
        [("file", try FileLogStore(directory: folder.url, options: .init(segmentSize: 100))), ("memory", InMemoryLogStore())]
    }

    /// However small the read, a replication read goes on to the batch's last record, and
    /// `completeSeq` stays at the last whole batch while one is open.
    @Test func readsForReplicationNeverEndInsideABatch() throws {
        let folder = TemporaryFolder()
        for (name, store) in try stores(folder) {
            try store.append(entries(1...2))
            try store.append(entries(3...7), ids: [], continues: marks(3...7))
            try store.append(entries(8...8))
            #expect(store.completeSeq == 8, "\(name)")
            for (from, limit, maxBytes, expected) in [(1, 3, Int.max, 1...7), (3, 1, 0, 3...7), (5, 1, 0, 5...7), (7, 1, 0, 7...7), (1, 2, Int.max, 1...2)] {
                let batch = try #require(try store.readRecords(from: from, limit: limit, maxBytes: maxBytes))
                #expect(batch.seqs == expected, "\(name): from \(from), limit \(limit)")
                #expect(try batch.keyedEntries().continues == expected.map { (3...6).contains($0) }, "\(name)")
            }
            // Plain reads (a page of GET /messages) are not widened.
            #expect(try store.read(from: 3, limit: 2) == entries(3...4), "\(name)")
            // Part of a batch (as a secondary may hold for a moment) is not complete.
            try store.append(entries(9...10), ids: [], continues: [true, true])
            #expect(store.lastSeq == 10 && store.completeSeq == 8, "\(name)")
            try store.append(entries(11...11))
            #expect(store.completeSeq == 11, "\(name)")
            // A cut inside a batch leaves the complete prefix before it.
            _ = try store.truncate(after: 5)
            #expect(store.lastSeq == 5 && store.completeSeq == 2, "\(name)")
        }
    }

    /// A crash while a batch was written (or a secondary that had part of one) leaves records
    /// without the batch's end: recovery drops them, keys and hashes included, and says so.
    @Test(arguments: ["open batch", "torn last record"])
    func recoveryDropsABatchWithoutItsEnd(_ damage: String) throws {
        let folder = TemporaryFolder()
        let options = FileLogStore.Options(segmentSize: 60)  // the batch spans segments
        let hashBefore: String?
        do {
            let store = try FileLogStore(directory: folder.url, options: options)
            try store.append(entries(1...3), ids: ["one"])
            hashBefore = store.hash(at: 3)
            if damage == "open batch" {
                try store.append(entries(4...6), ids: ["batch"], continues: marks(4...6, open: true))
                try store.append(entries(7...8), ids: [], continues: [true, true])
            } else {
                try store.append(entries(4...8), ids: ["batch"], continues: marks(4...8))
            }
            try store.sync()
        }
        if damage == "torn last record" {
            let names = try FileManager.default.contentsOfDirectory(atPath: folder.url.path).filter { $0.hasSuffix(".seg") }.sorted()
            let handle = try FileHandle(forWritingTo: folder.url.appendingPathComponent(try #require(names.last)))
            let size = try handle.seekToEnd()
            try handle.truncate(atOffset: size - 2)
            try handle.close()
        }
        let store = try FileLogStore(directory: folder.url, options: options)
        #expect(store.lastSeq == 3 && store.completeSeq == 3)
        #expect(try store.read(from: 1, limit: .max) == entries(1...3))
        #expect(store.hash(at: 3) == hashBefore)
        #expect(store.recentIDs.map(\.id) == ["one"])
        #expect(store.recovery.truncatedBytes > 0)
        if damage == "open batch" { #expect(store.recovery.problem?.contains("inside a batch") == true) }
        // The log goes on cleanly, and a reopen finds nothing more to cut.
        try store.append(entries(4...4, "new"))
        try store.flush()
        let reopened = try FileLogStore(directory: folder.url, options: options)
        #expect(reopened.recovery.problem == nil)
        #expect(try reopened.read(from: 1, limit: .max) == entries(1...3) + entries(4...4, "new"))
    }

    /// Group commit never calls part of a batch durable: it is what nodes list and claim.
    @Test func durableSeqStopsBeforeAnOpenBatch() async throws {
        let folder = TemporaryFolder()
        let store = try FileLogStore(directory: folder.url)
        let commit = GroupCommit(store: store, policy: .always)
        try store.append(entries(1...2))
        try store.append(entries(3...4), ids: [], continues: [true, true])
        try await commit.makeDurable(through: 2)
        #expect(commit.durableSeq == 2)
        try store.append(entries(5...5))
        try await commit.makeDurable(through: 5)
        #expect(commit.durableSeq == 5)
        let unsynced = GroupCommit(store: InMemoryLogStore(), policy: .never)
        try unsynced.store.append(entries(1...2), ids: [], continues: [false, true])
        #expect(unsynced.durableSeq == 1)
    }
}

import Foundation
import ReplogCore
import ReplogStorage
import Testing

/// Retention drops whole old segments, never the one being written; what stays keeps its
/// seqs and hashes, reads before the new start are `gone`, and a restarted log goes on with
/// the same chain as every other node's.
@Suite struct RetentionTests {
    private func entries(_ range: ClosedRange<Int>) -> [LogEntry] {
        range.map { LogEntry(seq: $0, message: "m\($0)") }
    }

    @Test func thePolicyDropsOldSegmentsWhileTheLimitsStillHold() {
        let now = Date(timeIntervalSince1970: 1_000_000)
        let segments = (0..<4).map { RetentionPolicy.Segment(lastSeq: 10 * ($0 + 1), bytes: 100, lastWrite: now - Double(400 - 100 * $0)) }
        #expect(RetentionPolicy().segmentsToDrop(segments, lastSeq: 40, now: now) == 0)
        #expect(RetentionPolicy(messages: 20).segmentsToDrop(segments, lastSeq: 40, now: now) == 2)
        #expect(RetentionPolicy(messages: 21).segmentsToDrop(segments, lastSeq: 40, now: now) == 1)
        #expect(RetentionPolicy(messages: 0).segmentsToDrop(segments, lastSeq: 40, now: now) == 3, "never the segment being written")
        #expect(RetentionPolicy(bytes: 250).segmentsToDrop(segments, lastSeq: 40, now: now) == 1)
        #expect(RetentionPolicy(age: .seconds(250)).segmentsToDrop(segments, lastSeq: 40, now: now) == 2)
    }

    private func stores(_ folder: TemporaryFolder) throws -> [(String, any LogStore, reopen: () throws -> any LogStore)] {
        let options = FileLogStore.Options(segmentSize: 60)  // about three records a segment
        return [
            ("file", try FileLogStore(directory: folder.url, options: options), { try FileLogStore(directory: folder.url, options: options) }),
            ("memory", InMemoryLogStore(segmentBytes: 60), { throw CancellationError() }),
        ]
    }

    @Test func retentionDropsWholeSegmentsAndKeepsSeqsAndHashes() throws {
        let folder = TemporaryFolder()
        let reference = InMemoryLogStore()
        try reference.append(entries(1...20))
        for (name, store, reopen) in try stores(folder) {
            for seq in 1...20 { try store.append(entries(seq...seq)) }
            try store.flush()  // retention drops only segments whose bytes are in their files
            let dropped = try store.applyRetention(RetentionPolicy(messages: 5), now: Date())
            let first = store.start.firstSeq
            #expect(dropped == first - 1 && first > 1 && first <= 16, "\(name): first seq \(first)")
            #expect(store.lastSeq == 20 && store.hash(at: 20) == reference.hash(at: 20), "\(name)")
            #expect(store.hash(at: first - 1) == reference.hash(at: first - 1) && store.hash(at: first - 2) == nil, "\(name)")
            #expect(throws: LogStoreError.gone(firstSeq: first), "\(name)") { try store.read(from: first - 1, limit: 1) }
            #expect(throws: LogStoreError.gone(firstSeq: first), "\(name)") { try store.readRecords(from: 1, limit: 1, maxBytes: .max) }
            #expect(try store.read(from: first, limit: .max) == entries(first...20), "\(name)")
            try store.append(entries(21...21))
            #expect(store.hash(at: 21) == InMemoryLogStore.chainHash(of: entries(1...21)), "\(name)")
            if name == "file" {
                try store.flush()
                let reopened = try reopen()
                #expect(reopened.start == store.start && reopened.lastSeq == 21 && reopened.hash(at: 21) == store.hash(at: 21))
                #expect(try reopened.read(from: first, limit: .max) == entries(first...21))
            }
        }
    }

    /// Retention drops entries, not what the node knows of their idempotency keys: a node
    /// elected later still answers a retry of a dropped entry's key with its seq instead of
    /// appending it again. The keys are kept in memory and, for recovery, in `start.json`.
    @Test func retentionKeepsTheKeysOfWhatItDrops() throws {
        let folder = TemporaryFolder()
        let options = FileLogStore.Options(segmentSize: 60)
        let store = try FileLogStore(directory: folder.url, options: options)
        for seq in 1...20 { try store.append(entries(seq...seq), ids: ["key-\(seq)"]) }
        try store.flush()
        let dropped = try store.applyRetention(RetentionPolicy(messages: 5), now: Date())
        #expect(dropped > 0)
        let keys = (1...20).map { RememberedID(id: "key-\($0)", seq: $0) }
        #expect(store.recentIDs == keys)
        #expect(try FileLogStore(directory: folder.url, options: options).recentIDs == keys)
    }

    /// A secondary that fell behind its master's first seq starts its log again there: its
    /// chain goes on from the master's link, so its hashes are the master's.
    @Test func aRestartedLogGoesOnWithTheSameChain() throws {
        let folder = TemporaryFolder()
        let master = InMemoryLogStore(segmentBytes: 60)
        for seq in 1...20 { try master.append(entries(seq...seq)) }
        _ = master.applyRetention(RetentionPolicy(messages: 5), now: Date())
        let start = master.start
        for (name, store, reopen) in try stores(folder) {
            try store.append(entries(1...2))
            try store.restart(at: start)
            #expect(store.start == start && store.lastSeq == start.firstSeq - 1, "\(name)")
            try store.append(try master.read(from: start.firstSeq, limit: .max))
            #expect(store.hash(at: 20) == master.hash(at: 20), "\(name)")
            if name == "file" {
                try store.flush()
                let reopened = try reopen()
                #expect(reopened.start == start && reopened.hash(at: 20) == master.hash(at: 20))
            }
        }
    }
}

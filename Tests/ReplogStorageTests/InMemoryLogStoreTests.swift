import ReplogCore
import ReplogStorage
import Testing

@Suite struct InMemoryLogStoreTests {
    @Test func appendsContiguouslyAndReadsRanges() throws {
        let store = InMemoryLogStore()
        try store.append([LogEntry(seq: 1, message: "a"), LogEntry(seq: 2, message: "b")])
        #expect(store.lastSeq == 2)
        #expect(try store.read(from: 2, limit: 10) == [LogEntry(seq: 2, message: "b")])
        #expect(try store.read(from: 1, limit: .max).count == 2)
        #expect(try store.read(from: 3, limit: 1).isEmpty)
    }

    @Test func refusesAGapAndKeepsNothingOfTheBatch() {
        let store = InMemoryLogStore()
        #expect(throws: LogStoreError.notContiguous(expected: 2, got: 3)) { () throws in
            try store.append([LogEntry(seq: 1, message: "a"), LogEntry(seq: 3, message: "c")])
        }
        #expect(store.lastSeq == 0)
    }
}

import ReplogCore
import ReplogTestKit
import Testing

@Suite struct HoldBackBufferTests {
    private func entries(_ seqs: Int...) -> [LogEntry] { seqs.map { LogEntry(seq: $0, message: "m\($0)") } }

    /// The course's hold-back case: 1, 2, 4 arrive; 4 stays hidden until 3 arrives.
    @Test func holdsBackUntilTheGapIsFilled() {
        var buffer = HoldBackBuffer()
        do { let result = buffer.receive(entries(1, 2, 4)); #expect(result.map(\.seq) == [1, 2]) }
        #expect(buffer.contiguousSeq == 2)
        #expect(buffer.heldBackCount == 1)
        do { let result = buffer.receive(entries(3)); #expect(result.map(\.seq) == [3, 4]) }
        #expect(buffer.contiguousSeq == 4)
        #expect(buffer.heldBackCount == 0)
    }

    @Test func dropsDuplicatesDeliveredOrHeldBack() {
        var buffer = HoldBackBuffer()
        do { let result = buffer.receive(entries(1, 1, 3, 3)); #expect(result.map(\.seq) == [1]) }
        do { let result = buffer.receive(entries(1, 3)); #expect(result.isEmpty) }
        do { let result = buffer.receive(entries(2, 2, 3)); #expect(result.map(\.seq) == [2, 3]) }
        #expect(buffer.contiguousSeq == 3)
    }

    @Test func deliversAReversedBatchInOrder() {
        var buffer = HoldBackBuffer()
        do { let result = buffer.receive(entries(5, 4, 3, 2, 1)); #expect(result.map(\.seq) == [1, 2, 3, 4, 5]) }
        do { let result = buffer.receive(entries(5, 4, 3, 2, 1)); #expect(result.isEmpty) }
    }

    /// Entries too far ahead are not buffered; the master resends them later.
    @Test func dropsEntriesBeyondCapacity() {
        var buffer = HoldBackBuffer(capacity: 4)  // holds seqs up to contiguousSeq + 4
        do { let result = buffer.receive(entries(3, 4, 9)); #expect(result.isEmpty) }
        #expect(buffer.heldBackCount == 2)
        do { let result = buffer.receive(entries(1, 2)); #expect(result.map(\.seq) == [1, 2, 3, 4]) }
    }

    /// Whatever order and duplication, the delivered stream is 1…n exactly once.
    @Test(arguments: 0..<20) func randomDeliveryIsExactlyOnceInOrder(seed: Int) {
        var generator = SplitMix64(seed: UInt64(seed))
        let n = 200
        var deliveries = (1...n).flatMap { seq in Array(repeating: seq, count: Int(generator.next() % 3) + 1) }
        deliveries.shuffle(using: &generator)
        var buffer = HoldBackBuffer()
        var delivered: [Int] = []
        for chunk in stride(from: 0, to: deliveries.count, by: 7) {
            let batch = deliveries[chunk..<min(chunk + 7, deliveries.count)].map { LogEntry(seq: $0, message: "m\($0)") }
            delivered += buffer.receive(batch).map(\.seq)
        }
        #expect(delivered == Array(1...n))
    }

    /// What the store refused is taken back: the resend is delivered again, not dropped.
    @Test func rewindDeliversTheResendAgain() {
        var buffer = HoldBackBuffer()
        _ = buffer.receive(entries(1))
        _ = buffer.receive(entries(3))
        #expect(buffer.receive(entries(2)).map(\.seq) == [2, 3])
        buffer.rewind(to: 1)
        #expect(buffer.contiguousSeq == 1)
        #expect(buffer.receive(entries(2, 3, 4)).map(\.seq) == [2, 3, 4])
    }
}

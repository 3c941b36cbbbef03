import Foundation
import ReplogCore
import ReplogStorage
import Testing

/// The running hash that lets two nodes show they hold the same log (issue 18).
struct HashChainTests {
    private func chain(_ messages: [String]) -> HashChain {
        var chain = HashChain()
        for (index, message) in messages.enumerated() { chain.append(LogEntry(seq: index + 1, message: message)) }
        return chain
    }

    /// The format, pinned: link n = SHA-256(link n-1 ‖ n as 8 bytes big-endian ‖ message),
    /// shown as its first 8 bytes. (Values from Python's hashlib.)
    @Test func linksAreChainedSHA256ShownByTheirFirst8Bytes() {
        let chain = chain(["a", "b"])
        #expect(chain.hash(at: 0) == "0000000000000000")
        #expect(chain.hash(at: 1) == "00f87f5348b32d1c")
        #expect(chain.hash(at: 2) == "ac801c2ef8753f5f")
        #expect(chain.hash(at: 3) == nil)
    }

    @Test func anotherMessageAnywhereChangesEveryLaterLink() {
        let same = chain(["a", "b", "c", "d"])
        let other = chain(["a", "x", "c", "d"])
        #expect(same.hash(at: 1) == other.hash(at: 1))
        for seq in 2...4 { #expect(same.hash(at: seq) != other.hash(at: seq), "seq \(seq)") }
    }

    /// Every store keeps the same chain, and a file store rebuilds it when it opens.
    @Test func storesKeepTheChainAndAReopenedFileStoreRebuildsIt() throws {
        let folder = TemporaryFolder()
        let entries = (1...50).map { LogEntry(seq: $0, message: "m\($0)") }
        let expected = chain(entries.map(\.message))
        let memory = InMemoryLogStore()
        try memory.append(entries)
        do {
            let file = try FileLogStore(directory: folder.url, options: .init(segmentSize: 300))  // several segments
            try file.append(Array(entries[..<20]))
            try file.append(Array(entries[20...]))
            try file.sync()
        }
        let reopened = try FileLogStore(directory: folder.url)
        for seq in 0...50 {
            #expect(memory.hash(at: seq) == expected.hash(at: seq))
            #expect(reopened.hash(at: seq) == expected.hash(at: seq), "seq \(seq)")
        }
    }
}

import Foundation
import ReplogCore
import Testing

/// A member's `409` says what kind of refusal it is; the master reads that, not the text.
struct InternalRefusalTests {
    @Test func aStaleEpochAnswerNamesItsKind() throws {
        let body = try JSONEncoder().encode(StaleEpochAnswer(epoch: 3, master: "http://a"))
        let read = try JSONDecoder().decode(InternalRefusal.Answer.self, from: body)
        #expect(read.kind == .staleEpoch && read.epoch == 3)
        #expect(try JSONDecoder().decode(StaleEpochAnswer.self, from: body) == StaleEpochAnswer(epoch: 3, master: "http://a"))
    }

    /// Nodes before typed refusals sent an epoch for a stale epoch and nothing else for
    /// another log; a master still reads them right.
    @Test func anUntypedRefusalIsReadAsItsOldMeaning() throws {
        let stale = try JSONDecoder().decode(InternalRefusal.Answer.self, from: Data(#"{"error": "stale", "epoch": 4}"#.utf8))
        #expect(stale.kind == .staleEpoch)
        let foreign = try JSONDecoder().decode(InternalRefusal.Answer.self, from: Data(#"{"error": "holds log A"}"#.utf8))
        #expect(foreign.kind == .foreignLog)
        let typed = try JSONDecoder().decode(InternalRefusal.Answer.self, from: Data(#"{"refusal": "diverged", "epoch": 4}"#.utf8))
        #expect(typed.kind == .diverged, "the refusal wins over the fields the body happens to have")
    }
}

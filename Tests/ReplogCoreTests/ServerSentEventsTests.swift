import Foundation
import ReplogCore
import Testing

struct ServerSentEventsTests {
    typealias Event = ServerSentEvents.Parser.Event

    @Test func anEventIsItsIDAndItsJSONOnOneDataLine() {
        var bytes: [UInt8] = []
        ServerSentEvents.appendEvent(LogEntry(seq: 7, message: "a\nb"), to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == "id: 7\ndata: {\"message\":\"a\\nb\",\"seq\":7}\n\n")
    }

    /// The hand-written event is byte for byte what the JSON encoder the stream used gave:
    /// quotes, backslashes, every control character, slashes, non-ASCII text.
    @Test func theHandWrittenEventIsTheEncodersBytes() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let controls = String(decoding: (0..<32).map { UInt8($0) }, as: UTF8.self)
        let messages = ["", "plain", "a \"quoted\" \\ back/slash", controls, "\u{7f}", "grüße, 日本語, 🎉", String(repeating: "x", count: 1000)]
        for (index, message) in messages.enumerated() {
            let entry = LogEntry(seq: index + 1, message: message)
            var bytes: [UInt8] = []
            ServerSentEvents.appendEvent(entry, to: &bytes)
            let expected = Array("id: \(entry.seq)\ndata: ".utf8) + (try encoder.encode(entry)) + Array("\n\n".utf8)
            #expect(bytes == expected, "\(String(decoding: bytes, as: UTF8.self)) vs \(String(decoding: expected, as: UTF8.self))")
        }
    }

    @Test func theParserReadsEventsSplitAnywhereAndSkipsComments() {
        let stream = ServerSentEvents.comment("hello") + Array("id: 1\ndata: one\n\n".utf8)
            + ServerSentEvents.comment("keep-alive") + Array("id: 2\r\ndata: two\r\n\r\n".utf8)
        // Every split of the bytes into two pieces gives the same two events.
        for split in 0...stream.count {
            var parser = ServerSentEvents.Parser()
            let events = parser.feed(stream[..<split]) + parser.feed(stream[split...])
            #expect(events == [Event(id: "1", data: "one"), Event(id: "2", data: "two")], "split at \(split)")
        }
    }

    @Test func anEventWithoutDataIsNoEvent() {
        var parser = ServerSentEvents.Parser()
        #expect(parser.feed(Array("id: 3\n\ndata: x\n\n".utf8)) == [Event(id: nil, data: "x")])
    }
}

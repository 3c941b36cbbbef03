import ReplogCore
import Testing

struct ServerSentEventsTests {
    typealias Event = ServerSentEvents.Parser.Event

    @Test func anEventIsItsIDAndItsJSONOnOneDataLine() {
        let bytes = ServerSentEvents.event(seq: 7, json: Array(#"{"message":"a\nb","seq":7}"#.utf8))
        #expect(String(decoding: bytes, as: UTF8.self) == "id: 7\ndata: {\"message\":\"a\\nb\",\"seq\":7}\n\n")
    }

    @Test func theParserReadsEventsSplitAnywhereAndSkipsComments() {
        let stream = ServerSentEvents.comment("hello") + ServerSentEvents.event(seq: 1, json: Array("one".utf8))
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

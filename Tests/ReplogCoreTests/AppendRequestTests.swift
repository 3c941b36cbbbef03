import Foundation
@testable import ReplogCore
import Testing

@Suite struct AppendRequestTests {
    private func parse(_ body: String) throws(AppendRequest.Invalid) -> AppendRequest {
        try AppendRequest.parse(Data(body.utf8))
    }

    @Test func acceptsTheFullShape() throws {
        let request = try parse(#"{"message": "hi", "w": 2, "id": "k1", "timeout": 250}"#)
        #expect(request == AppendRequest(message: "hi", w: 2, id: "k1", timeout: .milliseconds(250)))
    }

    @Test func nullOrMissingWMeansEveryNode() throws {
        #expect(try parse(#"{"message": "hi"}"#).w == nil)
        #expect(try parse(#"{"message": "hi", "w": null}"#).w == nil)
    }

    @Test(arguments: [
        ("not json", "malformed JSON body"),
        ("", "malformed JSON body"),
        (#"["message"]"#, "the body must be a JSON object"),
        (#"{}"#, #"missing field "message""#),
        (#"{"message": 5}"#, #""message" must be a string"#),
        (#"{"message": null}"#, #""message" must be a string"#),
        (#"{"message": "x", "w": "2"}"#, #""w" must be an integer"#),
        (#"{"message": "x", "w": 1.5}"#, #""w" must be an integer"#),
        (#"{"message": "x", "w": true}"#, #""w" must be an integer"#),
        (#"{"message": "x", "w": 0}"#, #""w" must be at least 1"#),
        (#"{"message": "x", "id": 3}"#, #""id" must be a string"#),
        (#"{"message": "x", "id": ""}"#, #""id" must be 1 to"#),
        (#"{"message": "x", "timeout": -1}"#, #""timeout" must be 1 to"#),
        (#"{"message": "x", "timeout": 99999999999999}"#, #""timeout" must be 1 to"#),
    ])
    func refusesBadInputWithAReason(body: String, reason: String) {
        #expect {
            try parse(body)
        } throws: { error in
            (error as? AppendRequest.Invalid)?.description.hasPrefix(reason) == true
        }
    }

    /// A batch is written as one: its key with its first record, and every record but the
    /// last marked as continuing it, so that a crash keeps all of it or none.
    @Test func aBatchIsWrittenAsOneMarkedWriteWithItsKeyOnTheFirstRecord() {
        let batch = AppendRequest(batch: ["a", "b", "c"], id: "k").records(from: 7)
        #expect(batch.entries == [LogEntry(seq: 7, message: "a"), LogEntry(seq: 8, message: "b"), LogEntry(seq: 9, message: "c")])
        #expect(batch.ids == ["k"])
        #expect(batch.continues == [true, true, false])
        let one = AppendRequest(message: "m").records(from: 3)
        #expect(one.entries == [LogEntry(seq: 3, message: "m")])
        #expect(one.continues.allSatisfy { !$0 })
    }
}

@Suite struct IdempotencyWindowTests {
    @Test func remembersUpToItsCapacityFirstInFirstOut() {
        var window = IdempotencyWindow(capacity: 2)
        window.remember("a", seq: 1)
        window.remember("b", seq: 2)
        window.remember("c", seq: 3)
        #expect(window.seq(for: "a") == nil)
        #expect(window.seq(for: "b") == 2)
        #expect(window.seq(for: "c") == 3)
        #expect(window.count == 2)
    }

    @Test func staysBoundedOverManyIDs() {
        var window = IdempotencyWindow(capacity: 10)
        for seq in 1...10_000 { window.remember("id-\(seq)", seq: seq) }
        #expect(window.count == 10)
        #expect(window.seq(for: "id-10000") == 10_000)
        #expect(window.seq(for: "id-9990") == nil)
    }
}

@Suite struct DurationParsingTests {
    @Test(arguments: [
        ("2s", Duration.seconds(2)), ("500ms", .milliseconds(500)), ("1.5s", .milliseconds(1500)),
        ("1m", .seconds(60)), ("0", .zero), ("0s", .zero),
    ])
    func parsesCommonForms(text: String, expected: Duration) {
        #expect(Duration(parsing: text) == expected)
    }

    @Test(arguments: ["", "2", "-1s", "abc", "1x"])
    func refusesOthers(text: String) {
        #expect(Duration(parsing: text) == nil)
    }
}

/// The two parsers of an append body: by hand for the usual body, JSONDecoder for the rest.
@Suite struct AppendRequestParsersTests {
    /// The hand-written parser of the usual body and JSONDecoder give the same request, or
    /// the same refusal, for thousands of generated bodies: usual ones, and ones with every
    /// thing the hand-written one leaves to JSONDecoder (escapes, nulls, batches, other keys,
    /// duplicates, fractions, leading zeros, invalid UTF-8, control characters, broken syntax).
    @Test func theUsualBodyParserAgreesWithJSONDecoder() {
        let spaces = ["", "", " ", "\n\t ", "\r"]
        let keys = ["message", "message", "w", "w", "id", "timeout", "messages", "other", #"mess\u0061ge"#]
        let strings = [
            "hi", "", "grüße ✓ 😀", String(repeating: "x", count: 300), #"a\"b"#, #"back\\slash"#, #"line\n"#,
            #"\u00e9\ud83d\ude00"#, "raw\u{1}control", "tab\there", "slash/ok",
            "sixteen bytes in\u{1f}then a control", #"seventeen bytes in\"then an escape"#, "ünïcødé, then a\nline",
        ]
        let integers = ["0", "1", "3", "-1", "-0", "007", "1.5", "1e2", "2E0", "250", "99999999999999999999", "86400000", "86400001"]
        let others = ["null", "true", #"["a", "b"]"#, "[]", #"{"x": 1}"#, "-", ""]
        var random = SplitMix64(seed: 2024)
        func pick<T>(_ options: [T]) -> T { options[Int(random.next() % UInt64(options.count))] }
        func value(for key: String) -> [UInt8] {
            switch random.next() % 10 {
            case 0: return Array(pick(others).utf8)
            case 1: return [0x22, 0xFF, 0xFE, 0x22]  // a string that is not UTF-8
            case 2...5 where key == "w" || key == "timeout": return Array(pick(integers).utf8)
            case 6 where key == "messages": return Array(#"["one", "two"]"#.utf8)
            default: return Array("\"\(pick(strings))\"".utf8)
            }
        }
        for _ in 0..<5_000 {
            var body = Array("\(pick(spaces)){".utf8)
            let count = Int(random.next() % 4) + (random.next() % 5 == 0 ? 0 : 1)
            for index in 0..<count {
                if index > 0 { body += Array("\(pick(spaces)),".utf8) }
                let key = index == 0 && random.next() % 3 != 0 ? "message" : pick(keys)
                body += Array("\(pick(spaces))\"\(key)\"\(pick(spaces)):\(pick(spaces))".utf8) + value(for: key)
            }
            body += Array("\(pick(spaces))}\(pick(spaces))".utf8)
            switch random.next() % 12 {  // now and then, break the syntax
            case 0: body.removeLast(Int(random.next() % UInt64(body.count)))
            case 1: body += Array("x".utf8)
            case 2: body.insert(UInt8(ascii: ","), at: Int(random.next() % UInt64(body.count)))
            default: break
            }
            let byHand = body.withUnsafeBytes { bytes in Result { () throws(AppendRequest.Invalid) in try AppendRequest.parse(bytes: bytes) } }
            let byDecoder = Result { () throws(AppendRequest.Invalid) in try AppendRequest.parseWithDecoder(Data(body)) }
            #expect(byHand == byDecoder, "\(String(decoding: body, as: UTF8.self).debugDescription)")
        }
    }

    /// The hand-written parser takes the usual bodies itself (else the test above compares
    /// JSONDecoder with itself).
    @Test func theUsualBodyIsReadByHand() {
        for body in [#"{"message":"hi"}"#, #" { "message" : "hi", "w" : 3, "id": "k-1", "timeout": 250 } "#, #"{"w":2,"message":""}"#] {
            #expect(Array(body.utf8).withUnsafeBytes { UsualBody($0) } != nil, "\(body)")
        }
        for body in [#"{"message":"a\"b"}"#, #"{"message":"hi","w":null}"#, #"{"messages":["a"]}"#, #"{"message":"hi","w":1.0}"#] {
            #expect(Array(body.utf8).withUnsafeBytes { UsualBody($0) } == nil, "\(body)")
        }
    }
}

import Foundation
import ReplogCore
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

import Foundation
import ReplogCore
import Testing

@Suite struct JSONTextTests {
    /// The hand-written string literal is byte for byte what JSONEncoder writes, wherever the
    /// bytes that need an escape fall: inside, across and after the 8-byte words that
    /// are copied whole.
    @Test func theHandWrittenLiteralIsTheEncodersBytesWhereverEscapesFall() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let alphabet: [String] = ["a", "b", "/", "\"", "\\", "\n", "\u{0}", "\u{1f}", "\u{8}", "\u{c}", "\u{7f}", "é", "✓", "😀"]
        var random = SplitMix64(seed: 17)
        var strings = (0..<40).map { String(repeating: "x", count: $0) }
        for _ in 0..<2_000 {
            let length = Int(random.next() % 70)
            let plain = random.next() % 2 == 0  // mostly plain text with a rare escape
            strings.append((0..<length).map { _ -> String in
                if plain, random.next() % 8 != 0 { return "p" }
                return alphabet[Int(random.next() % UInt64(alphabet.count))]
            }.joined())
        }
        for string in strings {
            var bytes: [UInt8] = []
            JSONText.appendString(string, to: &bytes)
            let expected = try Array(encoder.encode(string))
            #expect(bytes == expected, "\(string.debugDescription)")
        }
    }
}

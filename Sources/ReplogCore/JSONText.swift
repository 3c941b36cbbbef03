/// JSON string literals written by hand, on the paths where `JSONEncoder` cost too much:
/// the `201` answer (which repeats the message) and every event of `/messages/stream`.
///
/// The bytes are exactly what Foundation's `JSONEncoder` writes with `.withoutEscapingSlashes`
/// (ServerSentEventsTests and HTTPAPITests compare them).
public enum JSONText {
    /// Appends `text` as a JSON string literal, quotation marks included.
    public static func appendString(_ text: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        appendEscaped(text, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// Appends `text`'s escaping (RFC 8259 §7: quotation mark, reverse solidus and control
    /// characters), without the quotation marks.
    ///
    /// Runs that need no escape are copied whole, and found eight bytes at a time: a 1 MiB
    /// message went through a byte-by-byte loop here at about 28 % of the master's CPU.
    public static func appendEscaped(_ text: String, to bytes: inout [UInt8]) {
        var text = text
        text.withUTF8 { appendEscaped($0, to: &bytes) }
    }

    static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to bytes: inout [UInt8]) {
        guard let base = utf8.baseAddress else { return }
        bytes.reserveCapacity(bytes.count + utf8.count)
        var copiedUpTo = 0
        var index = 0
        while index < utf8.count {
            if index + 8 <= utf8.count,
                !mayNeedEscape(UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)))
            {
                index += 8
                continue
            }
            let byte = utf8[index]
            if let escape = escape(byte) {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[copiedUpTo..<index]))
                appendEscape(escape, of: byte, to: &bytes)
                copiedUpTo = index + 1
            }
            index += 1
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[copiedUpTo...]))
    }

    /// Whether any of eight bytes is below 0x20, a quotation mark or a reverse solidus: the
    /// "has a byte less than n" and "has a zero byte" tricks of Bit Twiddling Hacks, exact
    /// as yes-or-no answers. (Swift's `SIMD16` comparisons compiled to a scalar loop here,
    /// slower than the plain byte loop.)
    @inline(__always)
    static func mayNeedEscape(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        func hasByteBelow(_ word: UInt64, _ limit: UInt64) -> Bool { (word &- ones &* limit) & ~word & highBits != 0 }
        return hasByteBelow(word, 0x20) || hasByteBelow(word ^ (ones &* 0x22), 1) || hasByteBelow(word ^ (ones &* 0x5C), 1)
    }

    /// The letter of a short escape (`\n`), `u` for `\u00XX`, or nil for a byte that stays.
    private static func escape(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): byte
        case 0x0A: UInt8(ascii: "n")
        case 0x0D: UInt8(ascii: "r")
        case 0x09: UInt8(ascii: "t")
        case 0x08: UInt8(ascii: "b")
        case 0x0C: UInt8(ascii: "f")
        case 0x00..<0x20: UInt8(ascii: "u")
        default: nil
        }
    }

    private static func appendEscape(_ escape: UInt8, of byte: UInt8, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\\"))
        bytes.append(escape)
        guard escape == UInt8(ascii: "u") else { return }
        func digit(_ value: UInt8) -> UInt8 { value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10 }
        bytes.append(contentsOf: [UInt8(ascii: "0"), UInt8(ascii: "0"), digit(byte >> 4), digit(byte & 0x0F)])
    }
}

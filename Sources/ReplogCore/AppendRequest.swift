import Foundation

/// A client's `POST /messages` body, checked field by field so that every bad
/// input gets a reason a person can act on.
public struct AppendRequest: Sendable, Equatable {
    /// The message; for a batch, its first message.
    public var message: String
    /// A batch (`"messages": [...]`): appended atomically, at consecutive seqs, and answered
    /// once `w` nodes hold all of it. `nil` for one message.
    public var batch: [String]?
    /// How many nodes must hold the message before the client is answered;
    /// `nil` means every node (blocking replication).
    public var w: Int?
    /// Client-chosen idempotency key: a repeated append with the same id appends nothing.
    public var id: String?
    /// Stop waiting for acknowledgements after this long and answer 504.
    public var timeout: Duration?

    public init(message: String, w: Int? = nil, id: String? = nil, timeout: Duration? = nil) {
        self.message = message
        self.w = w
        self.id = id
        self.timeout = timeout
    }

    /// A batch (which MUST NOT be empty): all or nothing, at consecutive seqs.
    public init(batch: [String], w: Int? = nil, id: String? = nil, timeout: Duration? = nil) {
        self.init(message: batch.first ?? "", w: w, id: id, timeout: timeout)
        self.batch = batch
    }

    /// The messages to append: the batch, or the one message.
    public var messages: [String] { batch ?? [message] }

    /// The records this request is written as when it gets `seq`, in one write: its messages
    /// at `seq` on, its key with the first (it outlives a restart there, and a retry is
    /// answered from it), and a batch marked as one (every record but its last continues
    /// it), so that a crash keeps all of it or none.
    public func records(from seq: Int) -> (entries: [LogEntry], ids: [String?], continues: [Bool]) {
        let entries = messages.enumerated().map { LogEntry(seq: seq + $0.offset, message: $0.element) }
        let continues = batch == nil ? [] : entries.map { $0.seq < seq + entries.count - 1 }
        return (entries, [id], continues)
    }

    /// Most messages one batch may hold.
    public static let maxBatchCount = 10_000

    /// Longest accepted idempotency key, in UTF-8 bytes.
    public static let maxIDLength = 256
    /// Longest accepted `timeout`: one day.
    public static let maxTimeoutMilliseconds = 86_400_000

    /// Why a body was refused; `description` is the text of the `400` error.
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    private static let decoder = JSONDecoder()

    /// Parses and checks a request body. `w`'s upper bound depends on the cluster and is
    /// checked by the master.
    public static func parse(_ body: Data) throws(Invalid) -> AppendRequest {
        let parsed = body.withUnsafeBytes { bytes in Result { () throws(Invalid) in try parse(bytes: bytes) } }
        return try parsed.get()
    }

    /// `parse(_:)` of bytes in place (a request body as it arrived, not copied into `Data`).
    public static func parse(bytes: UnsafeRawBufferPointer) throws(Invalid) -> AppendRequest {
        // The usual body by hand (`UsualBody`); anything else, and every refusal, through
        // JSONDecoder, so that both give the same answer to the same bytes.
        if let usual = UsualBody(bytes) { return try usual.checked() }
        return try parseWithDecoder(Data(bytes))
    }

    /// One pass of JSONDecoder: field errors come out of `init(from:)` as `Invalid`, and
    /// everything else is about the shape of the document. (Parsing twice cost ~6 % of the
    /// master's CPU.)
    static func parseWithDecoder(_ body: Data) throws(Invalid) -> AppendRequest {
        do {
            return try decoder.decode(AppendRequest.self, from: body)
        } catch let invalid as Invalid {
            throw invalid
        } catch DecodingError.typeMismatch(_, let context) where context.codingPath.isEmpty {
            throw Invalid("the body must be a JSON object like {\"message\": \"text\", \"w\": 2}")
        } catch {
            throw Invalid("malformed JSON body")
        }
    }

    /// The fields' own checks, once their types are right (both parsers end here).
    static func checked(
        message: String, batch: [String]?, w: Int?, id: String?, timeoutMilliseconds: Int?
    ) throws(Invalid) -> AppendRequest {
        if let batch, !(1...maxBatchCount).contains(batch.count) {
            throw Invalid("\"messages\" must hold 1 to \(maxBatchCount) messages, got \(batch.count)")
        }
        if let w, w < 1 { throw Invalid("\"w\" must be at least 1, got \(w)") }
        if let id, id.isEmpty || id.utf8.count > maxIDLength {
            throw Invalid("\"id\" must be 1 to \(maxIDLength) bytes long")
        }
        if let timeoutMilliseconds, !(1...maxTimeoutMilliseconds).contains(timeoutMilliseconds) {
            throw Invalid("\"timeout\" must be 1 to \(maxTimeoutMilliseconds) milliseconds")
        }
        var request = AppendRequest(message: message, w: w, id: id, timeout: timeoutMilliseconds.map { .milliseconds($0) })
        request.batch = batch
        return request
    }
}

/// The body nearly every append sends, read by hand: one JSON object with `"message"` (a
/// string without escapes) and any of `"w"`, `"id"` (a string without escapes) and
/// `"timeout"` (plain integers), each at most once. Anything else (a batch, an escape, a
/// `null`, another key, a number with a fraction, a syntax error) is not the usual body:
/// `init` returns nil and JSONDecoder reads it.
///
/// JSONDecoder was 6.7 % of the master's CPU with 100-byte messages, and with 1 MiB
/// messages it scanned each twice and copied it twice more. AppendRequestTests compares the
/// two parsers over thousands of generated bodies.
struct UsualBody {
    var message: String?
    var w: Int?
    var id: String?
    var timeout: Int?

    init?(_ bytes: UnsafeRawBufferPointer) {
        var reader = Reader(bytes: bytes)
        guard reader.take(UInt8(ascii: "{")) else { return nil }
        if !reader.take(UInt8(ascii: "}")) {
            repeat {
                guard let key = reader.plainString(), reader.take(UInt8(ascii: ":")) else { return nil }
                switch AppendRequest.CodingKeys(bytes: key) {
                case .message where message == nil: message = reader.text()
                case .id where id == nil: id = reader.text()
                case .w where w == nil: w = reader.integer()
                case .timeout where timeout == nil: timeout = reader.integer()
                default: return nil
                }
                guard !reader.failed else { return nil }
            } while reader.take(UInt8(ascii: ","))
            guard reader.take(UInt8(ascii: "}")) else { return nil }
        }
        guard message != nil, reader.atEnd else { return nil }
    }

    func checked() throws(AppendRequest.Invalid) -> AppendRequest {
        try AppendRequest.checked(message: message!, batch: nil, w: w, id: id, timeoutMilliseconds: timeout)
    }

    /// JSON tokens over the body's bytes; `failed` once something was not what it wanted.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0
        var failed = false

        /// Skips whitespace, then takes `byte` if it comes next.
        mutating func take(_ byte: UInt8) -> Bool {
            skipWhitespace()
            guard offset < bytes.count, bytes[offset] == byte else { return false }
            offset += 1
            return true
        }

        /// Only whitespace is left.
        var atEnd: Bool {
            mutating get {
                skipWhitespace()
                return offset == bytes.count
            }
        }

        mutating func skipWhitespace() {
            while offset < bytes.count {
                switch bytes[offset] {
                case 0x20, 0x09, 0x0A, 0x0D: offset += 1  // space, tab, line feed, carriage return
                default: return
                }
            }
        }

        /// The bytes of a string with no escape and no control character, without its quotes.
        mutating func plainString() -> UnsafeRawBufferPointer? {
            guard take(UInt8(ascii: "\"")) else { return fail() }
            let start = offset
            // Eight bytes at a time up to the first that may end the string or need an escape.
            while offset + 8 <= bytes.count,
                !JSONText.mayNeedEscape(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)))
            {
                offset += 8
            }
            while offset < bytes.count {
                let byte = bytes[offset]
                if byte == UInt8(ascii: "\"") {
                    offset += 1
                    return UnsafeRawBufferPointer(rebasing: bytes[start..<offset - 1])
                }
                if byte == UInt8(ascii: "\\") || byte < 0x20 { return fail() }
                offset += 1
            }
            return fail()
        }

        /// A plain string that is valid UTF-8, as a `String`.
        mutating func text() -> String? {
            guard let bytes = plainString() else { return nil }
            guard let text = String(validating: bytes, as: UTF8.self) else { return fail() }
            return text
        }

        /// An integer as JSON writes it (no leading zeros, no fraction or exponent), of up
        /// to 18 digits so that it cannot overflow.
        mutating func integer() -> Int? {
            skipWhitespace()
            let negative = offset < bytes.count && bytes[offset] == UInt8(ascii: "-")
            if negative { offset += 1 }
            let start = offset
            var value = 0
            while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) {
                guard offset - start < 18 else { return fail() }
                value = value * 10 + Int(bytes[offset] - UInt8(ascii: "0"))
                offset += 1
            }
            let digits = offset - start
            guard digits >= 1, digits == 1 || bytes[start] != UInt8(ascii: "0") else { return fail() }
            // (A fraction or an exponent fails at the next token, which must be `,` or `}`.)
            return negative ? -value : value
        }

        private mutating func fail<T>() -> T? {
            failed = true
            return nil
        }
    }
}

extension AppendRequest: Decodable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case message, messages, w, id, timeout

        /// The key whose name is these UTF-8 bytes.
        init?(bytes: UnsafeRawBufferPointer) {
            guard let key = Self.allCases.first(where: { $0.rawValue.utf8.elementsEqual(bytes) }) else { return nil }
            self = key
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let message: String
        var batch: [String]?
        if container.contains(.messages) {
            guard !container.contains(.message) else {
                throw Invalid("send either \"message\" (one) or \"messages\" (a batch), not both")
            }
            guard let messages = try? container.decode([String].self, forKey: .messages) else {
                throw Invalid("\"messages\" must be an array of strings")
            }
            message = messages.first ?? ""
            batch = messages
        } else {
            guard container.contains(.message) else { throw Invalid("missing field \"message\" (or \"messages\" for a batch)") }
            guard let one = try? container.decode(String.self, forKey: .message) else {
                throw Invalid("\"message\" must be a string")
            }
            message = one
        }
        // Each field's type first, then (in `checked`) each field's value, in this order.
        let w = try Self.optionalInteger(container, .w, name: "w")
        var id: String?
        if container.contains(.id), try !container.decodeNil(forKey: .id) {
            guard let string = try? container.decode(String.self, forKey: .id) else {
                throw Invalid("\"id\" must be a string")
            }
            id = string
        }
        let timeout = try Self.optionalInteger(container, .timeout, name: "timeout")
        self = try Self.checked(message: message, batch: batch, w: w, id: id, timeoutMilliseconds: timeout)
    }

    /// An optional integer field: absent and `null` both mean "not given".
    private static func optionalInteger(
        _ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys, name: String
    ) throws -> Int? {
        guard container.contains(key), try !container.decodeNil(forKey: key) else { return nil }
        // Swift's JSONDecoder refuses `true` as an Int (AppendRequestTests checks it), so no
        // separate check for booleans: trying `Bool` first threw, and built, a DecodingError
        // on every valid append.
        guard let value = try? container.decode(Int.self, forKey: key) else {
            throw Invalid("\"\(name)\" must be an integer")
        }
        return value
    }
}

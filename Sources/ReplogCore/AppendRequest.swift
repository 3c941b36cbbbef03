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
        // One pass of JSONDecoder: field errors come out of `init(from:)` as `Invalid`, and
        // everything else is about the shape of the document. (This is the hottest code in
        // the append path; parsing twice cost ~6 % of the master's CPU.)
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
}

extension AppendRequest: Decodable {
    enum CodingKeys: String, CodingKey { case message, messages, w, id, timeout }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if container.contains(.messages) {
            guard !container.contains(.message) else {
                throw Invalid("send either \"message\" (one) or \"messages\" (a batch), not both")
            }
            guard let batch = try? container.decode([String].self, forKey: .messages) else {
                throw Invalid("\"messages\" must be an array of strings")
            }
            guard (1...Self.maxBatchCount).contains(batch.count) else {
                throw Invalid("\"messages\" must hold 1 to \(Self.maxBatchCount) messages, got \(batch.count)")
            }
            self.message = batch[0]
            self.batch = batch
        } else {
            guard container.contains(.message) else { throw Invalid("missing field \"message\" (or \"messages\" for a batch)") }
            guard let message = try? container.decode(String.self, forKey: .message) else {
                throw Invalid("\"message\" must be a string")
            }
            self.message = message
        }

        self.w = try Self.optionalInteger(container, .w, name: "w")
        if let w, w < 1 { throw Invalid("\"w\" must be at least 1, got \(w)") }

        if container.contains(.id), try !container.decodeNil(forKey: .id) {
            guard let id = try? container.decode(String.self, forKey: .id) else {
                throw Invalid("\"id\" must be a string")
            }
            guard !id.isEmpty, id.utf8.count <= Self.maxIDLength else {
                throw Invalid("\"id\" must be 1 to \(Self.maxIDLength) bytes long")
            }
            self.id = id
        }

        if let milliseconds = try Self.optionalInteger(container, .timeout, name: "timeout") {
            guard (1...Self.maxTimeoutMilliseconds).contains(milliseconds) else {
                throw Invalid("\"timeout\" must be 1 to \(Self.maxTimeoutMilliseconds) milliseconds")
            }
            self.timeout = .milliseconds(milliseconds)
        }
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

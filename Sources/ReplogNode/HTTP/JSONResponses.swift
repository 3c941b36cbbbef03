import Foundation
import Hummingbird
import NIOCore
import NIOFoundationCompat
import ReplogCore
import ReplogStorage
import Synchronization

/// Encoding shared by every endpoint: compact JSON, keys sorted so output is stable.
enum JSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static let decoder = JSONDecoder()

    static func response(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        answer(status, value).response
    }

    static func answer(_ status: HTTPResponse.Status, _ value: some Encodable) -> JSONAnswer {
        // Encoding our own response types cannot fail; if it ever did, say so rather than crash.
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":"response could not be encoded"}"#.utf8)
        return JSONAnswer(status: status, body: ByteBuffer(data: data))
    }
}

/// A JSON answer as status, headers and bytes: what Hummingbird's routes send as a
/// `Response`, and what the append fast path (`AppendFastPath`) writes itself.
struct JSONAnswer: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
    var body: ByteBuffer

    init(status: HTTPResponse.Status, body: ByteBuffer) {
        self.status = status
        self.body = body
    }

    var response: Response { Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body)) }
}

extension Master.AppendResult {
    /// The `201` answer, `{"message":…,"seq":…,"w":…}` like `JSON.response` would write it,
    /// but without JSONEncoder: on the hottest path it cost 3.8 % of the master's CPU.
    var answer: JSONAnswer {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(message.utf8.count + 48)
        bytes.append(contentsOf: #"{"message":"#.utf8)
        JSONText.appendString(message, to: &bytes)
        bytes.append(contentsOf: #","seq":\#(seq),"w":\#(w)}"#.utf8)
        return JSONAnswer(status: .created, body: ByteBuffer(bytes: bytes))
    }
}

/// An error answered as `{"error": "human readable reason", …details}`.
public struct APIError: Error, HTTPResponseError {
    public let status: HTTPResponse.Status
    public let message: String
    /// Extra fields next to `error` (already JSON-encoded object members).
    private let details: [String: JSONValue]
    /// Where a redirect sends the client (`Location`).
    private let location: String?

    public init(_ status: HTTPResponse.Status, _ message: String, details: [String: JSONValue] = [:], location: String? = nil) {
        self.status = status
        self.message = message
        self.details = details
        self.location = location
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response
    }

    var response: Response { answer.response }

    var answer: JSONAnswer {
        var body = details
        body["error"] = .string(message)
        var answer = JSON.answer(status, body)
        if let location { answer.headers[.location] = location }
        return answer
    }
}

extension APIError {
    /// A read the store refused: `410` with the log's first seq when retention dropped what
    /// was asked for, `500` when the disk failed (never a shorter list).
    init(_ error: LogStoreError) {
        if case .gone(let firstSeq) = error {
            self.init(
                .gone, "those messages are no longer kept: the log starts at seq \(firstSeq) (retention); read from there",
                details: ["firstSeq": .int(firstSeq)])
        } else {
            self.init(.internalServerError, "the log store could not be read: \(error)")
        }
    }
}

/// The few JSON shapes error details need.
public enum JSONValue: Encodable, Sendable, Equatable {
    case string(String)
    case int(Int)
    case object([String: JSONValue])

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// The methods each path of a router answers, for `405 Method Not Allowed`.
final class AllowedMethods: Sendable {
    private let table = Mutex<[String: [String]]>([:])

    /// Records the router's routes; call after the last route is added.
    func record<Context>(_ router: Router<Context>) {
        let table = Dictionary(grouping: router.routes) { $0.path.description.isEmpty ? "/" : $0.path.description }
            .mapValues { $0.map(\.method.rawValue).sorted() }
        self.table.withLock { $0 = table }
    }

    func methods(for path: String) -> [String]? { table.withLock { $0[path] } }
}

/// Turns every error, including the framework's own (unknown route, wrong method, body
/// too large), into the `{"error": …}` shape of the contract.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowedMethods: AllowedMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response
        } catch is NIOTooManyBytesError {
            // Routes name their own limit (`collectBody(limitedTo:)`): NIO's `maxBytes` is
            // what was left of it when the body came in several parts.
            return APIError(.contentTooLarge, "request body is too large").response
        } catch let error as HTTPError where error.status == .notFound {
            if let allowed = allowedMethods.methods(for: request.uri.path) {
                var response = APIError(.methodNotAllowed, "\(request.uri.path) answers \(allowed.joined(separator: ", ")), not \(request.method)").response
                response.headers[.allow] = allowed.joined(separator: ", ")
                return response
            }
            return APIError(.notFound, "no route for \(request.method) \(request.uri.path)").response
        } catch let error as HTTPError {
            return APIError(error.status, error.body ?? error.status.reasonPhrase).response
        } catch {
            context.logger.error("request failed", metadata: ["replog.error": "\(error)"])
            return APIError(.internalServerError, "internal error: \(error)").response
        }
    }
}

extension Request {
    /// An optional integer query parameter, at least `minimum`.
    func integerQuery(_ name: String, minimum: Int) throws -> Int? {
        guard let text = uri.queryParameters[name[...]] else { return nil }
        // A number too large for Int still means "as far as you can go". (ASCII digits only:
        // `isNumber` is true of "³" and "½" too, which the fuzzer sent.)
        if Int(text) == nil, !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) { return Int.max }
        guard let value = Int(text), value >= minimum else {
            throw APIError(.badRequest, "query parameter \"\(name)\" must be an integer >= \(minimum), got \"\(text)\"")
        }
        return value
    }
}

/// How many entries one read takes out of the store while streaming a long listing.
let listingPageSize = 1_000

/// How many bytes of records one read takes out of the store for a listing or a stream, at
/// most (one entry always comes): a reader holds one page while its connection takes it, and
/// a thousand 1 MiB messages would be a gigabyte. A page may therefore be shorter than asked
/// with more behind it.
public let listingPageBytes = 4 << 20

extension Router {
    /// `GET /metrics` in the Prometheus text format, when the node exports metrics.
    func addMetricsRoute(_ metrics: (@Sendable () -> String)?) {
        guard let metrics else { return }
        get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metrics())))
        }
    }

    /// Longest `wait` of a long poll, in milliseconds.
    static var maxWaitMilliseconds: Int { 60_000 }

    /// `GET /messages?from=SEQ&limit=N`: the log in total order, all of it by default, as far
    /// as the read level asked shows (`?read=committed|local|linearizable`; committed by
    /// default).
    /// With `&wait=MS` (a long poll), when nothing at or after `from` is there yet, it waits
    /// up to MS for the first entry, then answers with what is there (possibly nothing).
    ///
    /// A short listing is encoded at once. A long one is streamed page by page, so listing a
    /// million-entry log never holds more than one page of it in memory.
    ///
    /// A store that cannot read its log answers 500 with the reason; once the listing is
    /// streaming, the connection is cut instead, so a client never takes a short list for
    /// the whole log.
    /// The error a read at `from` throws, if any (a probe before answering `410`).
    static func readError(_ read: @Sendable (_ from: Int, _ limit: Int) async throws(LogStoreError) -> [LogEntry], from: Int) async -> LogStoreError? {
        do { _ = try await read(from, 1) } catch { return error }
        return nil
    }

    func addMessagesRoute(_ reader: LogReader) {
        get("/messages") { request, _ in
            let (read, wait) = try await reader.resolve(request)
            let asked = try request.integerQuery("from", minimum: 1)
            // Without `from`, the list starts where the log does (after retention, past 1).
            var from = asked ?? 1
            if asked == nil, case .gone(let first)? = await Self.readError(read, from: from) { from = first }
            let limit = try request.integerQuery("limit", minimum: 0) ?? Int.max
            let waitMilliseconds = try request.integerQuery("wait", minimum: 0) ?? 0
            guard waitMilliseconds <= Self.maxWaitMilliseconds else {
                throw APIError(.badRequest, "query parameter \"wait\" must be 0 to \(Self.maxWaitMilliseconds) milliseconds, got \(waitMilliseconds)")
            }
            let firstPage: [LogEntry]
            let whole: Bool
            do {
                let now = try await read(from, min(limit, listingPageSize))
                if now.isEmpty, waitMilliseconds > 0, limit > 0 {
                    await wait(from, .milliseconds(waitMilliseconds))
                    firstPage = try await read(from, min(limit, listingPageSize))
                } else {
                    firstPage = now
                }
                // A page shorter than asked may have been cut by its bytes: the list is whole
                // only when nothing follows it.
                if let last = firstPage.last, firstPage.count < limit {
                    whole = try await read(last.seq + 1, 1).isEmpty
                } else {
                    whole = true
                }
            } catch let error as LogStoreError {
                throw APIError(error)
            } catch {
                throw APIError(.internalServerError, "the log store could not be read: \(error)")
            }
            guard !whole else {
                return JSON.response(.ok, MessagesPage(messages: firstPage))
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
                body: ResponseBody { writer in
                    var page = firstPage
                    var remaining = limit
                    var buffer = ByteBuffer(string: #"{"messages":["#)
                    while !page.isEmpty {
                        for (index, entry) in page.enumerated() {
                            if index > 0 || remaining < limit { buffer.writeString(",") }
                            buffer.writeBytes(try JSON.encoder.encode(entry))
                        }
                        try await writer.write(buffer)
                        buffer.clear()
                        remaining -= page.count
                        let next = page.last!.seq + 1
                        page = remaining > 0 ? try await read(next, min(remaining, listingPageSize)) : []
                    }
                    buffer.writeString("]}")
                    try await writer.write(buffer)
                    try await writer.finish(nil)
                })
        }
    }
}

extension Request {
    /// The body, up to `limit` bytes: a longer one is a `413` that names the limit of the
    /// route that read it (an append's `--max-body`, a delivery's, a vote's).
    mutating func collectBody(limitedTo limit: Int) async throws -> ByteBuffer {
        do {
            return try await collectBody(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "request body is larger than \(limit) bytes")
        }
    }
}

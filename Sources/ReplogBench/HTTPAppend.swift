import Foundation
import NIOCore
import NIOHTTP1
import ReplogCore

/// An HTTP `POST` of a prebuilt JSON body that succeeds with one expected status: replog's
/// append (and the HTTP floor's), or an etcd put through its JSON gateway. Requests are built
/// once and written as they are.
struct HTTPAppend: BenchProtocol {
    typealias AnswerPart = HTTPClientResponsePart

    let host: String
    let port: Int
    /// One (head, body) per variant (for replog, per write concern), used round-robin.
    private let requests: [(head: HTTPRequestHead, body: ByteBuffer)]
    private let success: HTTPResponseStatus
    /// Status of the answer being read.
    private var status: HTTPResponseStatus?
    /// Told the seq of every `201` (`--followers`: the answer's body is read for it then).
    var onCreated: (@Sendable (Int) -> Void)?
    /// The answer's body so far, kept only with `onCreated` (it may come in several parts).
    private var body: ByteBuffer?

    struct BadURL: Error, CustomStringConvertible {
        let url: String
        var description: String { "\(url) is not an http://host:port URL" }
    }

    /// `POST /messages` to a replog master (a batch of `batch` messages when it is over 1),
    /// answered `201`.
    init(master: String, writeConcerns: [Int?], size: Int, batch: Int = 1) throws {
        guard let url = HTTPBaseURL(master) else { throw BadURL(url: master) }
        self.init(
            host: url.host, port: url.port, path: url.pathPrefix + "/messages", success: .created,
            bodies: writeConcerns.map { benchMessageJSON(size: size, w: $0, batch: batch) })
    }

    /// `POST /v3/kv/put` to an etcd member's JSON gateway, answered `200` once the put is
    /// committed by a quorum of the cluster (and in its write-ahead log on disk). Every put
    /// writes the benchmark message to the same key, so each one adds a revision: etcd's
    /// closest equivalent of an append.
    static func etcdPut(host: String, port: Int, size: Int) -> HTTPAppend {
        let key = Data("replog-bench".utf8).base64EncodedString()
        let value = Data(benchMessageJSON(size: size).utf8).base64EncodedString()
        return HTTPAppend(
            host: host, port: port, path: "/v3/kv/put", success: .ok, bodies: [#"{"key":"\#(key)","value":"\#(value)"}"#])
    }

    /// `GET /messages?limit=1&read=LEVEL` on a replog node, answered `200`: the cost of a read
    /// at each level (a linearizable one waits for its majority round), not of its size.
    static func read(node: String, level: ReadLevel) throws -> HTTPAppend {
        guard let url = HTTPBaseURL(node) else { throw BadURL(url: node) }
        return HTTPAppend(
            host: url.host, port: url.port, path: url.pathPrefix + "/messages?limit=1&read=\(level.rawValue)", success: .ok, bodies: [""],
            method: .GET)
    }

    private init(host: String, port: Int, path: String, success: HTTPResponseStatus, bodies: [String], method: HTTPMethod = .POST) {
        self.host = host
        self.port = port
        self.success = success
        requests = bodies.map { text in
            let body = ByteBuffer(string: text)
            let headers: HTTPHeaders = [
                "Host": "\(host):\(port)", "Content-Type": "application/json", "Content-Length": "\(body.readableBytes)",
            ]
            return (HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers), body)
        }
    }

    static func addCodecs(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addHTTPClientHandlers()
    }

    func writeRequest(turn: Int, context: ChannelHandlerContext) {
        let request = requests[turn % requests.count]
        context.write(NIOAny(HTTPClientRequestPart.head(request.head)), promise: nil)
        context.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(request.body))), promise: nil)
        context.write(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil)
    }

    mutating func receive(_ part: HTTPClientResponsePart) -> Outcome? {
        switch part {
        case .head(let head):
            status = head.status
            return nil
        case .body(var part):
            if onCreated != nil {
                if body == nil { body = part } else { body!.writeBuffer(&part) }
            }
            return nil
        case .end:
            defer { (status, body) = (nil, nil) }
            guard let status else { return .failed("an answer without a status line") }
            if status == success, let body, let seq = Self.seq(in: body) { onCreated?(seq) }
            return status == success ? .succeeded : .failed("HTTP \(status.code)")
        }
    }

    /// The number after `"seq":` in a `201` body (`{"message":…,"seq":7,"w":2}`).
    private static func seq(in body: ByteBuffer) -> Int? {
        let bytes = body.readableBytesView
        let key = Array(#""seq":"#.utf8)
        guard let start = bytes.firstRange(of: key)?.upperBound else { return nil }
        var value = 0
        for byte in bytes[start...] {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { break }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}

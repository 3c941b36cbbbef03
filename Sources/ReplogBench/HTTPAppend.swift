import Foundation
import NIOCore
import NIOHTTP1

/// `POST /messages` with a JSON body, answered `201` on success: replog's append, and the
/// HTTP floor's. Requests are built once and written as they are.
struct HTTPAppend: BenchProtocol {
    typealias AnswerPart = HTTPClientResponsePart

    let host: String
    let port: Int
    /// One (head, body) per write concern, used round-robin.
    private let requests: [(head: HTTPRequestHead, body: ByteBuffer)]
    /// Status of the answer being read.
    private var status: HTTPResponseStatus?

    struct BadURL: Error, CustomStringConvertible {
        let url: String
        var description: String { "\(url) is not an http://host:port URL" }
    }

    init(master: String, writeConcerns: [Int?], size: Int) throws {
        guard let url = URL(string: master), url.scheme == "http", let host = url.host else { throw BadURL(url: master) }
        self.host = host
        self.port = url.port ?? 80
        let path = (url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path) + "/messages"
        requests = writeConcerns.map { w in
            let body = ByteBuffer(string: benchMessageJSON(size: size, w: w))
            let headers: HTTPHeaders = [
                "Host": "\(host):\(url.port ?? 80)", "Content-Type": "application/json",
                "Content-Length": "\(body.readableBytes)",
            ]
            return (HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers), body)
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
        case .body:
            return nil
        case .end:
            defer { status = nil }
            guard let status else { return .failed("an answer without a status line") }
            return status == .created ? .succeeded : .failed("HTTP \(status.code)")
        }
    }
}

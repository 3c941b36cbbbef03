import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOFoundationCompat
import NIOPosix
import ReplogCore
import Synchronization
import Testing

@testable import ReplogNode

/// `POST /messages` on the connection's event loop (`AppendFastPath`), over real sockets:
/// it answers what Hummingbird's route answers, hands everything else on, and keeps HTTP/1.1's
/// order when requests are pipelined.
@Suite struct AppendFastPathTests {
    /// The master's HTTP server as `replog master` runs it.
    private func server(_ cluster: TestCluster, maxBodyBytes: Int = 1024, tokens: ClientTokens? = nil) -> some ApplicationProtocol {
        cluster.masterNode.app(maxBodyBytes: maxBodyBytes, clientTokens: tokens)
    }

    /// The same appends through the fast path and through Hummingbird's route get the same
    /// answers, byte for byte: 201s, a conflicting retry's 409, a w above the cluster's 400.
    @Test func theFastPathAnswersWhatTheRouteAnswers() async throws {
        let bodies = [
            #"{"message": "first", "w": 1}"#, #"{"message":"ünï ✓","w":2,"id":"k1"}"#, #"{"message":"other","w":1,"id":"k1"}"#,
            #"{"message":"too many","w":9}"#, #"{"message":"k1 again","id":"k1","w":1,"timeout":5000}"#,
        ]
        func answers(through mode: TestingSetup) async throws -> [String] {
            let cluster = TestCluster()
            return try await cluster.withReplication {
                try await server(cluster).test(mode) { client in
                    var answers: [String] = []
                    for body in bodies {
                        try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: body)) { response in
                            #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                            answers.append("\(response.status.code) \(String(buffer: response.body))")
                        }
                    }
                    return answers
                }
            }
        }
        let route = try await answers(through: .router)
        #expect(route.map { $0.prefix(3) } == ["201", "201", "409", "400", "409"])
        let takenBefore = AppendFastPath.appendsTaken.load(ordering: .relaxed)
        #expect(try await answers(through: .live) == route)
        #expect(AppendFastPath.appendsTaken.load(ordering: .relaxed) - takenBefore >= bodies.count, "the fast path took them")
    }

    /// Whatever is not the usual append goes on to Hummingbird and gets its answer there:
    /// a bad body (400), no token (401), a page of another site (403), a body too large
    /// (413), another content type (415).
    @Test func everythingElseIsHandedOnToHummingbird() async throws {
        let cluster = TestCluster(secondaries: 0)
        let tokens = ClientTokens(["token-0123456789abcdef"])
        try await server(cluster, maxBodyBytes: 64, tokens: tokens).test(.live) { client in
            let token: HTTPFields = [.authorization: "Bearer token-0123456789abcdef"]
            let cases: [(HTTPFields, String, HTTPResponse.Status)] = [
                (token, #"{"message": 5}"#, .badRequest),
                ([:], #"{"message": "no token"}"#, .unauthorized),
                (token.merging([.origin: "http://evil.example"]), #"{"message": "x"}"#, .forbidden),
                (token, #"{"message": "\#(String(repeating: "x", count: 100))"}"#, .contentTooLarge),
                (token.merging([.contentType: "text/plain"]), #"{"message": "x"}"#, .unsupportedMediaType),
                (token, #"{"message": "x", "w": 1}"#, .created),
            ]
            for (headers, body, status) in cases {
                try await client.execute(uri: "/messages", method: .post, headers: headers, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == status, "\(body): \(String(buffer: response.body))")
                    #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                }
            }
        }
        #expect(try cluster.master.read(from: 1, limit: 10).map(\.message) == ["x"])
    }

    /// Every node's Hummingbird routes run on the connection's event loop too
    /// (`NodeHTTPChannel`): a secondary's replication requests, the master's other requests.
    @Test func routesRunOnTheConnectionsEventLoop() async throws {
        for fastPath in [nil, AppendFastPath.Configuration(master: { nil }, maxBodyBytes: 1024, clientTokens: nil, serverName: "replog")] {
            let router = Router()
            router.get("/where") { _, _ in MultiThreadedEventLoopGroup.currentEventLoop == nil ? "elsewhere" : "event loop" }
            let app = Application(
                router: router, server: NodeHTTPChannel.builder(fastPath: fastPath),
                configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)))
            try await app.test(.live) { client in
                for _ in 1...3 {
                    try await client.execute(uri: "/where", method: .get) { response in
                        #expect(String(buffer: response.body) == "event loop", "fast path: \(fastPath != nil)")
                    }
                }
            }
        }
    }

    /// Pipelined requests are answered in the order they came, whichever path each takes:
    /// an append behind a long poll waits for the poll's answer (it is not appended before),
    /// and requests behind a waiting append are read once it is answered.
    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let cluster = TestCluster(secondaries: 0)
        try await server(cluster).test(.live) { client in
            let connection = try RawHTTPConnection(port: client.port!)
            defer { connection.close() }
            // A long poll that waits for seq 1, then an append that would end it.
            try connection.send(
                "GET /messages?from=1&wait=1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                    + post(#"{"message":"after the poll","w":1}"#))
            // (Bounded: if the append went first, the poll ends and never sleeps.)
            let deadline = ContinuousClock.now + .seconds(10)
            while cluster.clock.sleeperCount == 0, cluster.master.store.lastSeq == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(cluster.master.store.lastSeq == 0, "the append behind the poll waits for the poll's answer")
            try #require(cluster.clock.sleeperCount == 1)
            cluster.clock.advance(by: .seconds(1))
            let first = try connection.responses(2)
            #expect(first.map(\.status) == [200, 201])
            #expect(first.first?.body == #"{"messages":[]}"#)

            // Two appends and a health check in one write: the second append and the check wait
            // in the fast path until the first append is answered.
            try connection.send(post(#"{"message":"one","w":1}"#) + post(#"{"message":"two","w":1}"#) + "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            let next = try connection.responses(3)
            #expect(next.map(\.status) == [201, 201, 200])
            #expect(next.prefix(2).map { $0.body.contains(#""seq":2"#) || $0.body.contains(#""seq":3"#) } == [true, true])
            #expect(next[0].body.contains(#""message":"one""#) && next[1].body.contains(#""message":"two""#))
        }
        #expect(try cluster.master.read(from: 1, limit: 10).map(\.message) == ["after the poll", "one", "two"])
    }

    private func post(_ body: String) -> String {
        "POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }
}

/// A plain TCP connection that writes raw HTTP/1.1 and reads whole answers back: to
/// pipeline requests, which no HTTP client here does.
private final class RawHTTPConnection {
    struct Answer {
        let status: Int
        let body: String
    }

    private let socket: Int32
    private var received: [UInt8] = []

    init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)  // a test never hangs on a missing answer
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(socket, bytes, bytes.count, 0) == bytes.count else { throw POSIXError(.EIO) }
    }

    /// Reads until `count` whole answers (each with a `Content-Length`) came.
    func responses(_ count: Int) throws -> [Answer] {
        var answers: [Answer] = []
        while answers.count < count {
            if let answer = takeAnswer() {
                answers.append(answer)
                continue
            }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let read = recv(socket, &buffer, buffer.count, 0)
            guard read > 0 else { throw POSIXError(.ETIMEDOUT) }
            received += buffer[..<read]
        }
        return answers
    }

    private func takeAnswer() -> Answer? {
        let text = String(decoding: received, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<headEnd.lowerBound]
        let length = head.split(separator: "\r\n").compactMap { line -> Int? in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
            return Int(parts[1].trimmingCharacters(in: .whitespaces))
        }.first ?? 0
        let headBytes = text[..<headEnd.upperBound].utf8.count
        guard received.count >= headBytes + length else { return nil }
        let body = String(decoding: received[headBytes..<headBytes + length], as: UTF8.self)
        received.removeFirst(headBytes + length)
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return Answer(status: status, body: body)
    }

    func close() { Glibc.close(socket) }
}

extension HTTPFields {
    fileprivate func merging(_ other: HTTPFields) -> HTTPFields {
        var merged = self
        for field in other { merged[field.name] = field.value }
        return merged
    }
}

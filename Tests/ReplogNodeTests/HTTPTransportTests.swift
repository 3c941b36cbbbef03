import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import ReplogCore
import ReplogTestKit
import Testing
@testable import ReplogNode

/// The master's side of replication over real sockets: a secondary (or a peer that
/// misbehaves on purpose) listens on a free loopback port in this process.
@Suite struct HTTPTransportTests {
    private let timeout = Duration.seconds(10)

    /// A peer whose base URL path says how it behaves: `/hang/…` answers only after 2 s
    /// (far beyond the timeouts below; the test server drains it when the test ends),
    /// `/conflict/…` holds another log (as nodes before typed refusals said it), `/stale/…`
    /// and `/diverged/…` refuse with a typed refusal, `/untyped/…` with one it cannot read,
    /// `/broken/…` fails.
    private func misbehavingPeer(hanging: @escaping @Sendable () -> Void = {}) -> some ApplicationProtocol {
        let router = Router()
        router.post("/hang/replicate") { _, _ -> Response in
            hanging()
            try await Task.sleep(for: .seconds(2))
            return Response(status: .ok)
        }
        router.post("/conflict/replicate") { _, _ in
            Response(status: .conflict, body: .init(byteBuffer: ByteBuffer(string: #"{"error": "this secondary holds log A"}"#)))
        }
        router.post("/stale/replicate") { _, _ in
            // The error text of a stale epoch, but the refusal says what it is.
            Response(status: .conflict, body: .init(byteBuffer: ByteBuffer(string: #"{"refusal": "staleEpoch", "error": "no", "epoch": 7}"#)))
        }
        router.post("/diverged/replicate") { _, _ in
            Response(status: .conflict, body: .init(byteBuffer: ByteBuffer(string: #"{"refusal": "diverged", "error": "diverged at seq 2", "epoch": 7}"#)))
        }
        router.post("/untyped/replicate") { _, _ in
            Response(status: .conflict, body: .init(byteBuffer: ByteBuffer(string: #"{"refusal": "staleEpoch", "error": "no epoch"}"#)))
        }
        router.post("/broken/replicate") { _, _ in Response(status: .internalServerError) }
        return Application(router: router)
    }

    @Test func replicatesAndProbesOverOneKeptAliveConnection() async throws {
        let secondary = try SecondaryNode()
        let replica = secondary.replica
        try await Application(router: secondary.router()).test(.live) { client in
            let peer = "http://127.0.0.1:\(try #require(client.port))"
            let transport = HTTPTransport()
            for seq in 1...5 {
                let state = try await transport.replicate([LogEntry(seq: seq, message: "m\(seq)")], of: "L", to: peer, timeout: timeout)
                #expect(state.seq == seq && state.logID == "L")
            }
            let probed = try await transport.probe(peer, timeout: timeout)
            #expect(probed.seq == 5 && probed.incarnation == replica.replicaState.incarnation)
            #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["m1", "m2", "m3", "m4", "m5"])
            #expect(transport.connections.opened.load(ordering: .relaxed) == 1)
        }
    }

    /// Requests in flight together use a connection each, and all of them come back for reuse.
    @Test func concurrentRequestsGetConnectionsOfTheirOwn() async throws {
        let secondary = try SecondaryNode()
        try await Application(router: secondary.router()).test(.live) { client in
            let peer = "http://127.0.0.1:\(try #require(client.port))"
            let transport = HTTPTransport()
            for round in 0..<3 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 1...4 {
                        let seq = round * 4 + index
                        group.addTask {
                            _ = try await transport.replicate([LogEntry(seq: seq, message: "m\(seq)")], of: "L", to: peer, timeout: timeout)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            #expect(try await transport.probe(peer, timeout: timeout).seq == 12)
            #expect(transport.connections.opened.load(ordering: .relaxed) <= 4)
        }
    }

    /// All connections to a peer live on one event loop, the one its replication stream runs
    /// on (`executor(for:)`): a batch is written, and its answer read and handled, on one
    /// thread, where before the answer woke a task on another (issue 17).
    @Test func aPeersConnectionsLiveOnTheLoopItsStreamRunsOn() async throws {
        let secondary = try SecondaryNode()
        try await Application(router: secondary.router()).test(.live) { client in
            let peer = "http://127.0.0.1:\(try #require(client.port))"
            let transport = HTTPTransport()
            let executor = try #require(transport.executor(for: peer) as? EventLoopTaskExecutor)
            #expect(transport.executor(for: peer) === executor, "one executor per peer")
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for seq in 1...4 {
                    group.addTask(executorPreference: executor) {
                        _ = try await transport.replicate([LogEntry(seq: seq, message: "m\(seq)")], of: "L", to: peer, timeout: timeout)
                        return executor.eventLoop.inEventLoop
                    }
                }
                for try await resumedOnTheLoop in group { #expect(resumedOnTheLoop) }
            }
            let connections = transport.connections.idleConnections(to: peer)
            #expect(connections.count >= 2, "requests in flight together had connections of their own")
            #expect(connections.allSatisfy { $0.eventLoop === executor.eventLoop })
        }
    }

    @Test func nothingListeningIsUnreachable() async throws {
        let peer = "http://127.0.0.1:\(try freePort())"
        await #expect(throws: TransportError.unreachable(peer)) {
            try await HTTPTransport().probe(peer, timeout: timeout)
        }
    }

    /// A peer that accepts and hangs up at once, as the fault proxy does during a partition:
    /// every request ends as unreachable, long before its timeout. (A request written to a
    /// connection that had already closed used to wait forever, which stalled a chaos run.)
    @Test func aPeerThatHangsUpAtOnceIsUnreachable() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.close() }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let peer = "http://127.0.0.1:\(try #require(server.localAddress?.port))"
        let transport = HTTPTransport()
        // Each ends long before its timeout: one that waited for it would take all 30 s. (A
        // bound on all 200 together, 20 s, was passed on a machine busy with two test runs.)
        for _ in 0..<200 {
            let started = ContinuousClock.now
            await #expect(throws: TransportError.unreachable(peer)) {
                try await transport.probe(peer, timeout: .seconds(30))
            }
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    /// A kept-alive connection the peer drops just as the next request goes out (it
    /// restarted, or timed the connection out): the request is repeated once on a new
    /// connection instead of failing.
    @Test func aRequestOnADroppedIdleConnectionIsRepeatedOnANewOne() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(AnswersOnceThenHangsUp())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let peer = "http://127.0.0.1:\(try #require(server.localAddress?.port))"
        let transport = HTTPTransport()
        #expect(try await transport.probe(peer, timeout: timeout).seq == 1)
        // The kept-alive connection is idle now; the peer drops it on the next request.
        #expect(try await transport.probe(peer, timeout: timeout).seq == 1)
        #expect(transport.connections.opened.load(ordering: .relaxed) == 2)
    }

    /// A request that outlives its timeout fails as timed out, and its connection is closed,
    /// so its late answer can never be taken for another request's.
    @Test func aPeerThatNeverAnswersTimesOut() async throws {
        try await misbehavingPeer().test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let transport = HTTPTransport()
            let started = ContinuousClock.now
            await #expect(throws: TransportError.timedOut) {
                try await transport.replicate([LogEntry(seq: 1, message: "m")], of: "L", to: base + "/hang", timeout: .milliseconds(200))
            }
            #expect(ContinuousClock.now - started < .seconds(5))
            await #expect(throws: TransportError.badStatus(500)) {
                try await transport.replicate([LogEntry(seq: 1, message: "m")], of: "L", to: base + "/broken", timeout: timeout)
            }
        }
    }

    /// Stopping the master cancels its streams: a request waiting for an answer ends at once.
    @Test func cancellationEndsAWaitingRequest() async throws {
        let hanging = AsyncStream.makeStream(of: Void.self)
        try await misbehavingPeer { hanging.continuation.yield() }.test(.live) { client in
            let peer = "http://127.0.0.1:\(try #require(client.port))/hang"
            let request = Task {
                try await HTTPTransport().replicate([LogEntry(seq: 1, message: "m")], of: "L", to: peer, timeout: .seconds(60))
            }
            for await _ in hanging.stream { break }  // the peer has the request
            request.cancel()
            await #expect(throws: CancellationError.self) { try await request.value }
        }
    }

    @Test func answersOtherThan200BecomeTransportErrors() async throws {
        try await misbehavingPeer().test(.live) { client in
            let base = "http://127.0.0.1:\(try #require(client.port))"
            let transport = HTTPTransport()
            await #expect(throws: TransportError.foreignLog("this secondary holds log A")) {
                try await transport.replicate([LogEntry(seq: 1, message: "m")], of: "B", to: base + "/conflict", timeout: timeout)
            }
            // What a refusal is comes from its `refusal`, not from which fields the body has.
            await #expect(throws: TransportError.staleEpoch(7)) {
                try await transport.replicate([LogEntry(seq: 1, message: "m")], of: "B", to: base + "/stale", timeout: timeout)
            }
            await #expect(throws: TransportError.foreignLog("diverged at seq 2")) {
                try await transport.replicate([LogEntry(seq: 1, message: "m")], of: "B", to: base + "/diverged", timeout: timeout)
            }
            await #expect(throws: TransportError.badStatus(409)) {
                try await transport.replicate([LogEntry(seq: 1, message: "m")], of: "B", to: base + "/untyped", timeout: timeout)
            }
            await #expect(throws: TransportError.badStatus(500)) {
                try await transport.replicate([LogEntry(seq: 1, message: "m")], of: "B", to: base + "/broken", timeout: timeout)
            }
        }
    }

    /// A secondary that restarts on the same port is reached again by the next request,
    /// although the connection the master kept for it died with the old process.
    @Test func aRestartedPeerIsReachedAgain() async throws {
        let port = try freePort()
        let peer = "http://127.0.0.1:\(port)"
        let transport = HTTPTransport()
        for run in 1...2 {
            let secondary = try SecondaryNode()
            let replica = secondary.replica
            let listening = AsyncStream.makeStream(of: Void.self)
            let app = NodeApplications.node(
                secondary.node, host: "127.0.0.1", port: port, maxBodyBytes: 1 << 20, logger: .init(label: "test"),
                onListening: { _ in listening.continuation.yield() })
            let server = Task { try await app.runService(gracefulShutdownSignals: []) }
            for await _ in listening.stream { break }
            let state = try await transport.replicate([LogEntry(seq: 1, message: "run \(run)")], of: "L", to: peer, timeout: timeout)
            #expect(state.incarnation == replica.replicaState.incarnation)
            server.cancel()
            _ = await server.result
        }
    }
}

/// Answers the first request on a connection (kept alive) and closes the connection,
/// unanswered, on the second.
private final class AnswersOnceThenHangsUp: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var requests = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        requests += 1
        guard requests == 1 else {
            context.close(promise: nil)
            return
        }
        let body = ByteBuffer(string: #"{"seq": 1, "incarnation": "i", "logID": "L"}"#)
        let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "\(body.readableBytes)"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import ReplogCore
import Synchronization

/// Keep-alive HTTP/1.1 connections from the master to its secondaries, one request at a
/// time on each.
///
/// Replication sends small requests to a fixed set of peers, over and over. A general HTTP
/// client spends much of its time on what this does not need (redirects, TLS, proxies, a
/// task and a state machine per request): without it the master spends 13 % less CPU per
/// append, and a single client waits a quarter less (docs/benchmarks.md). This keeps a list
/// of idle connections per peer. A request takes one, or opens a new one, and gives it
/// back when the answer was complete and the peer keeps it alive. Requests to one peer run
/// side by side on separate connections, so a slow (`--delay`ed) secondary works on
/// several batches at once.
///
/// All connections to one peer live on one event loop, chosen at its first request. The
/// replication stream to that peer runs there too (`executor(for:)`): a request is written
/// and its answer read and handled on one thread, without waking another.
final class PeerConnections: Sendable {
    struct Answer {
        var status: HTTPResponseStatus
        var body: ByteBuffer
    }

    enum Failure: Error, Equatable {
        case unreachable
        case timedOut
        case cancelled
        /// The peer is not a plain `http://host:port` URL.
        case unsupportedURL
    }

    private let group: any EventLoopGroup
    /// Connections opened so far (tests check that they are reused).
    let opened = Atomic<Int>(0)
    private let idle = Mutex<[String: [any Channel]]>([:])
    private let endpoints = Mutex<[String: HTTPBaseURL]>([:])
    /// Each peer's event loop, and the executor that runs tasks on it.
    private let loops = Mutex<[String: EventLoopTaskExecutor]>([:])
    /// Answers are a few hundred bytes of JSON; anything far larger is not a replog peer.
    private static let maxAnswerBytes = 1 << 20

    init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
    }

    /// Sends one request to `peer` (a base URL such as `http://127.0.0.1:5001`) and returns
    /// its complete answer, or throws a `Failure`.
    func send(
        _ method: HTTPMethod, _ path: String, to peer: String, headers: HTTPHeaders = [:],
        body: ByteBuffer? = nil, timeout: Duration
    ) async throws -> Answer {
        let endpoint = try endpoint(of: peer)
        let deadline = NIODeadline.now() + .nanoseconds(timeout.nanoseconds)
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: endpoint.pathPrefix + path, headers: headers)
        head.headers.replaceOrAdd(name: "Host", value: endpoint.authority)
        head.headers.replaceOrAdd(name: "Content-Length", value: "\(body?.readableBytes ?? 0)")

        if let channel = takeIdle(peer) {
            do {
                return try await exchange(head, body, on: channel, of: peer, deadline: deadline)
            } catch Failure.unreachable {
                // The peer may have closed this idle connection just now (it restarted, or
                // timed it out). Every replog request is safe to repeat: try a fresh one.
            }
        }
        let channel = try await connect(to: endpoint, on: executor(for: peer).eventLoop, deadline: deadline)
        return try await exchange(head, body, on: channel, of: peer, deadline: deadline)
    }

    private func exchange(
        _ head: HTTPRequestHead, _ body: ByteBuffer?, on channel: any Channel, of peer: String, deadline: NIODeadline
    ) async throws -> Answer {
        let request = Request(head: head, body: body, answer: channel.eventLoop.makePromise())
        // Whatever the connection does, the request ends by its deadline. (The handler
        // cannot be the one to enforce it: a connection the peer closed at once, as a
        // partitioned or dead peer's proxy does, has no handlers left by the time the
        // request is written, and the request would wait forever.)
        let timeout = channel.eventLoop.scheduleTask(deadline: deadline) {
            request.answer.fail(Failure.timedOut)
            channel.close(promise: nil)  // a late answer must not be read as the next request's
        }
        request.answer.futureResult.whenComplete { _ in timeout.cancel() }
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in request.answer.fail(Failure.unreachable) }
        return try await withTaskCancellationHandler {
            channel.writeAndFlush(request, promise: written)
            let (answer, reusable) = try await request.answer.futureResult.get()
            if reusable {
                idle.withLock { $0[peer, default: []].append(channel) }
            } else {
                channel.close(promise: nil)
            }
            return answer
        } onCancel: {
            request.answer.fail(Failure.cancelled)
            channel.close(promise: nil)
        }
    }

    /// The kept-alive connections to `peer` that no request uses now (tests).
    func idleConnections(to peer: String) -> [any Channel] {
        idle.withLock { $0[peer] ?? [] }
    }

    private func takeIdle(_ peer: String) -> (any Channel)? {
        while let channel = idle.withLock({ $0[peer]?.popLast() }) {
            if channel.isActive { return channel }
        }
        return nil
    }

    /// The executor of `peer`'s event loop: tasks that talk mostly to `peer` run best there.
    func executor(for peer: String) -> EventLoopTaskExecutor {
        loops.withLock { loops in
            if let known = loops[peer] { return known }
            let executor = EventLoopTaskExecutor(group.next())
            loops[peer] = executor
            return executor
        }
    }

    /// Where a peer listens, parsed once.
    private func endpoint(of peer: String) throws(Failure) -> HTTPBaseURL {
        if let known = endpoints.withLock({ $0[peer] }) { return known }
        guard let endpoint = HTTPBaseURL(peer) else { throw .unsupportedURL }
        endpoints.withLock { $0[peer] = endpoint }
        return endpoint
    }

    private func connect(to endpoint: HTTPBaseURL, on loop: any EventLoop, deadline: NIODeadline) async throws -> any Channel {
        opened.add(1, ordering: .relaxed)
        do {
            return try await ClientBootstrap(group: loop)
                .connectTimeout(max(.zero, deadline - .now()))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(RequestHandler(maxAnswerBytes: Self.maxAnswerBytes))
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
        } catch ChannelError.connectTimeout {
            throw Failure.timedOut
        } catch {
            throw Failure.unreachable
        }
    }
}

/// One request, and the promise of its answer and of whether its connection may be reused.
private final class Request: Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer?
    let answer: EventLoopPromise<(PeerConnections.Answer, reusable: Bool)>

    init(head: HTTPRequestHead, body: ByteBuffer?, answer: EventLoopPromise<(PeerConnections.Answer, reusable: Bool)>) {
        self.head = head
        self.body = body
        self.answer = answer
    }
}

/// The last handler of a peer connection: writes a `Request` and completes it with the
/// answer, or fails it when the connection breaks.
private final class RequestHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Request
    typealias OutboundOut = HTTPClientRequestPart

    private let maxAnswerBytes: Int
    private var current: Request?
    private var status = HTTPResponseStatus.ok
    private var keepAlive = true
    private var body = ByteBuffer()

    init(maxAnswerBytes: Int) {
        self.maxAnswerBytes = maxAnswerBytes
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        precondition(current == nil, "one request at a time per connection")
        current = request
        body.clear()
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let body = request.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
            keepAlive = head.isKeepAlive
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= maxAnswerBytes else {
                failAndClose(context: context)
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let request = current else { return }
            current = nil
            request.answer.succeed((PeerConnections.Answer(status: status, body: body), reusable: keepAlive))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAndClose(context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAndClose(context: context)
    }

    private func failAndClose(context: ChannelHandlerContext) {
        current?.answer.fail(PeerConnections.Failure.unreachable)
        current = nil
        context.close(promise: nil)
    }
}

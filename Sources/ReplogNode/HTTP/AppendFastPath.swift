import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import ReplogCore
import Synchronization

/// `POST /messages` answered on the connection's own event loop, below Hummingbird's router.
///
/// Through Hummingbird an append hopped threads three times: the request went from the
/// event loop to the connection's task on Swift's thread pool, the acknowledgement woke
/// that task from a replication stream's thread, and the answer went back to the event
/// loop. Here the append runs in a task whose executor *is* the event loop
/// (`EventLoopTaskExecutor`): it is parsed, sequenced and stored where the request was
/// read, and the one hop left is the acknowledgement waking it. It also skips the router,
/// the middleware and the async sequences around each request (issue 17: the master spent
/// 40–55 µs per append beyond the HTTP exchange).
///
/// It takes only the usual append and hands everything else on to Hummingbird unchanged,
/// so every other answer (a bad body, a missing token, a cross-site page, a body too large,
/// `Expect: 100-continue`) comes from the one place that made it before. Both end in
/// `answer(_:to:)`, so an append means the same either way.
///
/// HTTP/1.1 answers in request order: a request that arrives while an append waits is
/// held until that append is answered, and an append that arrives while Hummingbird still
/// owes an answer goes to Hummingbird too.
final class AppendFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    struct Configuration: Sendable {
        /// The master to append to, if this node is one right now (failover: it may not be).
        var master: @Sendable () -> Master?
        var maxBodyBytes: Int
        var clientTokens: ClientTokens?
        /// The `Server` header, as Hummingbird sends it.
        var serverName: String
    }

    private let configuration: Configuration
    private var executor: EventLoopTaskExecutor?

    /// What the request being read is for.
    private enum Reading {
        case nothing
        case append(HTTPRequest, body: ByteBuffer, master: Master)
        case handedOn
    }
    private var reading = Reading.nothing
    /// Requests read whose answer has not been written in full, by either path.
    private var unanswered = 0
    /// An append of this path waits for its answer; what arrives meanwhile waits in `held`.
    private var appending = false
    private var held: [HTTPRequestPart] = []
    private var readWanted = false
    /// The waiting append: cancelled if the client goes away, which stops counting for it
    /// (its message stays in the log), as Hummingbird cancels a handler's task.
    private var appendTask: Task<Void, Never>?
    private var removed = false

    init(_ configuration: Configuration) { self.configuration = configuration }

    func handlerAdded(context: ChannelHandlerContext) {
        executor = EventLoopTaskExecutor(context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
        appendTask?.cancel()
    }

    func channelInactive(context: ChannelHandlerContext) {
        appendTask?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if appending { held.append(part) } else { process(part, context: context) }
    }

    /// No more reads while an append waits (what a pipelining client sends meanwhile is held,
    /// and must stay small): reading goes on once it is answered.
    func read(context: ChannelHandlerContext) {
        if appending { readWanted = true } else { context.read() }
    }

    /// Hummingbird's answers pass here on their way out: count the ones it finished.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { unanswered -= 1 }
        context.write(data, promise: promise)
    }

    private func process(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (part, reading) {
        case (.head(let head), _):
            unanswered += 1
            if unanswered == 1, let master = takes(head) {
                reading = .append(head, body: context.channel.allocator.buffer(capacity: 0), master: master)
            } else {
                handOn(part, context: context)
            }
        case (.body(let chunk), .append(let head, var body, let master)):
            reading = .nothing  // (so that `body` is not copied when it grows)
            if body.readableBytes + chunk.readableBytes > configuration.maxBodyBytes {
                // Too large: Hummingbird answers 413, as on every route.
                handOn([.head(head), .body(body), part], context: context)
                return
            }
            body.writeImmutableBuffer(chunk)
            reading = .append(head, body: body, master: master)
        case (.end, .append(let head, let body, let master)):
            reading = .nothing
            guard let request = try? AppendRequest.parse(body) else {
                // Hummingbird answers 400 with the reason, and counts the bad request.
                handOn([.head(head), .body(body), part], context: context)
                return
            }
            append(request, to: master, context: context)
        case (_, .handedOn), (_, .nothing):
            handOn(part, context: context)
        }
    }

    /// The master this request may go to by this path, or nil to hand it on.
    private func takes(_ head: HTTPRequest) -> Master? {
        guard head.method == .post, head.path == "/messages",
            acceptsAsJSON(head.headerFields[.contentType]),
            head.headerFields[.expect] == nil,
            // A browser's request: CrossSiteGuard decides.
            head.headerFields[.origin] == nil, head.headerFields[.secFetchSite] == nil,
            configuration.clientTokens.map({ $0.admits(head.headerFields[.authorization]) }) ?? true
        else { return nil }
        return configuration.master()
    }

    /// Hands on a request read so far (its head, the body collected, the part just read).
    private func handOn(_ parts: [HTTPRequestPart], context: ChannelHandlerContext) {
        for part in parts { handOn(part, context: context) }
    }

    private func handOn(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        if case .head = part { reading = .handedOn }
        if case .end = part { reading = .nothing }
        context.fireChannelRead(wrapInboundOut(part))
    }

    /// Appends this path took, in this process (tests check that it takes them at all).
    static let appendsTaken = Atomic<Int>(0)

    private func append(_ request: AppendRequest, to master: Master, context: ChannelHandlerContext) {
        Self.appendsTaken.add(1, ordering: .relaxed)
        appending = true
        let handler = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        appendTask = Task(executorPreference: executor) {
            let answer = await ReplogNode.answer(request, to: master)
            let eventLoop = handler.eventLoop
            if eventLoop.inEventLoop {
                handler.value.0.write(answer, context: handler.value.1)
            } else {
                eventLoop.execute { handler.value.0.write(answer, context: handler.value.1) }
            }
        }
    }

    private func write(_ answer: JSONAnswer, context: ChannelHandlerContext) {
        appendTask = nil
        guard !removed else { return }  // the connection is gone
        var headers = answer.headers
        headers[.contentLength] = String(answer.body.readableBytes)
        headers[.date] = HTTPDate.now
        headers[.server] = configuration.serverName
        context.write(wrapOutboundOut(.head(HTTPResponse(status: answer.status, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(answer.body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        unanswered -= 1
        appending = false
        // What arrived meanwhile, in order, until the next append of this path waits.
        let waiting = held
        held = []
        for (index, part) in waiting.enumerated() {
            if appending {
                held = Array(waiting[index...])
                break
            }
            process(part, context: context)
        }
        // Hummingbird's channel handler delivers what it was handed at the end of a read.
        if !waiting.isEmpty { context.fireChannelReadComplete() }
        if readWanted, !appending {
            readWanted = false
            context.read()
        }
    }
}

/// The `Date` header (RFC 9110, IMF-fixdate), made once a second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    static var now: String {
        var seconds = time(nil)
        return cache.withLock { cache in
            if cache.second != seconds {
                var parts = tm()
                gmtime_r(&seconds, &parts)
                let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
                let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
                func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
                cache = (
                    seconds,
                    "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
                        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
                )
            }
            return cache.text
        }
    }
}

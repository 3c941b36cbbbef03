import Hummingbird
import NIOCore
import ReplogCore
import ReplogStorage
import ServiceLifecycle

/// How the reading routes reach a node's log: a page, a wait, and a linearizable read's
/// round, each at a read level.
struct LogReader: Sendable {
    typealias Page = @Sendable (_ from: Int, _ limit: Int) async throws(LogStoreError) -> [LogEntry]
    typealias Wait = @Sendable (_ from: Int, _ timeout: Duration) async -> Void

    var read: @Sendable (_ from: Int, _ limit: Int, _ level: ReadLevel) async throws(LogStoreError) -> [LogEntry]
    var wait: @Sendable (_ from: Int, _ timeout: Duration, _ level: ReadLevel) async -> Void
    /// Before a linearizable read: returns once this node, the master, confirmed with a
    /// majority that it still is; throws the answer otherwise (`307` to the master, `503`).
    var linearize: @Sendable (Request) async throws -> Void

    /// The read level `request` asks for (`?read=`, `committed` by default), its round run
    /// if it is linearizable; then the page and wait functions at the level that shows.
    func resolve(_ request: Request) async throws -> (read: Page, wait: Wait) {
        var level = ReadLevel.committed
        if let text = request.uri.queryParameters["read"] {
            guard let asked = ReadLevel(rawValue: String(text)) else {
                throw APIError(
                    .badRequest,
                    "query parameter \"read\" must be \(ReadLevel.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(text)\"")
            }
            level = asked
        }
        if level == .linearizable {
            try await linearize(request)
            level = .committed  // everything committed when the round was confirmed, and since
        }
        let shown = level
        return ({ from, limit throws(LogStoreError) in try await read(from, limit, shown) }, { from, timeout in await wait(from, timeout, shown) })
    }
}

extension Router {
    /// Every way to read the log, the same on every node: `GET /messages` (a page, or a
    /// long poll) and `GET /messages/stream`, over the node's log at the read level asked.
    func addReadingRoutes(_ reader: LogReader) {
        addMessagesRoute(reader)
        addMessageStreamRoute(reader)
    }

    /// How long an idle stream goes without a byte: a comment then keeps proxies and
    /// clients from taking it for dead (or `--max-long-poll`, if shorter).
    static var streamKeepAlive: Duration { .seconds(15) }

    /// The header a reconnecting `EventSource` sends with the last `id` it saw.
    static var lastEventID: HTTPFields.Element.Name { .init("Last-Event-ID")! }

    /// `GET /messages/stream?from=SEQ`: every entry from SEQ on as a server-sent event, in
    /// order and without gaps, then each new one as it is shown at the read level asked
    /// (`?read=`: committed by default), until the client
    /// leaves or the node stops. `Last-Event-ID: N` (a reconnecting `EventSource`) resumes
    /// at N + 1.
    ///
    /// A slow reader is fed from the log at its own pace: the loop reads a page, writes
    /// it, and the write returns only once the connection has taken it. Nothing is queued
    /// per reader, and no reader slows appends.
    ///
    /// A store that cannot read its log ends the stream (the client reconnects, and is
    /// never shown a gap).
    func addMessageStreamRoute(_ reader: LogReader) {
        get("/messages/stream") { request, _ in
            let (read, wait) = try await reader.resolve(request)
            var asked = try request.integerQuery("from", minimum: 1)
            if let lastEventID = request.headers[Self.lastEventID] {
                guard let seq = Int(lastEventID), seq >= 0, seq < Int.max else {
                    throw APIError(.badRequest, "header Last-Event-ID must be a seq (an integer >= 0), got \"\(lastEventID)\"")
                }
                asked = seq + 1
            }
            // Before the first byte: `410` for a seq retention dropped, or (without `from`)
            // the log's first seq.
            var from = asked ?? 1
            if case .gone(let first)? = await Self.readError(read, from: from) {
                guard asked == nil else { throw APIError(LogStoreError.gone(firstSeq: first)) }
                from = first
            }
            let start = from
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    var next = start
                    try await writer.write(ByteBuffer(bytes: ServerSentEvents.comment("replog: the log from seq \(start) on")))
                    while !Task.isCancelled, !Task.isShuttingDownGracefully {
                        let page = try await read(next, listingPageSize)
                        guard let last = page.last else {
                            // Up to date: wait for the next entry, or for the node to stop.
                            let awaited = next
                            await cancelWhenGracefulShutdown { await wait(awaited, Self.streamKeepAlive) }
                            if try await read(next, 1).isEmpty, !Task.isShuttingDownGracefully {
                                try await writer.write(ByteBuffer(bytes: ServerSentEvents.comment("keep-alive")))
                            }
                            continue
                        }
                        var bytes: [UInt8] = []
                        bytes.reserveCapacity(page.count * 64)
                        for entry in page { ServerSentEvents.appendEvent(entry, to: &bytes) }
                        try await writer.write(ByteBuffer(bytes: bytes))
                        next = last.seq + 1
                    }
                    try await writer.finish(nil)
                })
        }
    }
}

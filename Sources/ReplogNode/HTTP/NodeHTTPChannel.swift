import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1.1 channel, with every connection's requests handled on the
/// connection's own event loop, and (on a node that can be master) `AppendFastPath` behind
/// Hummingbird's connection-state handler, which so sees every request and answer
/// (keep-alive, idle time-out, graceful shutdown).
///
/// Hummingbird runs each connection in a task on Swift's thread pool: every request went
/// from the event loop to that task and its answer back, two thread hops. Here the
/// connection's task prefers the event loop as its executor (`EventLoopTaskExecutor`), so
/// the router, the handlers and the answer run where the request was read. Handlers may
/// wait but never block, as on Swift's pool: file I/O that can wait runs on the thread pool
/// (`BlockingIO`). On a secondary this is every replication request.
struct NodeHTTPChannel: ServerChildChannel {
    let http1: HTTP1Channel
    /// Set on a node that takes appends.
    let fastPath: AppendFastPath.Configuration?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            if let fastPath {
                let pipeline = channel.pipeline.syncOperations
                let connectionState = try pipeline.handler(type: HTTPConnectionStateHandler.self)
                try pipeline.addHandler(AppendFastPath(fastPath), position: .after(connectionState))
            }
            return value
        }
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor(value.channel.eventLoop)) {
            await http1.handle(value: value, logger: logger)
        }
    }

    static func builder(fastPath: AppendFastPath.Configuration? = nil) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            NodeHTTPChannel(http1: HTTP1Channel(responder: responder), fastPath: fastPath)
        }
    }
}

import NIOCore
import NIOPosix

/// A connection to an echo server: send a line, get its echo.
public struct EchoSession: ~Copyable {
    private var inbound: NIOAsyncChannelInboundStream<EchoFrame>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<String>

    fileprivate init(inbound: NIOAsyncChannelInboundStream<EchoFrame>, outbound: NIOAsyncChannelOutboundWriter<String>) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    /// Sends one line and returns the server's answer to it.
    public mutating func send(_ line: String) async throws -> String {
        try await outbound.write(line)
        switch try await inbound.next() {
        case .line(let reply): return reply
        case .tooLong: throw EchoClientError.replyTooLong
        case nil: throw EchoClientError.connectionClosed
        }
    }
}

public enum EchoClientError: Error, Equatable, CustomStringConvertible {
    case connectionClosed
    case replyTooLong

    public var description: String {
        switch self {
        case .connectionClosed: "the server closed the connection"
        case .replyTooLong: "the server's reply was too long"
        }
    }
}

public enum EchoClient {
    /// Connects to `host:port`, runs `body` with the session, then closes the connection.
    public static func withSession<T: Sendable>(
        host: String, port: Int, maxLineLength: Int = 1 << 20,
        _ body: (inout EchoSession) async throws -> T
    ) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try channel.makeLineAsyncChannel(maxLineLength: maxLineLength) }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var session = EchoSession(inbound: inbound, outbound: outbound)
            return try await body(&session)
        }
    }
}

import NIOCore
import NIOPosix
import ReplogEcho

/// Just enough of the Redis protocol (RESP) for the baseline: `RPUSH` then `WAIT`, both
/// answered with an integer line (`:3`). Runs over the line codec of the echo service.
struct RedisConnection: ~Copyable {
    private var replies: NIOAsyncChannelInboundStream<EchoFrame>.AsyncIterator
    private let requests: NIOAsyncChannelOutboundWriter<String>

    static func withConnection(host: String, port: Int, _ body: (inout RedisConnection) async throws -> Void) async throws {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try channel.makeLineAsyncChannel(maxLineLength: 1 << 20) }
            }
        try await channel.executeThenClose { inbound, outbound in
            var connection = RedisConnection(replies: inbound.makeAsyncIterator(), requests: outbound)
            try await body(&connection)
        }
    }

    private init(replies: NIOAsyncChannelInboundStream<EchoFrame>.AsyncIterator, requests: NIOAsyncChannelOutboundWriter<String>) {
        self.replies = replies
        self.requests = requests
    }

    /// `RPUSH replog <payload>` and `WAIT <replicas> 0`, pipelined; nil when both succeed and
    /// the write reached `replicas` replicas.
    mutating func pushAndWait(payload: ByteBuffer, replicas: Int) async throws -> String? {
        let value = String(buffer: payload)
        let command = Self.command(["RPUSH", "replog", value]) + Self.command(["WAIT", "\(replicas)", "0"])
        // The line encoder adds the final "\n". (Drop it as a byte: in a Swift String
        // "\r\n" is one Character, and dropLast() would take both.)
        try await requests.write(String(decoding: command.utf8.dropLast(), as: UTF8.self))
        let pushed = try await nextLine()
        let reached = try await nextLine()
        guard pushed.hasPrefix(":") else { return "RPUSH answered \(pushed)" }
        guard let count = Int(reached.dropFirst()), reached.hasPrefix(":"), count >= replicas else {
            return "WAIT answered \(reached)"
        }
        return nil
    }

    private mutating func nextLine() async throws -> String {
        guard case .line(let line) = try await replies.next() else { throw RedisError.connectionClosed }
        return line
    }

    private static func command(_ parts: [String]) -> String {
        "*\(parts.count)\r\n" + parts.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
    }

    enum RedisError: Error { case connectionClosed }
}

import Foundation
import Logging
import NIOCore
import NIOPosix
import ReplogCore
import ServiceLifecycle
import Synchronization

/// Iteration 0: a TCP echo server.
///
/// Protocol: newline-delimited UTF-8 text. Each line is answered with one line,
/// `<server time, ISO-8601 with milliseconds, UTC> <the same text>`, for example
/// `2026-11-27T12:00:00.123Z hello`. A line longer than `maxLineLength` bytes is
/// answered with `error: line longer than N bytes was dropped`, and the connection
/// stays open. Every connection runs in its own task: a slow or idle client never
/// stalls another.
public struct EchoServer: Service {
    public static let defaultMaxLineLength = 64 * 1024

    public let host: String
    public let port: Int
    public let maxLineLength: Int
    private let logger: Logger
    private let onListening: @Sendable (Int) async -> Void

    /// - Parameters:
    ///   - port: 0 picks a free port; `onListening` receives the bound one.
    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        maxLineLength: Int = EchoServer.defaultMaxLineLength,
        logger: Logger = Logger(label: "replog.echo"),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.maxLineLength = maxLineLength
        self.logger = logger
        self.onListening = onListening
    }

    /// The reply to one line.
    public static func reply(to line: String, at date: Date = Date()) -> String {
        "\(date.iso8601WithMilliseconds) \(line)"
    }

    public func run() async throws {
        let maxLineLength = self.maxLineLength
        let accepted = AcceptedConnections()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = try channel.makeLineAsyncChannel(maxLineLength: maxLineLength)
                    accepted.add(connection)
                    return connection
                }
            }
        let boundPort = server.channel.localAddress?.port ?? port
        logger.info("echo server listening", metadata: ["replog.host": "\(host)", "replog.port": "\(boundPort)"])
        await onListening(boundPort)

        try await withGracefulShutdownHandler {
            try await server.executeThenClose { connections in
                // A discarding group: a plain task group would keep every finished
                // connection's result for the server's whole life.
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        accepted.remove(connection)
                        group.addTask { await handle(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
        await accepted.closeRemaining()
        logger.info("echo server stopped")
    }

    private func handle(_ connection: NIOAsyncChannel<EchoFrame, String>) async {
        let peer = connection.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        logger.info("client connected", metadata: ["replog.client": "\(peer)"])
        var lines = 0
        do {
            // Close open connections on shutdown too, so stopping never waits for idle clients.
            try await withGracefulShutdownHandler {
                try await connection.executeThenClose { inbound, outbound in
                    for try await frame in inbound {
                        switch frame {
                        case .line(let text):
                            lines += 1
                            try await outbound.write(Self.reply(to: text))
                        case .tooLong:
                            logger.info("line too long, dropped", metadata: ["replog.client": "\(peer)", "replog.max": "\(maxLineLength)"])
                            try await outbound.write("error: line longer than \(maxLineLength) bytes was dropped")
                        }
                    }
                }
            } onGracefulShutdown: {
                connection.channel.close(promise: nil)
            }
        } catch {
            logger.info("connection error", metadata: ["replog.client": "\(peer)", "replog.error": "\(error)"])
        }
        logger.info("client disconnected", metadata: ["replog.client": "\(peer)", "replog.lines": "\(lines)"])
    }
}

/// Connections NIO accepted that the accept loop has not taken yet.
///
/// When the server stops, NIO can drop a connection that was accepted but not yet handed
/// to the accept loop, and an `NIOAsyncChannel` dropped without `executeThenClose` traps
/// (swift-nio#2637). Holding each one here until the loop takes it lets shutdown close
/// the leftovers properly instead.
final class AcceptedConnections: Sendable {
    private let connections = Mutex<[ObjectIdentifier: NIOAsyncChannel<EchoFrame, String>]>([:])

    func add(_ connection: NIOAsyncChannel<EchoFrame, String>) {
        connections.withLock { $0[ObjectIdentifier(connection.channel)] = connection }
    }

    func remove(_ connection: NIOAsyncChannel<EchoFrame, String>) {
        _ = connections.withLock { $0.removeValue(forKey: ObjectIdentifier(connection.channel)) }
    }

    func closeRemaining() async {
        let leftovers = connections.withLock { connections in
            defer { connections.removeAll() }
            return Array(connections.values)
        }
        for connection in leftovers {
            try? await connection.executeThenClose { _, _ in }
        }
    }
}

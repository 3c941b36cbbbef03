import Foundation
import Logging
import NIOCore
import NIOPosix
import ReplogEcho
import ServiceLifecycle
import Testing

/// The echo service in process: a real server on 127.0.0.1, port 0.
@Suite(.timeLimit(.minutes(1)))
struct EchoServerTests {
    /// Runs an echo server for the duration of `body`, then shuts it down gracefully.
    private func withEchoServer(maxLineLength: Int = EchoServer.defaultMaxLineLength, _ body: @Sendable (Int) async throws -> Void) async throws {
        let (ports, portsContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = EchoServer(
            host: "127.0.0.1", port: 0, maxLineLength: maxLineLength,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        ) { port in portsContinuation.yield(port) }
        let group = ServiceGroup(services: [server], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    private func isEcho(_ reply: String, of text: String) -> Bool {
        reply.firstMatch(of: #/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z /#) != nil && reply.hasSuffix(" " + text)
    }

    @Test func echoesWithAMillisecondTimestamp() async throws {
        try await withEchoServer { port in
            let reply = try await EchoClient.withSession(host: "127.0.0.1", port: port) { try await $0.send("hello") }
            #expect(isEcho(reply, of: "hello"), "\(reply)")
        }
    }

    @Test func timestampFormatIsISO8601WithMillisecondsInUTC() {
        let date = Date(timeIntervalSince1970: 1_795_780_800.1234)  // 2026-11-27T12:00:00.1234Z
        #expect(EchoServer.reply(to: "x", at: date) == "2026-11-27T12:00:00.123Z x")
    }

    /// 50 clients at once, each sending several lines, get exactly their own lines back, in order.
    @Test func fiftyConcurrentClientsEachGetTheirOwnLines() async throws {
        try await withEchoServer { port in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<50 {
                    group.addTask {
                        try await EchoClient.withSession(host: "127.0.0.1", port: port) { session in
                            for line in 0..<5 {
                                let text = "client \(client) line \(line)"
                                let reply = try await session.send(text)
                                #expect(self.isEcho(reply, of: text), "\(reply)")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    /// An idle client that never sends a newline does not stall anyone else.
    @Test func anIdleClientDoesNotStallOthers() async throws {
        try await withEchoServer { port in
            let idle = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            try await idle.writeAndFlush(ByteBuffer(string: "no newline yet"))
            let reply = try await EchoClient.withSession(host: "127.0.0.1", port: port) { try await $0.send("still fast") }
            #expect(isEcho(reply, of: "still fast"))
            try await idle.close()
        }
    }

    /// An over-long line gets an error line; the same connection keeps working.
    @Test func overLongLineGetsAnErrorAndTheConnectionSurvives() async throws {
        try await withEchoServer(maxLineLength: 1024) { port in
            try await EchoClient.withSession(host: "127.0.0.1", port: port) { session in
                let error = try await session.send(String(repeating: "x", count: 5000))
                #expect(error == "error: line longer than 1024 bytes was dropped")
                let reply = try await session.send("after")
                #expect(self.isEcho(reply, of: "after"))
            }
        }
    }

    /// Graceful shutdown closes idle connections instead of waiting for them.
    @Test func shutdownDoesNotWaitForIdleClients() async throws {
        try await withEchoServer { port in
            _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
        }
    }
}

import ArgumentParser
import Logging
import NIOPosix
import ReplogEcho
import ServiceLifecycle

struct EchoServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo-server",
        abstract: "Iteration 0: a TCP echo server. Each line comes back as `<ISO-8601 time> <line>`.")

    @Option(help: "Address to bind. Env: REPLOG_HOST.")
    var host: String = Environment.string("REPLOG_HOST") ?? "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one). Env: REPLOG_PORT.")
    var port: Int = Environment.int("REPLOG_PORT") ?? 8080

    @Option(help: "Longest accepted line in bytes; longer lines get an error line. Env: REPLOG_MAX_LINE_LENGTH.")
    var maxLineLength: Int = Environment.int("REPLOG_MAX_LINE_LENGTH") ?? EchoServer.defaultMaxLineLength

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap(label: "replog.echo")
        let host = host
        let server = EchoServer(host: host, port: port, maxLineLength: maxLineLength, logger: logger) { port in
            announce("listening on \(host):\(port)")
        }
        var configuration = ServiceGroupConfiguration(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(5)
        try await ServiceGroup(configuration: configuration).run()
    }
}

struct EchoClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo-client",
        abstract: "Iteration 0: talk to an echo server.",
        discussion: """
            With a MESSAGE, send it, print the echo and exit. Without, send every line of standard input
            (a terminal or a pipe) and print each echo, until end of input or a line `quit`.
            """)

    @Argument(help: "Server host.") var host: String
    @Argument(help: "Server port.") var port: Int
    @Argument(help: "Message to send once (words are joined with spaces).") var message: [String] = []

    func run() async throws {
        let oneShot = message.isEmpty ? nil : message.joined(separator: " ")
        do {
            try await EchoClient.withSession(host: host, port: port) { session in
                if let oneShot {
                    announce(try await session.send(oneShot))
                    return
                }
                // readLine blocks, so it runs on NIO's thread pool instead of a concurrency thread.
                while let line = try await NIOThreadPool.singleton.runIfActive({ readLine(strippingNewline: true) }),
                      line != "quit" {
                    announce(try await session.send(line))
                }
            }
        } catch {
            throw fail("echo-client: \(host):\(port): \(error)")
        }
    }
}

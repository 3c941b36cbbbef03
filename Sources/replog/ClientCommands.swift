import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import ReplogClient
import ReplogCore
import Synchronization

/// Where the client commands find the cluster.
struct ClientOptions: ParsableArguments {
    @Option(help: "The master's base URL. Env: REPLOG_MASTER.")
    var master: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    @OptionGroup var token: TokenOption
}

/// The client token, for nodes started with `--client-token`.
struct TokenOption: ParsableArguments {
    @Option(help: "Client token to send (Authorization: Bearer …), for nodes started with --client-token. Env: REPLOG_CLIENT_TOKEN (the first).")
    var token: String? = Environment.list("REPLOG_CLIENT_TOKEN").first
}

/// A tiny JSON-over-HTTP client for the CLI commands; bodies are the API's own types
/// (`ReplogCore/PublicWire.swift`).
enum API {
    struct Reply {
        let status: UInt
        let body: Data
        var text: String { String(decoding: body, as: UTF8.self) }

        /// The body as `T`, or `nil` when it is not one (an error answer, another program).
        func decode<T: Decodable>(_ type: T.Type) -> T? { try? JSONDecoder().decode(type, from: body) }
    }

    static func get(_ url: String) async throws -> Reply {
        let request = HTTPClientRequest(url: url)
        do { return try await send(request) } catch {
            throw fail("cannot reach \(request.url): \(ReplogClient.reason(for: error))")
        }
    }

    static func post(_ url: String, _ body: some Encodable) async throws -> Reply {
        let request = try postRequest(url, body)
        do { return try await send(request) } catch {
            throw fail("cannot reach \(request.url): \(ReplogClient.reason(for: error))")
        }
    }

    /// A POST that may fail quietly (nil): for retries that expect some to fail.
    static func tryPost(_ url: String, _ body: some Encodable) async -> Reply? {
        guard let request = try? postRequest(url, body) else { return nil }
        return try? await send(request)
    }

    private static func postRequest(_ url: String, _ body: some Encodable) throws -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(body)))
        return request
    }

    private static func send(_ request: HTTPClientRequest) async throws -> Reply {
        // An append may wait long for its write concern: no deadline of our own.
        // One attempt to connect (see `ReplogClient.connections`).
        let response = try await ReplogClient.connections.execute(request, timeout: .hours(1))
        let body = try await response.body.collect(upTo: 1 << 30)
        return Reply(status: response.status.code, body: Data(buffer: body))
    }
}

/// The client library as the commands use it: one node, one attempt, so that a command
/// against a dead port says so at once (`ReplogClient` in an application retries).
extension ReplogClient {
    static func command(_ node: String, _ token: TokenOption) -> ReplogClient {
        ReplogClient(nodes: [node], configuration: .init(retryFor: .zero, token: token.token))
    }

    /// Prints what a failed call means and ends the command with status 1.
    static func exit(_ error: any Error) -> any Error {
        switch error {
        case ReplogClientError.refused(_, let answer), ReplogClientError.writeConcernTimedOut(_, let answer):
            print(answer)  // the node's own JSON error, as the API gives it
            return ExitCode(1)
        default:
            return fail("\(error)")
        }
    }
}

/// The JSON the commands print: compact, keys sorted, as the nodes write it.
func printJSON(_ value: some Encodable, pretty: Bool = false) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self))
}

struct AppendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append",
        abstract: "Append a message and print the master's answer (exit 1 unless it is 201).")

    @Argument(help: "The message text.")
    var message: String

    @Option(help: "Write concern: nodes that must hold the message before the answer (default: all).")
    var w: Int?

    @Option(help: "Idempotency key: repeating an append with the same id appends nothing.")
    var id: String?

    @Option(help: "Stop waiting for acknowledgements after this many milliseconds (answer 504).")
    var timeout: Int?

    @OptionGroup var client: ClientOptions

    func run() async throws {
        do {
            let result = try await ReplogClient.command(client.master, client.token)
                .append(message, w: w, id: id, timeout: timeout.map { .milliseconds($0) })
            printJSON(result)
        } catch {
            throw ReplogClient.exit(error)
        }
    }
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List a node's messages in total order.")

    @Option(help: "Base URL of the node to read (master or secondary).")
    var node: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    @OptionGroup var token: TokenOption

    @Option(help: "What to show: committed (what no failover can take back), local (all the node holds), linearizable (the master, confirmed by a majority).")
    var read: ReadLevel = .committed

    @Flag(help: "Print the raw JSON.")
    var json = false

    func run() async throws {
        let messages: [LogEntry]
        do { messages = try await ReplogClient.command(node, token).list(read: read) } catch { throw ReplogClient.exit(error) }
        if json { return printJSON(MessagesPage(messages: messages)) }
        for entry in messages { print("\(entry.seq)\t\(entry.message)") }
    }
}

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "Show a node's health (pretty-printed JSON).")

    @Option(help: "Base URL of the node (default: the master).")
    var node: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    @OptionGroup var token: TokenOption

    func run() async throws {
        let health: NodeHealth
        do { health = try await ReplogClient.command(node, token).health() } catch { throw ReplogClient.exit(error) }
        switch health {
        case .master(let report): printJSON(report, pretty: true)
        case .secondary(let report): printJSON(report, pretty: true)
        }
    }
}

struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print a node's messages as they arrive, like tail -f; Ctrl-C ends it.",
        discussion: """
            Follows GET /messages/stream. When the connection drops (the node restarts, the \
            network fails) it reconnects after the last seq it printed: no gap, no repeat.
            """)

    @Option(help: "First seq to print (default: the whole log, as far as retention kept it).")
    var from = 1

    @Option(help: "Base URL of the node to follow (master or secondary).")
    var node: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    @Option(help: "What to show: committed (what no failover can take back), local (all the node holds), linearizable (the master, confirmed by a majority at the start).")
    var read: ReadLevel = .committed

    @OptionGroup var token: TokenOption

    func validate() throws {
        guard from >= 1 else { throw ValidationError("--from must be a seq, 1 or more") }
    }

    func run() async throws {
        // Say once per outage why the stream stopped; the follower retries until it is back.
        let lastReason = Mutex<String?>(nil)
        let follower = ReplogClient.command(node, token).follow(from: from, read: read) { reason, next in
            let isNew = lastReason.withLock { last in
                defer { last = reason }
                return last != reason
            }
            if isNew { FileHandle.standardError.write(Data("replog tail: \(reason); reconnecting from seq \(next)…\n".utf8)) }
        }
        do {
            for try await entry in follower {
                lastReason.withLock { $0 = nil }
                // At once, even into a pipe (`replog tail | grep …`).
                FileHandle.standardOutput.write(Data("\(entry.seq)\t\(entry.message)\n".utf8))
            }
        } catch {
            throw ReplogClient.exit(error)
        }
    }
}

extension ReadLevel: ExpressibleByArgument {}

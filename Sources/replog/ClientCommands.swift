import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import ReplogCore

/// Where the client commands find the cluster.
struct ClientOptions: ParsableArguments {
    @Option(help: "The master's base URL. Env: REPLOG_MASTER.")
    var master: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"
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
        try await send(HTTPClientRequest(url: url))
    }

    static func post(_ url: String, _ body: some Encodable) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(body)))
        return try await send(request)
    }

    /// One attempt to connect, for 5 s at most: `HTTPClient.shared` would retry a refused
    /// connection until the request's deadline, and a command against a dead port hung.
    static let configuration: HTTPClient.Configuration = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        return configuration
    }()

    private static func send(_ request: HTTPClientRequest) async throws -> Reply {
        do {
            return try await HTTPClient.withHTTPClient(configuration: configuration) { client in
                // An append may wait long for its write concern: no deadline of our own.
                let response = try await client.execute(request, timeout: .hours(1))
                let body = try await response.body.collect(upTo: 1 << 30)
                return Reply(status: response.status.code, body: Data(buffer: body))
            }
        } catch {
            throw fail("cannot reach \(request.url): \(plainReason(error))")
        }
    }

    /// One plain phrase for why a request failed, instead of the transport's own words.
    static func plainReason(_ error: any Error) -> String {
        let text = "\(error)"
        if (error as? IOError)?.errnoCode == ECONNREFUSED || text.contains("Connection refused") {
            return "connection refused (is a replog node running there?)"
        }
        if let clientError = error as? HTTPClientError {
            switch clientError {
            case .connectTimeout: return "no connection within the timeout (is the host reachable?)"
            case .deadlineExceeded, .readTimeout: return "no answer in time"
            case .remoteConnectionClosed: return "the node closed the connection before it answered"
            default: break
            }
        }
        return text
    }

    static func pretty(_ data: Data) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: data),
              let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        else { return String(decoding: data, as: UTF8.self) }
        return String(decoding: pretty, as: UTF8.self)
    }
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
        let body = AppendRequest(message: message, w: w, id: id, timeout: timeout.map { .milliseconds($0) })
        let reply = try await API.post(client.master + "/messages", body)
        print(reply.text)
        if reply.status != 201 { throw ExitCode(1) }
    }
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List a node's messages in total order.")

    @Option(help: "Base URL of the node to read (master or secondary).")
    var node: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    @Flag(help: "Print the raw JSON.")
    var json = false

    func run() async throws {
        let reply = try await API.get(node + "/messages")
        guard reply.status == 200 else {
            print(reply.text)
            throw ExitCode(1)
        }
        if json { return print(reply.text) }
        guard let page = reply.decode(MessagesPage.self) else { throw fail("\(node)/messages did not answer like a replog node") }
        for entry in page.messages { print("\(entry.seq)\t\(entry.message)") }
    }
}

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "Show a node's health (pretty-printed JSON).")

    @Option(help: "Base URL of the node (default: the master).")
    var node: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    func run() async throws {
        let reply = try await API.get(node + "/health")
        print(API.pretty(reply.body))
        if reply.status != 200 { throw ExitCode(1) }
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

    @Option(help: "First seq to print (default: the whole log).")
    var from = 1

    @Option(help: "Base URL of the node to follow (master or secondary).")
    var node: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    func validate() throws {
        guard from >= 1 else { throw ValidationError("--from must be a seq, 1 or more") }
    }

    func run() async throws {
        var next = from
        var outage: String?
        var configuration = API.configuration
        // The node sends a comment every 15 s while idle: 45 s of silence is a dead connection.
        configuration.timeout.read = .seconds(45)
        /// Says once per outage why the stream stopped; the loop retries until it is back.
        func lost(_ reason: String) {
            guard outage == nil else { return }
            outage = reason
            FileHandle.standardError.write(Data("replog tail: \(node): \(reason); reconnecting from seq \(next)…\n".utf8))
        }
        try await HTTPClient.withHTTPClient(configuration: configuration) { client in
            while true {
                do {
                    let request = HTTPClientRequest(url: node + "/messages/stream?from=\(next)")
                    let response = try await client.execute(request, timeout: .hours(24 * 365))
                    guard response.status == .ok else {
                        let body = try await response.body.collect(upTo: 1 << 20)
                        // A refusal (400) does not get better by asking again.
                        throw fail("\(node)/messages/stream answered \(response.status.code): \(String(buffer: body))")
                    }
                    if outage != nil {
                        FileHandle.standardError.write(Data("replog tail: reconnected to \(node) at seq \(next)\n".utf8))
                        outage = nil
                    }
                    var parser = ServerSentEvents.Parser()
                    for try await buffer in response.body {
                        var printed = ""
                        for event in parser.feed(buffer.readableBytesView) {
                            guard let entry = try? JSONDecoder().decode(LogEntry.self, from: Data(event.data.utf8)) else {
                                throw fail("\(node)/messages/stream sent an event that is not a log entry: \(event.data)")
                            }
                            guard entry.seq == next else { continue }  // never a repeat; a gap never comes
                            printed += "\(entry.seq)\t\(entry.message)\n"
                            next += 1
                        }
                        if !printed.isEmpty {
                            // At once, even into a pipe (`replog tail | grep …`).
                            FileHandle.standardOutput.write(Data(printed.utf8))
                        }
                    }
                    lost("the node ended the stream")
                } catch let exit as ExitCode {
                    throw exit
                } catch {
                    lost(API.plainReason(error))
                }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}

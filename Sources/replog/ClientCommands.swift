import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Where the client commands find the cluster.
struct ClientOptions: ParsableArguments {
    @Option(help: "The master's base URL. Env: REPLOG_MASTER.")
    var master: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"
}

/// A tiny JSON-over-HTTP client for the CLI commands.
enum API {
    struct Reply {
        let status: UInt
        let body: Data
        var json: Any? { try? JSONSerialization.jsonObject(with: body) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func get(_ url: String) async throws -> Reply {
        try await send(HTTPClientRequest(url: url))
    }

    static func post(_ url: String, json: [String: Any]) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: json)))
        return try await send(request)
    }

    private static func send(_ request: HTTPClientRequest) async throws -> Reply {
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .hours(1))
            let body = try await response.body.collect(upTo: 1 << 30)
            return Reply(status: response.status.code, body: Data(buffer: body))
        } catch {
            throw fail("cannot reach \(request.url): \(error)")
        }
    }

    static func pretty(_ data: Data) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: data),
              let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        else { return String(decoding: data, as: UTF8.self) }
        return String(decoding: pretty, as: UTF8.self)
    }
}

struct Append: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
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
        var body: [String: Any] = ["message": message]
        if let w { body["w"] = w }
        if let id { body["id"] = id }
        if let timeout { body["timeout"] = timeout }
        let reply = try await API.post(client.master + "/messages", json: body)
        print(reply.text)
        if reply.status != 201 { throw ExitCode(1) }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a node's messages in total order.")

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
        let messages = (reply.json as? [String: Any])?["messages"] as? [[String: Any]] ?? []
        for entry in messages {
            print("\(entry["seq"] ?? "?")\t\(entry["message"] ?? "")")
        }
    }
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a node's health (pretty-printed JSON).")

    @Option(help: "Base URL of the node (default: the master).")
    var node: String = Environment.string("REPLOG_MASTER") ?? "http://127.0.0.1:5000"

    func run() async throws {
        let reply = try await API.get(node + "/health")
        print(API.pretty(reply.body))
        if reply.status != 200 { throw ExitCode(1) }
    }
}

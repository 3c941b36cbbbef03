import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization
import Testing

/// Real `replog` processes on 127.0.0.1, each on a port the OS picked, torn down
/// (SIGKILL) when the test ends, whatever happened.
final class LocalCluster: Sendable {
    /// Fast failure detection so tests wait milliseconds, not seconds.
    static let fastHeartbeats = ["--heartbeat-interval", "100ms", "--suspect-after", "2", "--unhealthy-after", "3"]

    private let processes = Mutex<[NodeProcess]>([])

    /// Starts `replog ARGUMENTS` and waits until it listens; returns it and its base URL.
    @discardableResult
    func start(_ arguments: [String]) async throws -> (process: NodeProcess, url: String) {
        let process = try await NodeProcess(arguments)
        processes.withLock { $0.append(process) }
        return (process, try await process.waitUntilListening())
    }

    func startSecondary(port: Int = 0, _ extra: [String] = []) async throws -> (process: NodeProcess, url: String) {
        try await start(["secondary", "--port", "\(port)", "--log-level", "debug"] + extra)
    }

    func startMaster(secondaries: [String], _ extra: [String] = LocalCluster.fastHeartbeats) async throws -> (process: NodeProcess, url: String) {
        try await start(["master", "--port", "0", "--log-level", "debug"] + secondaries.flatMap { ["--secondary", $0] } + extra)
    }

    /// Every node's output, to attach to a failing expectation.
    var logs: String {
        processes.withLock { $0.map { "== replog \($0.arguments.joined(separator: " "))\n\($0.log)" }.joined(separator: "\n") }
    }

    deinit {
        for process in processes.withLock({ $0 }) { process.signal(SIGKILL) }
    }
}

/// JSON over HTTP for tests.
enum HTTP {
    struct Reply: Sendable {
        let status: Int
        let body: Data
        var json: [String: any Sendable] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: any Sendable]) ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func get(_ url: String, timeout: Duration = .seconds(60)) async throws -> Reply {
        try await send(HTTPClientRequest(url: url), timeout: timeout)
    }

    /// Follows redirects (`307` to the master), as `curl -L` does. A short `timeout` also
    /// bounds the retries of a refused connection (the shared client retries until then).
    static func post(_ url: String, _ json: [String: any Sendable], timeout: Duration = .seconds(60)) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: json)))
        return try await send(request, timeout: timeout)
    }

    private static func send(_ request: HTTPClientRequest, timeout: Duration = .seconds(60)) async throws -> Reply {
        let response = try await HTTPClient.shared.execute(request, timeout: .init(timeout))
        let body = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), body: Data(buffer: body))
    }

    /// The messages a node lists, as (seq, message) pairs.
    /// - Parameter read: the read level (`?read=`), the node's default when nil.
    static func messages(_ node: String, read: String? = nil) async throws -> [Entry] {
        let list = try await get(node + "/messages" + (read.map { "?read=\($0)" } ?? "")).json["messages"] as? [[String: any Sendable]] ?? []
        return list.map { Entry(seq: $0["seq"] as? Int ?? -1, message: $0["message"] as? String ?? "") }
    }

    struct Entry: Equatable, Sendable, CustomStringConvertible {
        let seq: Int
        let message: String
        var description: String { "\(seq):\(message)" }
    }
}

/// Polls `condition` every 20 ms until it holds, or fails after `limit`. For conditions
/// about other processes, where there is no event to await.
func eventually(
    within limit: Duration = .seconds(20), _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out after \(limit) waiting until \(what)", sourceLocation: sourceLocation)
    throw CancellationError()
}

/// A value shared between a test's tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

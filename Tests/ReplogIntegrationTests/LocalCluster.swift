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
        let process = try NodeProcess(arguments)
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

/// A port that was free a moment ago, for a node that must be named before it starts.
func freePort() throws -> Int {
    guard let port = bindAndRelease(port: 0) else { throw POSIXError(.EADDRINUSE) }
    return port
}

/// The first of `count` consecutive ports that were free a moment ago (`replog cluster`
/// puts its secondaries on the ports after the master's).
func freePorts(_ count: Int) throws -> Int {
    for _ in 0..<50 {
        let base = try freePort()
        if base + count <= 65535, (1..<count).allSatisfy({ bindAndRelease(port: base + $0) != nil }) { return base }
    }
    throw POSIXError(.EADDRINUSE)
}

/// Binds 127.0.0.1:`port` (0 = any) and lets go at once; the port bound, or nil.
private func bindAndRelease(port: Int) -> Int? {
    let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(socket, pointer, length) == 0 && getsockname(socket, pointer, &length) == 0
        }
    }
    return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
}

/// JSON over HTTP for tests.
enum HTTP {
    struct Reply: Sendable {
        let status: Int
        let body: Data
        var json: [String: any Sendable] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: any Sendable]) ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    static func get(_ url: String) async throws -> Reply {
        try await send(HTTPClientRequest(url: url))
    }

    static func post(_ url: String, _ json: [String: any Sendable]) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: json)))
        return try await send(request)
    }

    private static func send(_ request: HTTPClientRequest) async throws -> Reply {
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), body: Data(buffer: body))
    }

    /// The messages a node lists, as (seq, message) pairs.
    static func messages(_ node: String) async throws -> [Entry] {
        let list = try await get(node + "/messages").json["messages"] as? [[String: any Sendable]] ?? []
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

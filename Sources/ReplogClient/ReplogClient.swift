import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import ReplogCore

/// A replog cluster as an application sees it: append, read, follow.
///
/// ```swift
/// let log = ReplogClient(nodes: ["http://127.0.0.1:5000", "http://127.0.0.1:5001"])
/// let appended = try await log.append("order 42 paid", w: 2)      // retried safely: it carries an id
/// for try await entry in log.follow(from: 1) { print(entry.seq, entry.message) }
/// ```
///
/// Give it every node you know: calls go to the first that does the job, and an append
/// finds the master by itself (a secondary refuses appends). Appends carry an idempotency
/// key (a new UUID unless you pass one), so the client retries them without ever appending
/// twice: on connection failures, `503` (no quorum yet), `500`, and nodes that are not the
/// master, until `Configuration.retryFor` has passed. Answers that will not change by
/// asking again (`400`, `409`, `413`) are thrown at once as `ReplogClientError.refused`.
public struct ReplogClient: Sendable {
    public struct Configuration: Sendable {
        /// How long one call keeps trying before it throws `.unavailable` (0: one attempt per node).
        public var retryFor: Duration
        /// The pause after every node failed once; it doubles up to `maxRetryDelay`.
        public var firstRetryDelay: Duration
        public var maxRetryDelay: Duration
        /// The client token of nodes started with `--client-token`, sent as
        /// `Authorization: Bearer <token>` with every request.
        public var token: String?

        public init(
            retryFor: Duration = .seconds(30), firstRetryDelay: Duration = .milliseconds(50), maxRetryDelay: Duration = .seconds(1),
            token: String? = nil
        ) {
            self.retryFor = retryFor
            self.firstRetryDelay = firstRetryDelay
            self.maxRetryDelay = maxRetryDelay
            self.token = token
        }
    }

    /// Base URLs of the nodes, e.g. `http://127.0.0.1:5000`, in the order to try them.
    public let nodes: [String]
    public let configuration: Configuration
    let http: HTTPClient

    /// - Parameter httpClient: the connections to use; by default one shared client that
    ///   tries each connection once, for 5 s at most (`HTTPClient.shared` would retry a
    ///   refused connection until the request's deadline, instead of trying the next node).
    public init(nodes: [String], configuration: Configuration = Configuration(), httpClient: HTTPClient = ReplogClient.connections) {
        precondition(!nodes.isEmpty, "a ReplogClient needs at least one node URL")
        self.nodes = nodes.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.configuration = configuration
        self.http = httpClient
    }

    /// The connections clients share unless given others; never shut down, like
    /// `HTTPClient.shared`.
    public static let connections = makeConnections()

    /// Connections that try each node once, for 5 s at most (and give up on a response
    /// silent for `readTimeout`, if one is given).
    static func makeConnections(readTimeout: TimeAmount? = nil) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        configuration.timeout.read = readTimeout
        return HTTPClient(eventLoopGroup: NIOSingletons.posixEventLoopGroup, configuration: configuration)
    }

    // MARK: The calls

    /// Appends `message` and returns where it landed, once `w` nodes hold it (the master
    /// counts; `nil`: every node).
    /// - Parameters:
    ///   - id: the idempotency key; a retry with the same key appends nothing and gets the
    ///     same answer. A new UUID by default; `nil` appends without one (and is not retried
    ///     after a request may have reached the master).
    ///   - timeout: how long the master may wait for `w` acknowledgements before it answers
    ///     `504` (`ReplogClientError.writeConcernTimedOut`); the message stays in the log.
    public func append(_ message: String, w: Int? = nil, id: String? = UUID().uuidString, timeout: Duration? = nil) async throws -> AppendResult {
        try await post(AppendRequest(message: message, w: w, id: id, timeout: timeout), answer: AppendResult.self)
    }

    /// Appends `batch` atomically (all of it at consecutive seqs, or none of it) and returns
    /// where it went, once `w` nodes hold all of it; retried like `append(_:w:id:timeout:)`,
    /// with one key for the whole batch. At most 10,000 messages, and the master's
    /// `--max-body` bytes in all.
    public func append(batch: [String], w: Int? = nil, id: String? = UUID().uuidString, timeout: Duration? = nil) async throws -> BatchAppendResult {
        try await post(AppendRequest(batch: batch, w: w, id: id, timeout: timeout), answer: BatchAppendResult.self)
    }

    /// `POST /messages` through the master, with retries where they cannot append twice.
    private func post<Answer: Decodable & Sendable>(_ append: AppendRequest, answer: Answer.Type) async throws -> Answer {
        let (id, timeout) = (append.id, append.timeout)
        let body = try JSONEncoder().encode(append)
        return try await withRetries(path: "/messages", retryAfterSending: id != nil) { node in
            var request = request(node + "/messages")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
            // An append may wait for its write concern as long as the master lets it.
            let (status, answer) = try await exchange(request, within: (timeout ?? .seconds(3600)) + .seconds(10))
            switch status {
            case 201: return .done(try decode(Answer.self, answer, from: node))
            case 504: throw ReplogClientError.writeConcernTimedOut(seq: seq(in: answer), answer: text(answer))
            case 405, 307, 500...503: return .tryAgain(text(answer))  // not the master; no quorum; a failed disk
            default: throw ReplogClientError.refused(status: status, answer: text(answer))
            }
        }
    }

    /// Up to `limit` messages from `from` on (all of them by default), from the first node
    /// that answers: the master, or a secondary's contiguous prefix.
    /// - Parameter read: `committed` (the default) shows only what no failover can take
    ///   back; `local` what the node holds; `linearizable` asks the master to confirm it
    ///   still is one first, so the list holds every write a majority acknowledged before.
    public func list(from: Int = 1, limit: Int? = nil, read: ReadLevel = .committed) async throws -> [LogEntry] {
        let query = "/messages?from=\(from)" + (limit.map { "&limit=\($0)" } ?? "") + Self.query(read)
        return try await withRetries(path: query, retryAfterSending: true) { node in
            let (status, answer) = try await exchange(request(node + query), within: .seconds(60))
            switch status {
            case 200: return .done(try decode(MessagesPage.self, answer, from: node).messages)
            case 307, 500...503: return .tryAgain(text(answer))  // a linearizable read on a node that is not the master
            default: throw ReplogClientError.refused(status: status, answer: text(answer))
            }
        }
    }

    /// What a node says of itself and (the master) of the cluster: `/health`.
    public func health(of node: String? = nil) async throws -> NodeHealth {
        let client = node.map { ReplogClient(nodes: [$0], configuration: configuration, httpClient: http) } ?? self
        return try await client.withRetries(path: "/health", retryAfterSending: true) { node in
            let (status, answer) = try await exchange(request(node + "/health"), within: .seconds(30))
            guard status == 200 else { throw ReplogClientError.refused(status: status, answer: text(answer)) }
            if let master = try? JSONDecoder().decode(MasterHealthReport.self, from: answer), master.role == "master" {
                return .done(.master(master))
            }
            return .done(.secondary(try decode(SecondaryHealthReport.self, answer, from: node)))
        }
    }

    /// Every message from `from` on, then each new one as it arrives, for as long as you
    /// iterate: `GET /messages/stream` on the first node that answers. A dropped
    /// connection is picked up again after the last message handed out (on the next node,
    /// if that one is gone), so the sequence has no gap and no repeat. It ends only when
    /// its task is cancelled, or throws when a node refuses the request itself.
    /// - Parameter onInterruption: told why the stream stopped each time it does, and the
    ///   seq it resumes at (for a program that wants to say so).
    /// - Parameter read: what the stream shows (`list(from:limit:read:)`).
    public func follow(
        from: Int = 1, read: ReadLevel = .committed, onInterruption: (@Sendable (_ reason: String, _ resumingAt: Int) -> Void)? = nil
    ) -> LogFollower {
        LogFollower(client: self, from: from, read: read, onInterruption: onInterruption)
    }

    /// The query part that asks for `level` (none for the default).
    static func query(_ level: ReadLevel) -> String { level == .committed ? "" : "&read=\(level.rawValue)" }

    // MARK: Attempts and retries

    enum Attempt<Value> {
        case done(Value)
        /// The node answered, but another node, or the same one later, may do better.
        case tryAgain(String)
    }

    /// Runs `attempt` on each node in turn until one is done, pausing after every round,
    /// until `retryFor` has passed. A node that cannot be reached is a reason to try the
    /// next; an error `attempt` throws is final.
    func withRetries<Value>(
        path: String, retryAfterSending: Bool, _ attempt: (String) async throws -> Attempt<Value>
    ) async throws -> Value {
        let deadline = ContinuousClock.now + configuration.retryFor
        var delay = configuration.firstRetryDelay
        var lastReason = "no node was tried"
        while true {
            for node in nodes {
                do {
                    switch try await attempt(node) {
                    case .done(let value): return value
                    case .tryAgain(let reason): lastReason = "\(node)\(path): \(reason)"
                    }
                } catch let error as ReplogClientError {
                    throw error
                } catch let error as CancellationError {
                    throw error
                } catch {
                    lastReason = "cannot reach \(node)\(path): \(Self.reason(for: error))"
                    if !retryAfterSending, !Self.failedBeforeSending(error) { throw ReplogClientError.unavailable(lastReason) }
                }
            }
            guard ContinuousClock.now + delay < deadline else { throw ReplogClientError.unavailable(lastReason) }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, configuration.maxRetryDelay)
        }
    }

    /// A request to `url`, with the client token when there is one.
    func request(_ url: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        if let token = configuration.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        return request
    }

    /// One request; its status and whole body.
    func exchange(_ request: HTTPClientRequest, within limit: Duration) async throws -> (Int, Data) {
        let response = try await http.execute(request, timeout: .nanoseconds(limit.nanoseconds))
        let body = try await response.body.collect(upTo: 1 << 30)
        return (Int(response.status.code), Data(buffer: body))
    }

    /// One plain phrase for why a request failed, instead of the transport's own words.
    public static func reason(for error: any Error) -> String {
        if failedBeforeSending(error) { return "connection refused (is a replog node running there?)" }
        if let clientError = error as? HTTPClientError {
            switch clientError {
            case .connectTimeout: return "no connection within the timeout (is the host reachable?)"
            case .deadlineExceeded, .readTimeout: return "no answer in time"
            case .remoteConnectionClosed: return "the node closed the connection before it answered"
            default: break
            }
        }
        return "\(error)"
    }

    /// Whether the request surely never reached a node (so even a write without an id may
    /// be sent again).
    static func failedBeforeSending(_ error: any Error) -> Bool {
        (error as? IOError)?.errnoCode == ECONNREFUSED || "\(error)".contains("Connection refused")
    }

    func decode<T: Decodable>(_ type: T.Type, _ answer: Data, from node: String) throws -> T {
        guard let value = try? JSONDecoder().decode(type, from: answer) else {
            throw ReplogClientError.unexpectedAnswer("\(node) did not answer like a replog node: \(text(answer))")
        }
        return value
    }

    func text(_ answer: Data) -> String { String(decoding: answer, as: UTF8.self) }

    func seq(in answer: Data) -> Int? {
        (try? JSONSerialization.jsonObject(with: answer) as? [String: Any])?["seq"] as? Int
    }
}

/// A node's `/health`, by its role.
public enum NodeHealth: Sendable, Equatable {
    case master(MasterHealthReport)
    case secondary(SecondaryHealthReport)

    /// The highest seq the node lists.
    public var seq: Int {
        switch self {
        case .master(let report): report.seq
        case .secondary(let report): report.seq
        }
    }
}

public enum ReplogClientError: Error, Equatable, CustomStringConvertible {
    /// The cluster answered, and asking again will not change it: bad input (`400`), an
    /// id reused with another message (`409`), a body too large (`413`). `answer` is its
    /// JSON error.
    case refused(status: Int, answer: String)
    /// The master waited the append's `timeout` without `w` acknowledgements (`504`). The
    /// message is in the log at `seq` and keeps replicating; retry with the same id to
    /// wait again.
    case writeConcernTimedOut(seq: Int?, answer: String)
    /// No node did the job within `Configuration.retryFor`; the last reason.
    case unavailable(String)
    /// A node answered with something that is not replog's.
    case unexpectedAnswer(String)

    public var description: String {
        switch self {
        case .refused(let status, let answer): "refused (\(status)): \(answer)"
        case .writeConcernTimedOut(_, let answer): "write concern not met in time (504): \(answer)"
        case .unavailable(let reason): reason
        case .unexpectedAnswer(let reason): reason
        }
    }
}

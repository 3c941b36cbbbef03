import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import ReplogCore
import ReplogStorage
import Synchronization

/// Replication over HTTP/1.1 on keep-alive connections (`PeerConnections`). A batch
/// travels as the log's own binary records (`RecordFraming`), checksums included, so the
/// master encodes no JSON and the secondary parses none; the answer is JSON.
public struct HTTPTransport: ReplicationTransport {
    let connections = PeerConnections()
    /// Signs every request when the cluster has a secret.
    let secret: ClusterSecret?
    /// With failover: the master's epoch stamp for each peer (none while not the master).
    public let stamps = EpochStamps()

    public init(secret: ClusterSecret? = nil) {
        self.secret = secret
    }

    public func replicate(
        _ batch: RecordBatch, of logID: String, to peer: String, timeout: Duration
    ) async throws -> ReplicaState {
        var extra = [("Content-Type", InternalWire.recordsContentType), (InternalWire.logHeader, logID)]
        if let start = batch.start { extra.append((InternalWire.logStartHeader, start.headerValue)) }
        // The log's start (if any) is signed with the log id.
        let signedLog = batch.start.map { "\(logID) \($0.headerValue)" } ?? logID
        let headers = headers(.POST, InternalWire.replicatePath, to: peer, log: signedLog, body: batch.buffer.readableBytesView, extra)
        return try await send(.POST, InternalWire.replicatePath, to: peer, headers: headers, body: batch.buffer, timeout: timeout)
    }

    public func executor(for peer: String) -> (any TaskExecutor)? {
        connections.executor(for: peer)
    }

    public func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState {
        try await send(.GET, InternalWire.replicatePath, to: peer, headers: headers(.GET, InternalWire.replicatePath, to: peer), timeout: timeout)
    }

    public func hash(of peer: String, at seq: Int, timeout: Duration) async throws -> String? {
        let headers = headers(.GET, InternalWire.hashPath, to: peer)
        let answer: LogHashAnswer = try await send(.GET, InternalWire.hashPath + "?seq=\(seq)", to: peer, headers: headers, timeout: timeout)
        return answer.hash
    }

    public func truncate(_ peer: String, _ request: TruncateRequest, timeout: Duration) async throws -> ReplicaState {
        let body = try JSON.encoder.encode(request)
        let headers = headers(.POST, InternalWire.truncatePath, to: peer, body: body, [("Content-Type", "application/json")])
        return try await send(.POST, InternalWire.truncatePath, to: peer, headers: headers, body: ByteBuffer(bytes: body), timeout: timeout)
    }

    public func requestVote(_ request: VoteRequest, from peer: String, timeout: Duration) async throws -> VoteAnswer {
        let body = try JSON.encoder.encode(request)
        let headers = headers(.POST, InternalWire.votePath, to: peer, body: body, [("Content-Type", "application/json")])
        return try await send(.POST, InternalWire.votePath, to: peer, headers: headers, body: ByteBuffer(bytes: body), timeout: timeout)
    }

    /// The request's headers: its epoch stamp and the commit point (as master, with
    /// failover) and its signature (with a secret), which covers both.
    private func headers(
        _ method: HTTPMethod, _ path: String, to peer: String, log: String? = nil, body: some DataProtocol = [UInt8](),
        _ extra: [(String, String)] = []
    ) -> HTTPHeaders {
        var headers = HTTPHeaders(extra)
        let stamped = stamps.header(for: peer).map { (stamp: $0.stamp, commit: String($0.commit)) }
        if let stamped {
            headers.add(name: InternalWire.epochHeader, value: stamped.stamp)
            headers.add(name: InternalWire.commitHeader, value: stamped.commit)
        }
        if let secret {
            let signed = ClusterSecret.signedContext(log: log, stamp: stamped?.stamp, commit: stamped?.commit)
            headers.add(name: ClusterSecret.header, value: secret.sign(method: method.rawValue, path: path, log: signed, body: body))
        }
        return headers
    }

    private func send<Answer: Decodable>(
        _ method: HTTPMethod, _ path: String, to peer: String, headers: HTTPHeaders = [:], body: ByteBuffer? = nil,
        timeout: Duration
    ) async throws -> Answer {
        let answer: PeerConnections.Answer
        do {
            answer = try await connections.send(method, path, to: peer, headers: headers, body: body, timeout: timeout)
        } catch PeerConnections.Failure.timedOut {
            throw TransportError.timedOut
        } catch PeerConnections.Failure.cancelled {
            throw CancellationError()
        } catch {
            throw TransportError.unreachable(peer)
        }
        switch answer.status.code {
        case 200:
            return try JSON.decoder.decode(Answer.self, from: answer.body)
        case 401:
            throw TransportError.unauthorized
        case 409:
            let refused = try? JSON.decoder.decode(InternalRefusal.Answer.self, from: answer.body)
            switch (refused?.kind, refused?.epoch) {
            case (.staleEpoch, let epoch?):
                throw TransportError.staleEpoch(epoch)
            case (.foreignLog, _), (.diverged, _):
                throw TransportError.foreignLog(refused?.error ?? "secondary follows another master log")
            default:
                throw TransportError.badStatus(409)
            }
        case let status:
            throw TransportError.badStatus(Int(status))
        }
    }
}

/// The epoch stamp a master puts on its requests to each peer (failover), set while it is
/// the master and cleared when it steps down. Each peer's stamp and its header text are made
/// once per epoch, not per request.
///
/// (It once held a closure that made the stamp. A function value in a `Mutex` is
/// re-wrapped in a conversion thunk at every `withLock`, so every request made every later
/// one slower: after a minute of load the master spent half its CPU in nested thunks.)
public final class EpochStamps: Sendable {
    private struct Peer {
        let stamp: EpochStamp
        let header: String
        /// The commit point this peer may learn (as far as the master knows it holds its log).
        var commit = 0
    }

    private let stamps = Mutex<[String: Peer]>([:])

    public init() {}

    /// The stamps of this master's epoch, one per peer; none when it is not the master.
    public func set(_ stamps: [EpochStamp]) {
        let made = Dictionary(stamps.map { ($0.you, Peer(stamp: $0, header: $0.headerValue)) }, uniquingKeysWith: { $1 })
        self.stamps.withLock { $0 = made }
    }

    /// What each peer may learn of the commit point from now on.
    public func setCommits(_ commits: [String: Int]) {
        stamps.withLock { stamps in
            for (peer, commit) in commits { stamps[peer]?.commit = commit }
        }
    }

    public func stamp(for peer: String) -> EpochStamp? { stamps.withLock { $0[peer]?.stamp } }

    /// The `Replog-Epoch` header's text for `peer`, and the commit point it may learn.
    public func header(for peer: String) -> (stamp: String, commit: Int)? {
        stamps.withLock { stamps in stamps[peer].map { ($0.header, $0.commit) } }
    }

    /// The stamp for `peer` and the commit point it may learn.
    public func stampAndCommit(for peer: String) -> (stamp: EpochStamp, commit: Int)? {
        stamps.withLock { stamps in stamps[peer].map { ($0.stamp, $0.commit) } }
    }
}

import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import ReplogCore
import ReplogStorage

/// Replication over HTTP/1.1 on keep-alive connections (`PeerConnections`). A batch
/// travels as the log's own binary records (`RecordFraming`), checksums included, so the
/// master encodes no JSON and the secondary parses none; the answer is JSON.
public struct HTTPTransport: ReplicationTransport {
    let connections = PeerConnections()
    /// Signs every request when the cluster has a secret.
    let secret: ClusterSecret?

    public init(secret: ClusterSecret? = nil) {
        self.secret = secret
    }

    public func replicate(
        _ batch: RecordBatch, of logID: String, to peer: String, timeout: Duration
    ) async throws -> ReplicaState {
        var headers: HTTPHeaders = ["Content-Type": InternalWire.recordsContentType, InternalWire.logHeader: logID]
        if let secret {
            headers.add(name: ClusterSecret.header, value: secret.sign(method: "POST", path: InternalWire.replicatePath, log: logID, body: batch.bytes))
        }
        let body = ByteBuffer(bytes: batch.bytes)
        return try await send(.POST, InternalWire.replicatePath, to: peer, headers: headers, body: body, timeout: timeout)
    }

    public func probe(_ peer: String, timeout: Duration) async throws -> ReplicaState {
        var headers: HTTPHeaders = [:]
        if let secret {
            headers.add(name: ClusterSecret.header, value: secret.sign(method: "GET", path: InternalWire.replicatePath, log: nil, body: [UInt8]()))
        }
        return try await send(.GET, InternalWire.replicatePath, to: peer, headers: headers, timeout: timeout)
    }

    public func hash(of peer: String, at seq: Int, timeout: Duration) async throws -> String? {
        var headers: HTTPHeaders = [:]
        if let secret {
            headers.add(name: ClusterSecret.header, value: secret.sign(method: "GET", path: InternalWire.hashPath, log: nil, body: [UInt8]()))
        }
        let answer: LogHashAnswer = try await send(.GET, InternalWire.hashPath + "?seq=\(seq)", to: peer, headers: headers, timeout: timeout)
        return answer.hash
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
            let reason = (try? JSON.decoder.decode([String: String].self, from: answer.body))?["error"]
            throw TransportError.foreignLog(reason ?? "secondary follows another master log")
        case let status:
            throw TransportError.badStatus(Int(status))
        }
    }
}

import Foundation
import Hummingbird
import NIOCore
import NIOFoundationCompat
import ReplogCore
import ReplogStorage

/// What `POST /replicate` (replog's internal endpoint) takes, in one of two forms:
///
/// - from the master: `Content-Type: application/x-replog-records`, the log's id in the
///   `Replog-Log` header, and the entries as the log's own binary records (`RecordFraming`);
/// - from a person with curl: JSON, `{"log": "id", "entries": [{"seq": 1, "message": "text"}]}`.
struct ReplicationBatch: Decodable {
    static let contentType = InternalWire.recordsContentType
    static let logHeader = InternalWire.logHeader

    /// The master log these entries belong to.
    let log: String
    let entries: [LogEntry]
    /// The clients' idempotency keys of the entries (records only; none from JSON).
    var ids: [String?] = []
    /// The entries' batch marks (records only; JSON carries no batches).
    var continues: [Bool] = []
    /// Where the master's log starts, when it sends one (records only).
    var start: LogStart?

    private enum CodingKeys: String, CodingKey { case log, entries }

    init(log: String, records: RecordFraming.DecodedRecords) {
        self.log = log
        self.entries = records.entries
        self.ids = records.ids
        self.continues = records.continues
        self.start = records.start
    }

    var records: RecordFraming.DecodedRecords {
        var records = RecordFraming.DecodedRecords(entries: entries, ids: ids, continues: continues)
        records.start = start
        return records
    }

    /// Reads either form, or says what is wrong with the request.
    static func read(from request: Request, body: ByteBuffer) throws(APIError) -> ReplicationBatch {
        let batch = try decode(from: request, body: body)
        // A seq below 1 is no place in any log (found by fuzzing: one crashed the node).
        if let bad = batch.entries.first(where: { $0.seq < 1 }) {
            throw APIError(.badRequest, "every entry's seq must be 1 or more, got \(bad.seq)")
        }
        guard !batch.log.isEmpty else { throw APIError(.badRequest, "\"log\" must name the master log, not be empty") }
        return batch
    }

    private static func decode(from request: Request, body: ByteBuffer) throws(APIError) -> ReplicationBatch {
        guard request.headers[.contentType] == contentType else {
            guard let batch = try? JSON.decoder.decode(Self.self, from: body) else {
                throw APIError(
                    .badRequest, "a replication request is {\"log\": \"id\", \"entries\": [{\"seq\": 1, \"message\": \"text\"}]} "
                        + "(or \(contentType) records with a \(logHeader) header)")
            }
            return batch
        }
        guard let log = request.headers[HTTPFields.Element.Name(logHeader)!], !log.isEmpty else {
            throw APIError(.badRequest, "\(contentType) needs the master log's id in the \(logHeader) header")
        }
        var start: LogStart?
        if let text = request.headers[HTTPFields.Element.Name(InternalWire.logStartHeader)!] {
            guard let parsed = LogStart(headerValue: text) else {
                throw APIError(.badRequest, "\(InternalWire.logStartHeader) must be \"<first seq> <64 hex digits>\"")
            }
            start = parsed
        }
        switch body.withUnsafeReadableBytes({ RecordFraming.decodeAllKeyed($0) }) {
        case .success(var records):
            records.start = start
            return ReplicationBatch(log: log, records: records)
        case .failure(let damage): throw APIError(.badRequest, "damaged replication batch: \(damage)")
        }
    }
}

/// Largest replication request a secondary accepts. The master keeps every batch under it:
/// batches stop at 4 MiB, and a single entry is at most the master's `--max-body`, which
/// may not exceed `maxAppendBodyBytes`.
public let maxReplicationBodyBytes = 64 << 20
/// Largest `--max-body` a master accepts, so that any one message still fits a replication request.
public let maxAppendBodyBytes = 32 << 20

extension Node {
    /// The secondary's log for the reading routes; a linearizable read goes to `master`.
    func secondaryReader(master: @escaping @Sendable () -> String?) -> LogReader {
        LogReader(
            read: { from, limit, level throws(LogStoreError) in try await self.list(from: from, limit: limit, level: level) },
            wait: { from, timeout, level in await self.waitForEntries(from: from, level: level, upTo: timeout) },
            linearize: { request in throw APIError.readAtTheMaster(master(), request.uri.description) })
    }
}

extension SecondaryHealthReport {
    /// `GET /health` on a secondary, for people and scripts (the master's heartbeat reads
    /// `GET /replicate` instead).
    init(_ node: Node) {
        let state = node.replicaState
        self.init(
            seq: state.seq, incarnation: state.incarnation, logID: state.logID, delayMs: node.settings.secondary.delay.milliseconds,
            errorRate: node.settings.secondary.errorRate, heldBack: node.heldBackCount, storageFailure: state.storageFailure,
            hash: state.hash)
        firstSeq = node.store.firstSeq
        restartedAt = node.restartedAt
        commitSeq = node.commitSeq
    }
}

/// What the internal endpoints do on a node (a plain secondary, or a `Node`). Each
/// gets the master's epoch stamp and the commit point it sends, if the request carries them.
typealias Receive = @Sendable (_ records: RecordFraming.DecodedRecords, _ log: String, _ stamp: MasterStamp) async throws -> ReplicaState

/// What a master with failover says about itself in a request: its epoch stamp, and the
/// commit point the member may learn (both nil from a master without failover).
struct MasterStamp: Sendable {
    var epoch: EpochStamp?
    var commit: Int?
}

extension Router<BasicRequestContext> {
    /// `POST /replicate` (a delivery), `GET /replicate` (a heartbeat) and
    /// `GET /replicate/hash`; with failover also `POST /replicate/vote` and
    /// `POST /replicate/truncate`. With a secret, each refuses an unsigned request (401).
    ///
    /// A vote fsyncs the election record, a cut rewrites the log's tail and saves a rollback
    /// file: the node runs both on the storage's thread pool while the request waits, not
    /// on the event loop the request came in on, which serves other connections too.
    func addInternalRoutes(
        secret: ClusterSecret?, maxBodyBytes: Int, receive: @escaping Receive,
        probe: @escaping @Sendable (MasterStamp) async throws -> ReplicaState, hash: @escaping @Sendable (Int) -> String?,
        vote: (@Sendable (VoteRequest) async throws -> VoteAnswer)? = nil,
        truncate: (@Sendable (TruncateRequest, EpochStamp?) async throws -> ReplicaState)? = nil
    ) {
        post(RouterPath(InternalWire.replicatePath)) { request, _ -> Response in
            var request = request
            let body = try await request.collectBody(limitedTo: maxBodyBytes)
            let log = request.headers[HTTPFields.Element.Name(InternalWire.logHeader)!]
            let start = request.headers[HTTPFields.Element.Name(InternalWire.logStartHeader)!]
            let stamp = try checkSignature(secret, of: request, log: start.map { "\(log ?? "") \($0)" } ?? log, body: body)
            let delivery = try ReplicationBatch.read(from: request, body: body)
            return try await answeringInternally { try await receive(delivery.records, delivery.log, stamp) }
        }

        // The master's heartbeat: what this node holds, in the internal answer type.
        get(RouterPath(InternalWire.replicatePath)) { request, _ in
            let stamp = try checkSignature(secret, of: request, log: nil, body: ByteBuffer())
            return try await answeringInternally { try await probe(stamp) }
        }

        // Where a diverged log parts from the master's: the master asks for hashes at a few seqs.
        get(RouterPath(InternalWire.hashPath)) { request, _ in
            try checkSignature(secret, of: request, path: InternalWire.hashPath, log: nil, body: ByteBuffer())
            let seq = try request.integerQuery("seq", minimum: 0) ?? 0
            return JSON.response(.ok, LogHashAnswer(seq: seq, hash: hash(seq)))
        }

        if let vote {
            post(RouterPath(InternalWire.votePath)) { request, _ in
                var request = request
                let body = try await request.collectBody(limitedTo: 64 << 10)
                try checkSignature(secret, of: request, path: InternalWire.votePath, log: nil, body: body)
                guard let ask = try? JSON.decoder.decode(VoteRequest.self, from: body) else {
                    throw APIError(.badRequest, "a vote request is {\"epoch\": 2, \"candidate\": \"URL\", \"log\": {\"epoch\": 1, \"seq\": 9}, \"preVote\": false}")
                }
                return JSON.response(.ok, try await vote(ask))
            }
        }
        if let truncate {
            post(RouterPath(InternalWire.truncatePath)) { request, _ in
                var request = request
                let body = try await request.collectBody(limitedTo: 64 << 10)
                // The body is signed: where to cut is part of what the master proves it sent.
                let stamp = try checkSignature(secret, of: request, path: InternalWire.truncatePath, log: nil, body: body).epoch
                guard let cut = try? JSON.decoder.decode(TruncateRequest.self, from: body), cut.after >= 0 else {
                    throw APIError(.badRequest, "a cut is {\"after\": N, \"nextHash\": \"the master's hash at N + 1\"} with N >= 0")
                }
                return try await answeringInternally { try await truncate(cut, stamp) }
            }
        }
    }
}

/// Runs an internal request and turns what it throws into the answer the master expects.
private func answeringInternally(_ body: () async throws -> ReplicaState) async throws -> Response {
    do {
        return JSON.response(.ok, try await body())
    } catch let failure as Node.InjectedFailure {
        throw APIError(
            .internalServerError, "injected failure (--error-rate): the entries were stored but this answer is an error",
            details: ["seq": .int(failure.state.seq)])
    } catch let foreign as SecondaryInstance.ForeignLog {
        throw APIError(.conflict, foreign.description, details: ["refusal": .string(InternalRefusal.foreignLog.rawValue)])
    } catch let diverged as SecondaryInstance.Diverged {
        throw APIError(.conflict, diverged.description, details: ["refusal": .string(InternalRefusal.diverged.rawValue)])
    } catch let failed as GroupCommit.Failed {
        throw APIError(.internalServerError, failed.description)
    } catch let stale as Node.StaleEpoch {
        return JSON.response(.conflict, stale.answer)
    }
}

/// Refuses (401) an internal request without a valid signature, when the node has a secret.
/// Returns the request's epoch stamp and commit point, if it has them (the signature covers
/// both).
@discardableResult
private func checkSignature(
    _ secret: ClusterSecret?, of request: Request, path: String = InternalWire.replicatePath, log: String?, body: ByteBuffer
) throws(APIError) -> MasterStamp {
    let stampText = request.headers[HTTPFields.Element.Name(InternalWire.epochHeader)!]
    let commitText = request.headers[HTTPFields.Element.Name(InternalWire.commitHeader)!]
    var stamp = MasterStamp()
    if let stampText {
        guard let decoded = EpochStamp(headerValue: stampText) else {
            throw APIError(.badRequest, "the \(InternalWire.epochHeader) header is not an epoch stamp")
        }
        stamp.epoch = decoded
    }
    if let commitText {
        guard let commit = Int(commitText), commit >= 0, stampText != nil else {
            throw APIError(.badRequest, "the \(InternalWire.commitHeader) header must be a seq (an integer >= 0) beside an epoch stamp")
        }
        stamp.commit = commit
    }
    guard let secret else { return stamp }
    let signature = request.headers[HTTPFields.Element.Name(ClusterSecret.header)!]
    let signed = ClusterSecret.signedContext(log: log, stamp: stampText, commit: commitText)
    guard secret.verify(signature, method: request.method.rawValue, path: path, log: signed, body: body.readableBytesView) else {
        throw APIError(
            .unauthorized,
            "node-to-node requests need proof of the cluster secret: this one has no valid \(ClusterSecret.header) "
                + "(give the master the same --cluster-secret or --cluster-secret-file as this node)")
    }
    return stamp
}

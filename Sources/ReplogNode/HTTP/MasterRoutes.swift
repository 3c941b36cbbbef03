import Foundation
import Hummingbird
import NIOCore
import NIOFoundationCompat
import ReplogCore
import ReplogStorage

/// A router with what every node's API has: JSON errors (with the allowed methods on a
/// 405), the cross-site guard, client tokens, and `/metrics`, around the given routes.
func nodeRouter(
    metrics: (@Sendable () -> String)?, clientTokens: ClientTokens?,
    routes: (Router<BasicRequestContext>) -> Void
) -> Router<BasicRequestContext> {
    let router = Router()
    let allowedMethods = AllowedMethods()
    router.add(middleware: JSONErrorMiddleware(allowedMethods: allowedMethods))
    router.add(middleware: CrossSiteGuard())
    router.add(middleware: ClientTokenGuard(tokens: clientTokens))
    routes(router)
    router.addMetricsRoute(metrics)
    allowedMethods.record(router)
    return router
}

/// `POST /messages` on a master: validate, append, answer `201` or a JSON error.
///
/// The usual append does not come this way but through `AppendFastPath`, on the
/// connection's event loop; it ends in the same `answer(_:to:)`. This route takes every
/// request the fast path leaves to Hummingbird (a bad body, a missing token, …).
func appendMessage(_ incoming: Request, to master: Master, maxBodyBytes: Int) async throws -> Response {
    guard acceptsAsJSON(incoming.headers[.contentType]) else {
        master.countBadRequest()
        throw APIError(.unsupportedMediaType, "send the body as JSON, with Content-Type: application/json")
    }
    var request = incoming
    let body = try await request.collectBody(limitedTo: maxBodyBytes)
    let append: AppendRequest
    do {
        append = try AppendRequest.parse(body)
    } catch {
        master.countBadRequest()
        throw APIError(.badRequest, error.description)
    }
    return await answer(append, to: master).response
}

/// Appends a parsed request and answers `201`, or the JSON error of why not.
func answer(_ append: AppendRequest, to master: Master) async -> JSONAnswer {
    do {
        if append.batch != nil { return JSON.answer(.created, try await master.appendBatch(append)) }
        return try await master.append(append).answer
    } catch {
        // Read-only: say why each missing secondary is missing, when the master knows
        // (another log after an in-memory master restarted, a failed disk).
        var problems: [String] = []
        if case .readOnly = error {
            problems = master.health.secondaries.compactMap { secondary in secondary.problem.map { "\(secondary.url): \($0)" } }
        }
        return APIError(error, clusterSize: master.settings.clusterSize, problems: problems).answer
    }
}

extension Master {
    /// The master's log for the reading routes.
    var reader: LogReader {
        LogReader(
            read: { from, limit, level throws(LogStoreError) in try await self.list(from: from, limit: limit, level: level) },
            wait: { from, timeout, level in await self.waitForEntries(from: from, level: level, upTo: timeout) },
            linearize: { _ in
                do { try await self.confirmForRead() } catch { throw APIError.noLinearizableRead }
            })
    }
}

extension APIError {
    /// A linearizable read that this master cannot answer now.
    static var noLinearizableRead: APIError {
        APIError(
            .serviceUnavailable,
            "no linearizable read: a majority did not confirm this master in time, or it was just elected and has committed "
                + "no entry of its epoch yet; retry in a moment")
    }

    /// A linearizable read on a node that is not the master: `307` to the same read on the
    /// master, or `503` while none is known.
    static func readAtTheMaster(_ master: String?, _ target: String) -> APIError {
        guard let master else {
            return APIError(.serviceUnavailable, "no master to read from: an election is under way, or this node knows none; retry in a moment")
        }
        return APIError(.temporaryRedirect, "not the master: linearizable reads are answered by the master", details: ["master": .string(master)], location: master + target)
    }

    /// `POST /messages` on a node that is not the master (failover): `307` to the master, so
    /// that `curl -L` appends through any node, or `503` while no master is known.
    static func notTheMaster(_ master: String?) -> APIError {
        guard let master else {
            return APIError(
                .serviceUnavailable,
                "no master: an election is under way, or a new master waits for a majority to hold its log; retry in a moment")
        }
        return APIError(.temporaryRedirect, "not the master", details: ["master": .string(master)], location: master + "/messages")
    }
}

/// JSON, or no content type, or curl's default for `-d` (so `curl -d '{…}'` works as typed).
/// Anything else (a form upload, plain text) is refused rather than guessed at.
func acceptsAsJSON(_ contentType: String?) -> Bool {
    guard let contentType else { return true }
    // The common case without Foundation's trimming and lowercasing (2.6 % of the master's
    // CPU under load when every request went through them).
    if contentType == "application/json" || contentType == "application/json; charset=utf-8" { return true }
    let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    return mediaType == "application/json" || mediaType.hasSuffix("+json") || mediaType == "application/x-www-form-urlencoded"
}

extension APIError {
    init(_ error: Master.AppendError, clusterSize: Int, problems: [String] = []) {
        switch error {
        case .invalidWriteConcern(let w, let clusterSize):
            self.init(.badRequest, "\"w\" must be between 1 and \(clusterSize) (the number of nodes), got \(w)")
        case .readOnly(let quorum):
            self.init(
                .serviceUnavailable, "no quorum: master is read-only",
                details: [
                    "quorum": .object(["required": .int(quorum.required), "available": .int(quorum.available)]),
                    "detail": .string(
                        "\(quorum.available) of \(clusterSize) nodes are available and \(quorum.required) are needed; "
                            + (problems.isEmpty
                                ? "appends resume by themselves when enough secondaries answer heartbeats again"
                                : "secondaries that answer but cannot follow this master: " + problems.joined(separator: "; "))),
                ])
        case .timedOut(let seq, let acknowledgements, let w, let timeout):
            self.init(
                .gatewayTimeout,
                "write concern not met within \(timeout.milliseconds) ms: \(acknowledgements) of \(w) nodes hold the message; "
                    + "it stays in the log and keeps replicating",
                details: ["seq": .int(seq), "acks": .int(acknowledgements), "w": .int(w)])
        case .shuttingDown:
            self.init(.serviceUnavailable, "master is shutting down; retry against the restarted master")
        case .storeFailed(let reason):
            self.init(.internalServerError, "the log store refused the append: \(reason)")
        case .notTheMaster(let master):
            self = .notTheMaster(master)
        case .idConflict(let id, let seq):
            self.init(
                .conflict,
                "id \"\(id)\" was already used for a different message (seq \(seq)): a retry must repeat its message exactly; "
                    + "use a new id for a new message",
                details: ["id": .string(id), "seq": .int(seq)])
        }
    }
}

extension MasterHealthReport {
    init(_ health: Master.Health) {
        self.init(
            seq: health.lastSeq, readOnly: health.readOnly, quorum: health.quorum,
            secondaries: health.secondaries.map {
                Secondary(
                    url: $0.url, status: $0.status, ackedSeq: $0.ackedSeq, lag: $0.lag,
                    lastContact: $0.lastContact?.iso8601WithMilliseconds, problem: $0.problem?.description)
            },
            storageFailure: health.storageFailure, hash: health.hash)
        firstSeq = health.firstSeq
        commitSeq = health.commitSeq
    }
}

extension AppendRequest {
    /// `parse(bytes:)` of a request body as it arrived, without copying it.
    static func parse(_ body: ByteBuffer) throws(Invalid) -> AppendRequest {
        try body.withUnsafeReadableBytes { bytes in Result { () throws(Invalid) in try parse(bytes: bytes) } }.get()
    }
}

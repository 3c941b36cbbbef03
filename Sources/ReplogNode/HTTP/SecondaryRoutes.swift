import Foundation
import Hummingbird
import NIOCore
import NIOFoundationCompat
import ReplogCore

/// What the master sends to `POST /replicate` (replog's internal endpoint).
struct ReplicationRequest: Codable {
    /// The master log these entries belong to.
    let log: String
    let entries: [LogEntry]
}

/// A secondary's API: list, health, and the internal replication endpoint.
public func buildSecondaryRouter(
    replica: SecondaryReplica, maxBodyBytes: Int = 64 << 20, metrics: (@Sendable () -> String)? = nil
) -> Router<BasicRequestContext> {
    let router = Router()
    let allowedMethods = AllowedMethods()
    router.add(middleware: JSONErrorMiddleware(maxBodyBytes: maxBodyBytes, allowedMethods: allowedMethods))

    router.post("/replicate") { request, _ -> Response in
        var request = request
        let body = try await request.collectBody(upTo: maxBodyBytes)
        guard let delivery = try? JSON.decoder.decode(ReplicationRequest.self, from: body) else {
            throw APIError(.badRequest, "a replication request is {\"log\": \"id\", \"entries\": [{\"seq\": 1, \"message\": \"text\"}]}")
        }
        do {
            return JSON.response(.ok, try await replica.receive(delivery.entries, of: delivery.log))
        } catch let failure as SecondaryReplica.InjectedFailure {
            throw APIError(
                .internalServerError, "injected failure (--error-rate): the entries were stored but this answer is an error",
                details: ["seq": .int(failure.state.seq)])
        } catch let foreign as SecondaryReplica.ForeignLog {
            throw APIError(.conflict, foreign.description)
        }
    }

    router.post("/messages") { _, _ -> Response in
        var response = APIError(.methodNotAllowed, "this node is a secondary and is read-only: send appends to the master").response
        response.headers[.allow] = "GET"
        return response
    }

    router.addMessagesRoute { from, limit in replica.read(from: from, limit: limit) }

    router.get("/health") { _, _ in
        JSON.response(.ok, SecondaryHealthJSON(replica))
    }
    router.addMetricsRoute(metrics)
    allowedMethods.record(router)
    return router
}

/// `GET /health` on a secondary; the master's heartbeat reads `seq`, `incarnation` and `logID`.
struct SecondaryHealthJSON: Encodable {
    let role = "secondary"
    let seq: Int
    let incarnation: String
    let logID: String?
    let delayMs: Int64
    let errorRate: Double
    let heldBack: Int

    init(_ replica: SecondaryReplica) {
        let state = replica.replicaState
        seq = state.seq
        incarnation = state.incarnation
        logID = state.logID
        delayMs = replica.settings.delay.milliseconds
        errorRate = replica.settings.errorRate
        heldBack = replica.heldBackCount
    }
}

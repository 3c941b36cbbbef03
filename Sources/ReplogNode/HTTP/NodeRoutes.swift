import Foundation
import Hummingbird
import NIOCore
import ReplogCore
import ReplogStorage

/// The API of a node that can change role (`Node`): internal requests go to the
/// node, which refuses an older epoch's master whatever role it plays; the public endpoints
/// go to the current role. `POST /messages` on a node that is not the master answers `307`
/// to the master (`503` while none is known).
public func buildNodeRouter(
    node: Node, maxBodyBytes: Int = 1 << 20, metrics: (@Sendable () -> String)? = nil, secret: ClusterSecret? = nil,
    clientTokens: ClientTokens? = nil
) -> Router<BasicRequestContext> {
    nodeRouter(metrics: metrics, clientTokens: clientTokens) { router in
        // A master without failover takes no delivery, vote or cut from anyone.
        if !node.settings.masterWithoutFailover {
            router.addInternalRoutes(
                secret: secret, maxBodyBytes: maxReplicationBodyBytes,
                receive: { records, log, stamp in try await node.receive(records, of: log, stamp: stamp.epoch, commit: stamp.commit) },
                probe: { stamp in try await node.probe(stamp: stamp.epoch, commit: stamp.commit) },
                hash: { node.hash(at: $0) },
                vote: { try await node.vote($0) },
                truncate: { cut, stamp in try await node.truncate(cut, stamp: stamp) })
        }

        router.post("/messages") { request, _ -> Response in
            switch node.current {
            case .master(let master):
                return try await appendMessage(request, to: master, maxBodyBytes: maxBodyBytes)
            case .secondary:
                guard let master = node.masterForClients else {
                    var response = APIError(.methodNotAllowed, "this node is a secondary and is read-only: send appends to the master").response
                    response.headers[.allow] = "GET"
                    return response
                }
                throw APIError.notTheMaster(master)
            }
        }

        // Whichever role serves the read when it comes.
        router.addReadingRoutes(
            LogReader(
                read: { from, limit, level throws(LogStoreError) in try await node.reader.read(from, limit, level) },
                wait: { from, timeout, level in await node.reader.wait(from, timeout, level) },
                linearize: { request in try await node.reader.linearize(request) }))

        router.get("/health") { _, _ in
            let (role, epoch, master) = node.status
            switch node.current {
            case .master(let current):
                var report = MasterHealthReport(current.health)
                (report.epoch, report.master) = (epoch, master)
                let epochs = node.memberEpochs
                for index in report.secondaries.indices { report.secondaries[index].epoch = epochs[report.secondaries[index].url] }
                return JSON.response(.ok, report)
            case .secondary:
                var report = SecondaryHealthReport(node)
                report.role = role ?? "secondary"
                (report.epoch, report.master) = (epoch, master)
                return JSON.response(.ok, report)
            }
        }
        router.get("/") { _, _ in
            switch node.current {
            case .master(let master):
                return StatusPage.response(clusterSize: master.settings.clusterSize)
            case .secondary:
                // The status page shows the master's view: send the browser there.
                guard case .some(let master?) = node.masterForClients else {
                    throw APIError(.serviceUnavailable, "this node is not the master and knows none yet: try again in a moment")
                }
                var response = Response(status: .temporaryRedirect)
                response.headers[.location] = master + "/"
                return response
            }
        }
    }
}

extension Node {
    /// The log of the role this node plays now, for the reading routes.
    var reader: LogReader {
        switch current {
        case .master(let master): master.reader
        case .secondary: secondaryReader(master: { [weak self] in self?.masterForClients ?? nil })
        }
    }
}

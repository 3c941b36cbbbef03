import Hummingbird
import Logging
import ReplogCore
import ReplogStorage
@testable import ReplogNode

/// A secondary as `replog secondary` runs it: a node that serves whichever master delivers
/// (it learns of failover from a master's stamp), behind the router every node serves.
struct SecondaryNode {
    let node: FailoverNode

    init(
        store: any LogStore = InMemoryLogStore(), settings: SecondarySettings = SecondarySettings(), clock: any NodeClock = SystemClock(),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) throws {
        node = try FailoverNode(
            settings: FailoverNode.Settings(
                me: nil, members: [], master: MasterSettings(secondaries: []), secondary: settings, canVote: false, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always, clock: clock), directory: nil,
            transport: InMemoryTransport(clock: clock), clock: clock, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            random: random)
    }

    /// The role it plays: a secondary, until a master's stamp makes it a member.
    var replica: SecondaryReplica {
        guard case .secondary(let replica) = node.current else { preconditionFailure("a secondary without failover is never elected") }
        return replica
    }

    func router(secret: ClusterSecret? = nil) -> Router<BasicRequestContext> {
        buildFailoverRouter(node: node, secret: secret)
    }

    /// A master's delivery, as `POST /replicate` hands it on.
    @discardableResult
    func receive(_ entries: [LogEntry], of log: String) async throws -> ReplicaState {
        try await node.receive(entries, of: log, stamp: nil)
    }
}

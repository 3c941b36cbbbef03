import Hummingbird
import Logging
import ReplogCore
import ReplogStorage
@testable import ReplogNode

/// A secondary as `replog secondary` runs it: a node that serves whichever master delivers
/// (it learns of failover from a master's stamp), behind the router every node serves.
struct SecondaryNode {
    let node: Node

    init(
        store: any LogStore = InMemoryLogStore(), settings: SecondarySettings = SecondarySettings(), clock: any NodeClock = SystemClock(),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) throws {
        node = try Node(
            settings: Node.Settings(
                me: nil, members: [], master: MasterSettings(secondaries: []), secondary: settings, canVote: false, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always, clock: clock), directory: nil,
            transport: InMemoryTransport(clock: clock), clock: clock, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            random: random)
    }

    /// The node as a secondary: it stays one, as a secondary without failover is never elected.
    var replica: Node {
        guard case .secondary = node.current else { preconditionFailure("a secondary without failover is never elected") }
        return node
    }

    func router(secret: ClusterSecret? = nil) -> Router<BasicRequestContext> {
        buildNodeRouter(node: node, secret: secret)
    }

    /// A master's delivery, as `POST /replicate` hands it on.
    @discardableResult
    func receive(_ entries: [LogEntry], of log: String) async throws -> ReplicaState {
        try await node.receive(entries, of: log, stamp: nil)
    }
}

/// A master as `replog master` runs it without `--failover`: a node that is the master from
/// its start, behind the router (and the append fast path) every node serves.
struct MasterNode {
    let node: Node

    init(
        settings: MasterSettings, store: any LogStore = InMemoryLogStore(), transport: (any ReplicationTransport)? = nil,
        clock: any NodeClock = SystemClock(), logger: Logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) throws {
        node = try Node(
            settings: .withoutFailover(master: settings), store: store,
            commit: GroupCommit(store: store, policy: .always, clock: clock, logger: logger), directory: nil,
            transport: transport ?? InMemoryTransport(clock: clock), clock: clock, logger: logger, random: random)
    }

    /// The role it plays from start to end.
    var master: Master {
        guard let master = node.currentMaster else { preconditionFailure("a master without failover never steps down") }
        return master
    }

    func router(maxBodyBytes: Int = 1 << 20, clientTokens: ClientTokens? = nil, metrics: (@Sendable () -> String)? = nil) -> Router<BasicRequestContext> {
        buildNodeRouter(node: node, maxBodyBytes: maxBodyBytes, metrics: metrics, clientTokens: clientTokens)
    }

    /// Its HTTP server: in `.live` tests appends take the fast path (`AppendFastPath`), in
    /// `.router` tests Hummingbird's route.
    func app(maxBodyBytes: Int = 1 << 20, clientTokens: ClientTokens? = nil, port: Int? = nil) -> some ApplicationProtocol {
        let node = self.node
        return Application(
            router: router(maxBodyBytes: maxBodyBytes, clientTokens: clientTokens),
            server: NodeHTTPChannel.builder(
                fastPath: .init(master: { node.currentMaster }, maxBodyBytes: maxBodyBytes, clientTokens: clientTokens, serverName: "replog")),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: port ?? 0), serverName: "replog"))
    }
}

import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Builds a node's HTTP application and runs a node's services.
public enum NodeApplications {
    /// A node's HTTP server: every process serves one (see `Node`); with failover its
    /// role changes with elections.
    public static func node(
        _ node: Node, host: String, port: Int, maxBodyBytes: Int, secret: ClusterSecret? = nil, logger: Logger,
        metrics: (@Sendable () -> String)? = nil, clientTokens: ClientTokens? = nil,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: buildNodeRouter(node: node, maxBodyBytes: maxBodyBytes, metrics: metrics, secret: secret, clientTokens: clientTokens),
            server: NodeHTTPChannel.builder(
                fastPath: .init(master: { node.currentMaster }, maxBodyBytes: maxBodyBytes, clientTokens: clientTokens, serverName: "replog")),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "replog"),
            onServerRunning: { await onListening($0.localAddress?.port ?? port) },
            logger: logger)
    }

    /// Runs `services` until SIGTERM or SIGINT, or until `stopWhenDone` returns, then shuts
    /// them down in reverse order.
    ///
    /// Pass the HTTP application first and the node after it: the node then stops
    /// first and its master answers its waiting appends, so the server can drain at once.
    public static func run(_ services: [any Service], stopWhenDone: (any Service)? = nil, logger: Logger) async throws {
        var configurations = services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
        if let stopWhenDone {
            configurations.append(.init(service: stopWhenDone, successTerminationBehavior: .gracefullyShutdownGroup))
        }
        var configuration = ServiceGroupConfiguration(
            services: configurations, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Past this, shutdown turns into cancellation: stopping never hangs on a slow client.
        configuration.maximumGracefulShutdownDuration = .seconds(10)
        try await ServiceGroup(configuration: configuration).run()
    }
}

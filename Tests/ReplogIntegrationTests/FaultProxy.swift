import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on 127.0.0.1 in front of one node, for faults this kernel cannot make
/// (no netem): it passes bytes through, cuts the link (a partition), or slows it down.
/// Every change of mode drops the open connections, so pooled HTTP connections feel it too.
final class FaultProxy: Sendable {
    enum Mode: Sendable, Equatable, CustomStringConvertible {
        case pass
        case partition
        case delay(TimeAmount)

        var description: String {
            switch self {
            case .pass: "pass"
            case .partition: "partition"
            case .delay(let amount): "delay \(amount.nanoseconds / 1_000_000) ms"
            }
        }
    }

    private struct State: Sendable {
        var mode: Mode = .pass
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    private let state = Locked(State())
    private let targetPort: Int
    private let server: any Channel

    /// The port the proxy listens on.
    var port: Int { server.localAddress?.port ?? 0 }

    init(forwardingTo targetPort: Int) async throws {
        self.targetPort = targetPort
        let state = self.state
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                let mode = state.withLock { $0.mode }
                guard mode != .partition else { return inbound.close() }
                let delay: TimeAmount? = if case .delay(let amount) = mode { amount } else { nil }
                // Hold reads until the other side is connected.
                _ = inbound.setOption(.autoRead, value: false)
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: "127.0.0.1", port: targetPort)
                    .flatMap { outbound in
                        state.withLock {
                            $0.connections[ObjectIdentifier(inbound)] = inbound
                            $0.connections[ObjectIdentifier(outbound)] = outbound
                        }
                        return outbound.pipeline.addHandler(Forwarder(peer: inbound, delay: delay))
                            .flatMap { inbound.pipeline.addHandler(Forwarder(peer: outbound, delay: delay)) }
                            .flatMap { inbound.setOption(.autoRead, value: true) }
                    }
                    .flatMapError { _ in inbound.close() }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    /// Changes the link's behaviour and drops every open connection.
    func set(_ mode: Mode) {
        let open = state.withLock { state -> [any Channel] in
            state.mode = mode
            defer { state.connections.removeAll() }
            return Array(state.connections.values)
        }
        for channel in open { channel.close(promise: nil) }
    }

    func stop() {
        set(.partition)
        server.close(promise: nil)
    }
}

/// Copies what one side reads to the other side, optionally late; closing one side closes both.
private final class Forwarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let peer: any Channel
    let delay: TimeAmount?

    init(peer: any Channel, delay: TimeAmount?) {
        self.peer = peer
        self.delay = delay
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if let delay {
            // Same delay for every chunk of a connection, so bytes keep their order.
            let peer = self.peer
            context.eventLoop.scheduleTask(in: delay) { peer.writeAndFlush(bytes, promise: nil) }
        } else {
            peer.writeAndFlush(bytes, promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

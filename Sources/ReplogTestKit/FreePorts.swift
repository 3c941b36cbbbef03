import Foundation
import Synchronization

/// A port that was free a moment ago, for a node that must be named before it starts.
public func freePort() throws -> Int {
    try freePorts(1)
}

/// The first of `count` consecutive ports that were free a moment ago (`replog cluster`
/// puts its secondaries on the ports after the master's).
///
/// They come from below the kernel's ephemeral range (32768 and up on Linux, 49152 on
/// macOS), where neither a `--port 0` node nor an outgoing connection of a test running
/// alongside can take them between this check and the node's start; and no port is handed
/// out twice in one test process.
public func freePorts(_ count: Int) throws -> Int {
    for _ in 0..<200 {
        let base = Int.random(in: portRange.lowerBound...(portRange.upperBound - count))
        let ports = base..<(base + count)
        let claimed = handedOut.withLock { handedOut in
            guard handedOut.isDisjoint(with: ports) else { return false }
            handedOut.formUnion(ports)
            return true
        }
        guard claimed else { continue }
        if ports.allSatisfy({ bindAndRelease(port: $0) != nil }) { return base }
    }
    throw POSIXError(.EADDRINUSE)
}

/// Ports tests may pick: above the docs' recipes' fixed ports (5000–5002, 8080), below
/// every kernel's ephemeral range.
private let portRange = 20_000..<32_768
private let handedOut = Mutex<Set<Int>>([])

/// Whether something accepts connections on 127.0.0.1:`port` now. (Asking by binding
/// would not do: a port whose connections are in TIME_WAIT cannot be bound for a minute
/// after its node stopped.)
public func isListening(port: Int) -> Bool {
    withLoopbackSocket(port: port) { socket, address, length in connect(socket, address, length.pointee) == 0 }
}

/// Binds 127.0.0.1:`port` (0 = any) and lets go at once; the port bound, or nil.
private func bindAndRelease(port: Int) -> Int? {
    withLoopbackSocket(port: port) { socket, address, length in
        guard bind(socket, address, length.pointee) == 0, getsockname(socket, address, length) == 0 else { return nil }
        return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
    }
}

/// Runs `body` with a new TCP socket (closed afterwards) and the address 127.0.0.1:`port`.
private func withLoopbackSocket<T>(
    port: Int, _ body: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> T
) -> T {
    let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    return withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body(socket, $0, &length) }
    }
}

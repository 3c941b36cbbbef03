import Crypto
import Foundation
import ReplogCore

/// The secret every node of a cluster shares, so that node-to-node requests (replication
/// and heartbeats) prove where they come from.
///
/// A request carries `Replog-Signature: <hex HMAC-SHA256>` over its method, path, the
/// master log it belongs to and its body, under the secret; the secret itself never
/// travels. Replaying a captured request changes nothing: deliveries are idempotent (a
/// seq a node holds is not stored again) and the hold-back buffer never stores out of order.
public struct ClusterSecret: Sendable {
    public static let header = "Replog-Signature"
    private let key: SymmetricKey

    /// - Parameter secret: any text; at least 16 bytes are required (`replog cluster` makes 32).
    public init?(_ secret: String) {
        guard secret.utf8.count >= 16 else { return nil }
        key = SymmetricKey(data: Data(secret.utf8))
    }

    /// Protected mode, as Redis has it: why a node bound to `host` must not start without a
    /// secret, or nil when it may. A node that other machines can reach would take
    /// replication from anyone, so it needs a secret unless `insecure` says the network is
    /// trusted; on a loopback address only this machine reaches it.
    public static func protectedModeRefusal(host: String, hasSecret: Bool, insecure: Bool) -> String? {
        guard !hasSecret, !insecure, !isLoopback(host) else { return nil }
        return "--host \(host) lets other machines reach this node, and it has no cluster secret: anyone could "
            + "replicate into it. Give every node the same secret (--cluster-secret-file F, "
            + "REPLOG_CLUSTER_SECRET_FILE or REPLOG_CLUSTER_SECRET), or pass --insecure (REPLOG_INSECURE=true) "
            + "on a network you trust."
    }

    /// `localhost`, 127.0.0.0/8 and ::1: addresses only this machine can reach.
    public static func isLoopback(_ host: String) -> Bool {
        if ["localhost", "::1", "[::1]"].contains(host.lowercased()) { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.allSatisfy { UInt8($0) != nil } && octets[0] == "127"
    }

    /// Makes a random secret: 32 bytes, hex.
    public static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// The signature of a request.
    /// What a signature covers besides method, path and body: the master log and, with
    /// failover, the epoch stamp and the commit point (so that a captured request cannot be
    /// replayed with another).
    public static func signedContext(log: String?, stamp: String?, commit: String? = nil) -> String? {
        guard let stamp else { return log }
        return (log ?? "") + "\n" + stamp + (commit.map { "\n" + $0 } ?? "")
    }

    public func sign(method: String, path: String, log: String?, body: some DataProtocol) -> String {
        code(method: method, path: path, log: log, body: body).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `signature` is this request's, compared in constant time.
    public func verify(_ signature: String?, method: String, path: String, log: String?, body: some DataProtocol) -> Bool {
        guard let signature, let code = Self.bytes(hex: signature) else { return false }
        // swift-crypto compares authentication codes in constant time.
        return self.code(method: method, path: path, log: log, body: body) == code
    }

    private func code(method: String, path: String, log: String?, body: some DataProtocol) -> HashedAuthenticationCode<SHA256> {
        var hmac = HMAC<SHA256>(key: key)
        hmac.update(data: Data(Self.prefix(method: method, path: path, log: log).utf8))
        hmac.update(data: body)
        return hmac.finalize()
    }

    private static func prefix(method: String, path: String, log: String?) -> String {
        "replog-v1\n\(method)\n\(path)\n\(log ?? "")\n"
    }

    private static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

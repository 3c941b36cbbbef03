import ReplogNode
import Testing

/// A node that other machines can reach does not start without a cluster secret, unless
/// told the network is trusted (issue 18; Redis's protected mode).
struct ProtectedModeTests {
    @Test(arguments: ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"])
    func aLoopbackNodeNeedsNoSecret(_ host: String) {
        #expect(ClusterSecret.protectedModeRefusal(host: host, hasSecret: false, insecure: false) == nil)
    }

    @Test(arguments: ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "replog-1.replog", "128.0.0.1", "127.0.0"])
    func aReachableNodeNeedsASecretOrInsecure(_ host: String) throws {
        let refusal = try #require(ClusterSecret.protectedModeRefusal(host: host, hasSecret: false, insecure: false))
        #expect(refusal.contains("--host \(host)") && refusal.contains("--cluster-secret-file") && refusal.contains("--insecure"))
        #expect(ClusterSecret.protectedModeRefusal(host: host, hasSecret: true, insecure: false) == nil)
        #expect(ClusterSecret.protectedModeRefusal(host: host, hasSecret: false, insecure: true) == nil)
    }
}

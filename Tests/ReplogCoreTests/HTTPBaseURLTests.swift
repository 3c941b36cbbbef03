import ReplogCore
import Testing

/// The one reading of a node's base URL that the command line, replication and the bench share.
@Suite struct HTTPBaseURLTests {
    @Test func readsHostPortAndPathPrefix() throws {
        let plain = try #require(HTTPBaseURL("http://127.0.0.1:5001"))
        #expect((plain.host, plain.port, plain.authority, plain.pathPrefix) == ("127.0.0.1", 5001, "127.0.0.1:5001", ""))
        let proxied = try #require(HTTPBaseURL("http://proxy/replog-1/"))
        #expect((proxied.host, proxied.port, proxied.authority, proxied.pathPrefix) == ("proxy", 80, "proxy", "/replog-1"))
    }

    @Test(arguments: ["https://127.0.0.1:5001", "127.0.0.1:5001", "http://", "ftp://host:21", ""])
    func refusesWhatReplicationCannotReach(_ text: String) {
        #expect(HTTPBaseURL(text) == nil)
    }
}

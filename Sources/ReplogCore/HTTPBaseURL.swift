import Foundation

/// A node's base URL as replog's own HTTP clients speak to it: plain `http://HOST[:PORT][/PATH]`
/// (nodes serve no TLS). The command line checks `--secondary` with this, and replication and
/// `replog bench` connect with it, so a URL is accepted exactly when it can be reached.
public struct HTTPBaseURL: Sendable, Equatable {
    public let host: String
    public let port: Int
    /// The `Host` header: the URL's authority.
    public let authority: String
    /// A base URL may have a path (`http://proxy/replog-1`); requests go below it. No
    /// trailing slash, so `pathPrefix + "/messages"` is the endpoint.
    public let pathPrefix: String

    public init?(_ text: String) {
        guard let url = URL(string: text), url.scheme == "http", let host = url.host, !host.isEmpty else { return nil }
        self.host = host
        self.port = url.port ?? 80
        self.authority = url.port.map { "\(host):\($0)" } ?? host
        self.pathPrefix = url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path
    }
}

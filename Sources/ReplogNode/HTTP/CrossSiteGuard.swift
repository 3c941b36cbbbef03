import Hummingbird
import HTTPTypes

/// Keeps web pages of other sites from writing to a node through a visitor's browser.
///
/// A page on any site can send a "simple" POST (form content type, no preflight) to a
/// node the browser can reach: a `replog cluster` on a laptop, a node on a private network.
/// Browsers say where such a request comes from: `Origin` (another scheme, host or port
/// than the node's own) or `Sec-Fetch-Site: cross-site`. Such a write is refused with 403
/// and changes nothing, and so is every CORS preflight (no site is allowed). curl and other
/// programs send neither header, and the status page's own form is same-origin.
struct CrossSiteGuard<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .options, request.headers[.origin] != nil {
            throw APIError(.forbidden, "cross-origin requests are not allowed: replog answers no CORS preflight")
        }
        guard request.method != .get, request.method != .head else { return try await next(request, context) }
        if request.headers[.secFetchSite] == "cross-site" {
            throw APIError(.forbidden, "a page of another site cannot write to this node (Sec-Fetch-Site: cross-site)")
        }
        if let origin = request.headers[.origin], !Self.isSameOrigin(origin, host: request.head.authority) {
            let own = request.head.authority.map { "http://\($0)" } ?? "unknown: no Host header"
            throw APIError(.forbidden, "a page of another origin (\(origin)) cannot write to this node (\(own))")
        }
        return try await next(request, context)
    }

    /// Whether `origin` (`scheme://host[:port]`) is this node as the request addressed it
    /// (its `Host`).
    static func isSameOrigin(_ origin: String, host: String?) -> Bool {
        guard let host, origin != "null" else { return false }
        return origin.lowercased() == "http://" + host.lowercased()
    }
}

extension HTTPField.Name {
    /// Where a browser says a request comes from (`same-origin`, `same-site`, `cross-site`, `none`).
    static let secFetchSite = HTTPField.Name("Sec-Fetch-Site")!
}

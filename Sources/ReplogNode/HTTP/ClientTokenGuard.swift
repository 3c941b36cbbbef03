import Hummingbird

/// Who may append (and, if chosen, read): clients that send one of these bearer tokens
/// (`--client-token`; off by default, when every client that reaches the port may).
public struct ClientTokens: Sendable {
    private let tokens: [[UInt8]]
    /// Whether reading the log (`GET /messages`, `/messages/stream`) needs a token too.
    /// `/health`, `/metrics` and the status page stay open for probes and scrapers.
    public let protectsReads: Bool

    /// - Returns: nil when `tokens` is empty (no client authentication).
    public init?(_ tokens: [String], protectsReads: Bool = false) {
        guard !tokens.isEmpty else { return nil }
        self.tokens = tokens.map { Array($0.utf8) }
        self.protectsReads = protectsReads
    }

    /// Whether `Authorization` carries one of the tokens: `Bearer <token>`. Compared byte by
    /// byte without stopping early, so the time taken does not tell how much was right.
    func admits(_ authorization: String?) -> Bool {
        guard let authorization, authorization.hasPrefix("Bearer ") else { return false }
        let offered = Array(authorization.utf8.dropFirst("Bearer ".utf8.count))
        var admitted = false
        for token in tokens where token.count == offered.count {
            var difference: UInt8 = 0
            for index in token.indices { difference |= token[index] ^ offered[index] }
            admitted = admitted || difference == 0
        }
        return admitted
    }
}

/// Refuses (401) an append, or a read when reads are protected, without a client token.
struct ClientTokenGuard<Context: RequestContext>: RouterMiddleware {
    let tokens: ClientTokens?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let tokens else { return try await next(request, context) }
        let path = request.uri.path
        let isAppend = request.method == .post && path == "/messages"
        let isRead = (request.method == .get || request.method == .head) && (path == "/messages" || path == "/messages/stream")
        guard isAppend || (isRead && tokens.protectsReads), !tokens.admits(request.headers[.authorization]) else {
            return try await next(request, context)
        }
        var response = APIError(
            .unauthorized,
            "this node needs a client token to \(isAppend ? "append" : "read the log"): send Authorization: Bearer <token> "
                + "(replog commands: --token or REPLOG_CLIENT_TOKEN)"
        ).response
        response.headers[.wwwAuthenticate] = "Bearer"
        return response
    }
}

import Foundation
import Hummingbird
import ReplogCore
import ReplogStorage
import Testing
@testable import ReplogNode

/// `docs/openapi.yaml` and `docs/internal-api.yaml` stay true: together they document
/// exactly the routes a node serves.
@Suite struct OpenAPIDocumentTests {
    /// "METHOD /path" for every operation under `paths:` (two-space paths, four-space methods).
    private func documentedOperations(_ document: String = "docs/openapi.yaml") throws -> Set<String> {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent(document), encoding: .utf8)
        var operations: Set<String> = []
        var inPaths = false
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("paths:") { inPaths = true; continue }
            if inPaths, let first = line.first, first != " " { break }  // the next top-level key
            if line.hasPrefix("  /") { path = String(line.dropFirst(2).dropLast()); continue }
            let methods = ["get", "post", "put", "delete", "patch"]
            if let path, line.hasPrefix("    "), !line.hasPrefix("     "),
               let method = methods.first(where: { line == "    \($0):" }) {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        return operations
    }

    @Test func documentsExactlyTheMasterRoutes() throws {
        let router = TestCluster().masterNode.router(metrics: { "" })
        let served = Set(router.routes.map { "\($0.method) \($0.path.description.isEmpty ? "/" : $0.path.description)" })
        let documented = try documentedOperations()
        #expect(served.isSuperset(of: ["POST /messages", "GET /messages", "GET /health", "GET /metrics", "GET /"]), "\(served)")
        #expect(documented == served, "documented but not served: \(documented.subtracting(served)); served but not documented: \(served.subtracting(documented))")
    }

    @Test func documentsExactlyTheRoutesOfANodeWithFailover() throws {
        let store = InMemoryLogStore()
        let node = try Node(
            settings: .init(me: nil, members: [], master: MasterSettings(secondaries: []), canVote: false, bootstrap: false),
            store: store, commit: GroupCommit(store: store, policy: .always), directory: nil,
            transport: InMemoryTransport(clock: ManualClock()))
        let router = buildNodeRouter(node: node, metrics: { "" })
        let served = Set(router.routes.map { "\($0.method) \($0.path.description.isEmpty ? "/" : $0.path.description)" })
        let documented = try documentedOperations().union(documentedOperations("docs/internal-api.yaml"))
        #expect(served.isSuperset(of: ["POST /replicate/vote", "POST /replicate/truncate", "POST /messages"]), "\(served)")
        #expect(documented == served, "documented but not served: \(documented.subtracting(served)); served but not documented: \(served.subtracting(documented))")
    }
}

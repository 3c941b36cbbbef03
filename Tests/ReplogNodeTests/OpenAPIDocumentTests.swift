import Foundation
import Hummingbird
import Testing
@testable import ReplogNode

/// `docs/openapi.yaml` stays true: it documents exactly the routes the master serves.
@Suite struct OpenAPIDocumentTests {
    /// "METHOD /path" for every operation under `paths:` (two-space paths, four-space methods).
    private func documentedOperations() throws -> Set<String> {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
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
        let router = buildMasterRouter(master: TestCluster().master, metrics: { "" })
        let served = Set(router.routes.map { "\($0.method) \($0.path.description.isEmpty ? "/" : $0.path.description)" })
        let documented = try documentedOperations()
        #expect(served.isSuperset(of: ["POST /messages", "GET /messages", "GET /health", "GET /metrics", "GET /"]), "\(served)")
        #expect(documented == served, "documented but not served: \(documented.subtracting(served)); served but not documented: \(served.subtracting(documented))")
    }
}

import Foundation
import ReplogTestKit
import Testing

/// Iteration 0 through the real binary: one-shot and interactive client, errors.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct EchoProcessTests {
    /// `2026-11-27T12:00:00.123Z ` at the start of an echo.
    private func startsWithTimestamp(_ line: String) -> Bool {
        line.firstMatch(of: #/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z /#) != nil
    }

    private func startServer(_ cluster: LocalCluster) async throws -> (host: String, port: String) {
        let server = try await cluster.start(["echo-server", "--port", "0"])
        let address = server.url.replacingOccurrences(of: "tcp://", with: "")
        let parts = address.split(separator: ":")
        return (String(parts[0]), String(parts[1]))
    }

    @Test func oneShotClientPrintsTheEchoAndExitsZero() async throws {
        let cluster = LocalCluster()
        let (host, port) = try await startServer(cluster)
        let client = try await NodeProcess(["echo-client", host, port, "hello", "world"])
        #expect(try await client.waitForExit() == 0)
        let line = client.log.trimmingCharacters(in: .newlines)
        #expect(startsWithTimestamp(line), "\(line)")
        #expect(line.hasSuffix(" hello world"))
    }

    @Test func interactiveClientEchoesEveryPipedLineUntilQuit() async throws {
        let cluster = LocalCluster()
        let (host, port) = try await startServer(cluster)
        let client = try await NodeProcess(["echo-client", host, port], stdin: Data("one\ntwo\nquit\nnever sent\n".utf8))
        #expect(try await client.waitForExit() == 0)
        let lines = client.log.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(client.log)")
        #expect(lines.first?.hasSuffix(" one") == true && lines.last?.hasSuffix(" two") == true)
    }

    @Test func unreachableServerGivesOneLineAndNonZeroExit() async throws {
        let port = try freePort()
        let client = try await NodeProcess(["echo-client", "127.0.0.1", "\(port)", "hi"])
        #expect(try await client.waitForExit() != 0)
        let output = client.log.trimmingCharacters(in: .newlines)
        #expect(!output.contains("\n"), "one line, no stack trace: \(output)")
        #expect(output.contains("echo-client"))
    }
}

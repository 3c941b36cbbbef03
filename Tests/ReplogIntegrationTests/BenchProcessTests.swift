import Foundation
import ReplogTestKit
import Testing

/// `replog bench` against a real cluster: it appends exactly what it reports, and counts
/// refused appends as errors instead of hiding them.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct BenchProcessTests {
    /// Runs `replog bench ARGUMENTS --json` to the end and returns its result object.
    private func bench(_ arguments: [String]) async throws -> [String: Any] {
        let process = try await NodeProcess(["bench", "--json"] + arguments)
        // Waits for the exit, not for the end of stdout: a process another test started at
        // the same moment may hold a copy of the pipe for as long as it runs.
        #expect(try await process.waitForExit() == 0, "\(process.log)")
        let object = try JSONSerialization.jsonObject(with: Data(process.stdout.utf8)) as? [String: Any]
        return try #require(object, "not a JSON result: \(process.log)")
    }

    @Test func appendsExactlyTheCountItReports() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])

        let result = try await bench(["--master", master.url, "--clients", "4", "--count", "300", "--w", "1,3"])
        #expect(result["appends"] as? Int == 300, "\(result)")
        #expect(result["errors"] as? Int == 0, "\(result)")
        #expect(result["writeConcerns"] as? String == "1,3")
        let latency = try #require(result["latency"] as? [String: Double])
        #expect(latency["p50"]! > 0 && latency["p50"]! <= latency["max"]!, "\(latency)")

        let messages = try await HTTP.messages(master.url)
        #expect(messages.map(\.seq) == Array(1...300))
        // Every w=3 append was answered only after both secondaries held it; w=1 ones may
        // still be on their way, so wait for those.
        for secondary in [s1.url, s2.url] {
            try await eventually("\(secondary) holds all 300") { try await HTTP.messages(secondary).count == 300 }
        }
    }

    /// With followers of a secondary's stream, every acknowledged message reaches each of
    /// them, and the rate caps the appends.
    @Test func followersOfTheStreamGetEveryAcknowledgedMessage() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        _ = try await HTTP.post(master.url + "/messages", ["message": "before the run", "w": 3])

        let started = ContinuousClock.now
        let result = try await bench([
            "--master", master.url, "--clients", "4", "--count", "200", "--rate", "400", "--w", "2", "--followers", "5", "--follow", s2.url,
        ])
        #expect(ContinuousClock.now - started >= .milliseconds(400), "200 appends at 400/s take half a second")
        let fanOut = try #require(result["fanOut"] as? [String: Any], "\(result)")
        #expect(fanOut["followers"] as? Int == 5)
        #expect(fanOut["acknowledged"] as? Int == 200, "only this run's appends: \(fanOut)")
        #expect(fanOut["reachedEveryFollower"] as? Int == 200, "\(fanOut)")
        #expect(fanOut["eventsRead"] as? Int == 1_000, "\(fanOut)")
    }

    /// A timed run ends even if answers never come: here `w=3` with a secondary gone, which
    /// no append can meet. Each client's one request is given up 5 s after the deadline.
    @Test func aTimedRunEndsWhenNoAnswerComes() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        s2.process.signal(SIGKILL)
        _ = try await s2.process.waitForExit()

        let result = try await bench(["--master", master.url, "--clients", "2", "--duration", "1s", "--w", "3"])
        #expect(result["appends"] as? Int == 0, "\(result)")
        #expect(result["errors"] as? Int == 2, "\(result)")
        #expect(result["errorSamples"] as? [String] == ["no answer 5 s after the end of the run"], "\(result)")
        let seconds = try #require(result["seconds"] as? Double)
        #expect(seconds >= 5.9 && seconds < 10, "\(seconds)")
    }

    @Test func saysSoWhenNothingListens() async throws {
        let port = try freePort()
        let process = try await NodeProcess(["bench", "--master", "http://127.0.0.1:\(port)", "--clients", "2", "--duration", "1s"])
        #expect(try await process.waitForExit() != 0)
        #expect(process.log.contains("cannot connect to 127.0.0.1:\(port)"), "\(process.log)")
    }

    @Test func countsRefusedAppendsAsErrors() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])

        // Two nodes: w=3 is refused with 400 every time, and nothing is appended.
        let result = try await bench(["--master", master.url, "--clients", "2", "--count", "20", "--w", "3"])
        #expect(result["appends"] as? Int == 0, "\(result)")
        #expect(result["errors"] as? Int == 20, "\(result)")
        #expect(result["errorSamples"] as? [String] == ["HTTP 400"], "\(result)")
        #expect(try await HTTP.messages(master.url).isEmpty)
    }
}

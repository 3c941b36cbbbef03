import Foundation
import Testing

/// What an operator sees: Prometheus metrics and JSON logs of real processes.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct ObservabilityTests {
    /// The value of the sample `name{labels}` in Prometheus text, or nil.
    private func sample(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    @Test func metricsArePresentAndMoveWithAppends() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        let before = try await HTTP.get(master.url + "/metrics").text
        #expect(sample(before, #"replog_appends_total{outcome="ok"}"#) == 0, "\(before)")
        #expect(sample(before, #"replog_peer_status{peer="\#(s1.url)",status="healthy"}"#) == 1)
        #expect(sample(before, "replog_read_only") == 0)

        for _ in 0..<3 { _ = try await HTTP.post(master.url + "/messages", ["message": "x", "w": 2]) }
        _ = try await HTTP.post(master.url + "/messages", ["message": 1])
        let after = try await HTTP.get(master.url + "/metrics").text
        #expect(sample(after, #"replog_appends_total{outcome="ok"}"#) == 3)
        #expect(sample(after, #"replog_appends_total{outcome="bad_request"}"#) == 1)
        #expect(sample(after, #"replog_append_duration_seconds_count{w="2"}"#) == 3)
        #expect((sample(after, #"replog_replication_batch_entries_count{peer="\#(s1.url)"}"#) ?? 0) >= 1)
        #expect(sample(after, "replog_log_last_seq") == 3)

        let secondary = try await HTTP.get(s1.url + "/metrics").text
        #expect(sample(secondary, "replog_replica_stored_entries_total") == 3, "\(secondary)")
    }

    /// `replog_storage_failed` turns 1 on the node whose disk failed an fsync, for alerting.
    @Test func aFailedDiskShowsInTheMetrics() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("replog-it-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary(["--data-dir", dir, "--fail-fsync-after", "0"])
        let master = try await cluster.startMaster(secondaries: [s1.url])
        #expect(sample(try await HTTP.get(s1.url + "/metrics").text, "replog_storage_failed") == 0)
        _ = try await HTTP.post(master.url + "/messages", ["message": "x", "w": 1])
        try await eventually("s1's first fsync has failed") {
            sample(try await HTTP.get(s1.url + "/metrics").text, "replog_storage_failed") == 1
        }
        #expect(sample(try await HTTP.get(master.url + "/metrics").text, "replog_storage_failed") == 0)
    }

    @Test func jsonLogLinesParse() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary(["--log-format", "json"])
        let master = try await cluster.startMaster(secondaries: [s1.url], LocalCluster.fastHeartbeats + ["--log-format", "json"])
        _ = try await HTTP.post(master.url + "/messages", ["message": "logged", "w": 2])
        master.process.signal(SIGTERM)
        _ = try await master.process.waitForExit()
        let lines = master.process.log.split(separator: "\n").filter { !$0.hasPrefix("listening on") }
        #expect(lines.count >= 3)
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["message"] is String && object?["level"] is String && object?["time"] is String, "not a JSON log line: \(line)")
        }
        #expect(lines.contains { $0.contains(#""message":"master started""#) })
    }
}

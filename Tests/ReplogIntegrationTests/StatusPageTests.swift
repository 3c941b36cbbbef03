import Foundation
import ReplogProcess
import Testing

/// The status page in a real browser: headless Chromium renders `GET /` of a running
/// master, runs its script, and the test reads the resulting DOM. CI installs Debian's
/// `chromium` and sets REPLOG_REQUIRE_BROWSER=1, so there a missing browser fails the test
/// instead of skipping it.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct StatusPageTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }
    static let browserRequired = ProcessInfo.processInfo.environment["REPLOG_REQUIRE_BROWSER"] == "1"

    @Test(.enabled(if: chromium != nil || browserRequired, "needs Chromium (apt-get install chromium)"))
    func statusPageShowsEverySecondaryAndTheLatestMessages() async throws {
        let browser = try #require(Self.chromium, "Chromium is not installed")
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        for message in ["first <b>message</b>", "second message"] {
            _ = try await HTTP.post(master.url + "/messages", ["message": message, "w": 3])
        }

        let page = try await HTTP.get(master.url + "/")
        #expect(page.status == 200)
        for external in ["<script src", "<link ", "https://", "url("] {
            #expect(!page.text.contains(external), "the page must not load \(external)…")
        }

        let dom = try await render(master.url + "/", with: browser)
        #expect(dom.contains(s1.url) && dom.contains(s2.url), "both secondaries listed:\n\(dom)")
        #expect(dom.contains("second message"))
        #expect(dom.contains("first &lt;b&gt;message&lt;/b&gt;"), "messages are shown as text, not HTML")
        #expect(dom.contains("Writable."))
        #expect(dom.contains(#"class="status healthy""#))

        // A screenshot for people to look at (kept under .build, which CI may collect).
        let screenshot = NodeProcess.binary.deletingLastPathComponent().appendingPathComponent("status-page.png").path
        _ = try await runBrowser(browser, ["--screenshot=\(screenshot)", "--window-size=1100,900", master.url + "/"])
    }

    /// The page follows the log from the stream and shows which node holds each message:
    /// with s2's deliveries delayed, a `w=2` message is held by the master and s1, and not yet
    /// by s2. The last minute's charts are drawn.
    @Test(.enabled(if: chromium != nil || browserRequired, "needs Chromium (apt-get install chromium)"))
    func statusPageShowsWhoHoldsEachMessageAsItIsReplicated() async throws {
        let browser = try #require(Self.chromium, "Chromium is not installed")
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let s2 = try await cluster.startSecondary(["--delay", "60s"])
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        let reply = try await HTTP.post(master.url + "/messages", ["message": "held by two", "w": 2])
        #expect(reply.status == 201, "\(reply.text)")
        let dom = try await render(master.url + "/", with: browser)
        #expect(dom.contains("held by two"), "the stream delivered the message:\n\(dom)")
        #expect(dom.contains("Committed through seq 1"), "\(dom)")
        #expect(dom.contains("title=\"\(master.url) holds seq 1\""), "\(dom)")
        #expect(dom.contains("title=\"\(s1.url) holds seq 1\""), "\(dom)")
        #expect(dom.contains("title=\"\(s2.url) does not hold yet seq 1\""), "\(dom)")
        #expect(dom.contains("<polyline"), "the charts are drawn:\n\(dom)")
    }

    /// On a master whose reads need a client token, the page says so where the messages
    /// would be, and still shows the cluster's health (which stays open).
    @Test(.enabled(if: chromium != nil || browserRequired, "needs Chromium (apt-get install chromium)"))
    func statusPageSaysReadingNeedsATokenWhenItDoes() async throws {
        let browser = try #require(Self.chromium, "Chromium is not installed")
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(
            secondaries: [s1.url], LocalCluster.fastHeartbeats + ["--client-token", "status-page-token-0123456789", "--client-token-reads"])
        let dom = try await render(master.url + "/", with: browser)
        #expect(dom.contains("reading the log needs a client token"), "\(dom)")
        #expect(dom.contains(s1.url) && dom.contains("Writable."), "\(dom)")
    }

    /// With failover the page shows each node's role and epoch: the master's, and the one
    /// each member last answered in.
    @Test(.enabled(if: chromium != nil || browserRequired, "needs Chromium (apt-get install chromium)"))
    func statusPageShowsEachNodesRoleAndEpochWithFailover() async throws {
        let browser = try #require(Self.chromium, "Chromium is not installed")
        let cluster = try FailoverProcessTests.Cluster()
        defer { try? FileManager.default.removeItem(at: cluster.folder) }
        for index in [1, 2, 0] { try await cluster.start(index) }
        let reply = try await HTTP.post(cluster.urls[0] + "/messages", ["message": "in epoch 1", "w": 3])
        #expect(reply.status == 201, "\(reply.text)")
        let dom = try await render(cluster.urls[0] + "/", with: browser)
        #expect(dom.contains("master, epoch 1"), "\(dom)")
        #expect(dom.components(separatedBy: "secondary, epoch 1").count == 3, "both members in epoch 1:\n\(dom)")
    }

    /// The DOM after the page's script ran (Chromium's virtual time lets the fetches finish).
    private func render(_ url: String, with browser: String) async throws -> String {
        try await runBrowser(browser, ["--dump-dom", url])
    }

    private func runBrowser(_ browser: String, _ arguments: [String]) async throws -> String {
        // A profile of its own, removed afterwards (each one is a few hundred kilobytes).
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("replog-chromium-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        let process = try await ChildProcess(
            executable: browser,
            arguments: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000",
                        "--user-data-dir=\(profile.path)"]
                + arguments)
        _ = await process.waitForExit()
        return process.stdout
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import ReplogCore
import ReplogTestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `GET /messages/stream` (server-sent events) on the real binary: the log, then each new
/// entry as it becomes durable, in order, resumable with `Last-Event-ID`, kept alive while
/// idle, and ended when the node stops.
@Suite(.timeLimit(.minutes(2)))
struct MessageStreamTests {
    /// An open stream whose events and comments a test reads as they arrive.
    final class Stream: Sendable {
        let response: HTTPClientResponse
        private let received: AsyncStream<ServerSentEvents.Parser.Event>
        private let comments = Locked<[String]>([])
        private let reader: Task<Void, Never>

        init(_ url: String, lastEventID: Int? = nil) async throws {
            var request = HTTPClientRequest(url: url)
            if let lastEventID { request.headers.add(name: "Last-Event-ID", value: "\(lastEventID)") }
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            let (events, continuation) = AsyncStream.makeStream(of: ServerSentEvents.Parser.Event.self)
            received = events
            let body = response.body
            let comments = comments
            reader = Task {
                var parser = ServerSentEvents.Parser()
                var text = ""
                do {
                    for try await buffer in body {
                        let bytes = Array(buffer.readableBytesView)
                        text += String(decoding: bytes, as: UTF8.self)
                        comments.withLock { $0 = text.split(separator: "\n").filter { $0.hasPrefix(":") }.map(String.init) }
                        for event in parser.feed(bytes) { continuation.yield(event) }
                    }
                } catch {}
                continuation.finish()
            }
        }

        /// The next `count` events, in order.
        func next(_ count: Int) async -> [ServerSentEvents.Parser.Event] {
            var events: [ServerSentEvents.Parser.Event] = []
            for await event in received {
                events.append(event)
                if events.count == count { break }
            }
            return events
        }

        /// Whether the node ended the stream (after the events read so far).
        func ended() async -> Bool {
            for await _ in received { return false }
            return true
        }

        var commentLines: [String] { comments.withLock { $0 } }

        deinit { reader.cancel() }
    }

    private static func entry(_ event: ServerSentEvents.Parser.Event) -> String {
        let json = (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: any Sendable] ?? [:]
        return "\(event.id ?? "-")=\(json["seq"] as? Int ?? -1):\(json["message"] as? String ?? "?")"
    }

    @Test func aStreamSendsTheLogThenEachNewEntryInOrderOnEveryNode() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        for message in ["a", "b", "c"] { _ = try await HTTP.post(master.url + "/messages", ["message": message, "w": 2]) }

        let fromMaster = try await Stream(master.url + "/messages/stream")
        let fromSecondary = try await Stream(s1.url + "/messages/stream?from=2")
        #expect(fromMaster.response.status == .ok)
        #expect(fromMaster.response.headers["Content-Type"] == ["text/event-stream"])
        #expect(await fromMaster.next(3).map(Self.entry) == ["1=1:a", "2=2:b", "3=3:c"])
        #expect(await fromSecondary.next(2).map(Self.entry) == ["2=2:b", "3=3:c"])

        // Appended after the streams caught up: each stream gets it as soon as it is there.
        _ = try await HTTP.post(master.url + "/messages", ["message": "d", "w": 2])
        #expect(await fromMaster.next(1).map(Self.entry) == ["4=4:d"])
        #expect(await fromSecondary.next(1).map(Self.entry) == ["4=4:d"])
    }

    @Test func aReconnectWithLastEventIDResumesRightAfterIt() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url])
        for message in ["a", "b", "c"] { _ = try await HTTP.post(master.url + "/messages", ["message": message, "w": 2]) }
        // Last-Event-ID wins over from=: it is what a reconnecting EventSource sends.
        let resumed = try await Stream(s1.url + "/messages/stream?from=1", lastEventID: 2)
        #expect(await resumed.next(1).map(Self.entry) == ["3=3:c"])
        let bad = try await HTTP.get(s1.url + "/messages/stream?from=0")
        #expect(bad.status == 400 && (bad.json["error"] as? String)?.contains("from") == true, "\(bad.text)")
    }

    @Test func anIdleStreamGetsKeepAliveComments() async throws {
        let cluster = LocalCluster()
        // --max-long-poll also bounds the stream's idle wait (15 s otherwise).
        let s1 = try await cluster.startSecondary(port: 0, ["--max-long-poll", "50ms"])
        let stream = try await Stream(s1.url + "/messages/stream")
        try await eventually("a keep-alive comment arrives") { stream.commentLines.contains(": keep-alive") }
        #expect(stream.commentLines.first == ": replog: the log from seq 1 on")
    }

    @Test func aNodeWithAnOpenStreamStopsOnSigterm() async throws {
        let cluster = LocalCluster()
        let s1 = try await cluster.startSecondary()
        let stream = try await Stream(s1.url + "/messages/stream")
        try await eventually("the stream is open") { !stream.commentLines.isEmpty }
        s1.process.signal(SIGTERM)
        #expect(try await s1.process.waitForExit(within: .seconds(10)) == 0, "\(s1.process.log)")
        #expect(await stream.ended())
    }

    /// `replog tail` prints each message once, as it arrives, and carries on across a
    /// restart of the node it follows: no gap, no repeat.
    @Test func tailPrintsAsMessagesArriveAndResumesAfterTheNodeRestarts() async throws {
        let cluster = LocalCluster()
        let port = try freePort()
        let s1 = try await cluster.startSecondary(port: port)
        // A second secondary keeps the quorum while s1 is down (with s1 alone, an append
        // made after s1 was marked unhealthy got 503, and tail waited for it in vain).
        let s2 = try await cluster.startSecondary()
        let master = try await cluster.startMaster(secondaries: [s1.url, s2.url])
        for message in ["a", "b"] { _ = try await HTTP.post(master.url + "/messages", ["message": message, "w": 3]) }

        let tail = try await NodeProcess(["tail", "--node", s1.url, "--from", "2"])
        var lines = tail.stdoutLines.makeAsyncIterator()
        #expect(await lines.next() == "2\tb")
        #expect(try await HTTP.post(master.url + "/messages", ["message": "c", "w": 3]).status == 201)
        #expect(await lines.next() == "3\tc")

        s1.process.signal(SIGKILL)
        _ = try await s1.process.waitForExit()
        #expect(try await HTTP.post(master.url + "/messages", ["message": "d", "w": 2]).status == 201)
        // Restarted empty on the same port: the master catches it up, and tail goes on at 4.
        _ = try await cluster.startSecondary(port: port)
        #expect(await lines.next() == "4\td", "\(tail.log)")
        #expect(try await HTTP.post(master.url + "/messages", ["message": "e", "w": 3]).status == 201)
        #expect(await lines.next() == "5\te")
        #expect(tail.stdout == "2\tb\n3\tc\n4\td\n5\te\n", "\(tail.log)")
        #expect(tail.log.contains("reconnecting from seq 4"), "\(tail.log)")
    }

    /// A follower that never reads costs the node no memory beyond its socket's buffers: the
    /// stream writes a page only once the connection took the last one, so it stops when
    /// the reader's window is full, and queues nothing for it.
    @Test func aFollowerThatNeverReadsDoesNotGrowTheNodesMemory() async throws {
        let cluster = LocalCluster()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-it-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        // On disk, so that the log itself is not in the node's memory.
        let s1 = try await cluster.startSecondary(["--data-dir", folder.path])
        // The master's default heartbeats, not the tests' fast ones: with 100 ms heartbeats,
        // three missed while the secondary's disk takes 24 MB under the whole suite's load
        // would make the master read-only (503 to every append), which is not this test's
        // subject. (A CI run once ended with the secondary short of 6,001 when the test did
        // not yet check each answer; this is one possible cause, not a confirmed one.)
        let master = try await cluster.startMaster(secondaries: [s1.url], [])
        let port = Int(s1.url.split(separator: ":").last!)!
        let stuck = try StuckReader(port: port, request: "GET /messages/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        defer { stuck.close() }
        _ = try await HTTP.post(master.url + "/messages", ["message": "warm-up", "w": 2])
        let before = try residentBytes(of: s1.process.pid)

        // 24 MB for the follower to fall behind by: 6,000 messages of 4 KB in 600 requests of
        // 10 (8 writers). Small requests keep the secondary's own buffers small, so that what
        // it grows by is what it would hold for the follower (bodies of 96 messages made it
        // grow by 12-13 MiB with no follower at fault). The nodes' code is optimised even in
        // debug builds, so the 600 requests take about 1.5 s alone.
        let batch = Array(repeating: String(repeating: "x", count: 4_096), count: 10)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<75 {
                        let reply = try await HTTP.post(master.url + "/messages", ["messages": batch, "w": 2])
                        #expect(reply.status == 201, "\(reply.status) \(String(decoding: reply.body.prefix(300), as: UTF8.self))")
                    }
                }
            }
            try await group.waitForAll()
        }
        let health = try await HTTP.get(s1.url + "/health")
        #expect(health.json["seq"] as? Int == 6_001, "\(String(decoding: health.body.prefix(600), as: UTF8.self))")
        let grown = try residentBytes(of: s1.process.pid) - before
        #expect(grown < 12 << 20, "the secondary grew by \(grown >> 20) MiB while one follower read nothing")
    }
}

/// A TCP client that sends one request and then never reads, with a small receive buffer.
private final class StuckReader: Sendable {
    let socket: Int32

    init(port: Int, request: String) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var size: Int32 = 4_096
        setsockopt(socket, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        _ = request.withCString { send(socket, $0, strlen($0), 0) }
    }

    func close() { Glibc.close(socket) }
}

/// A process's resident memory (VmRSS), in bytes.
private func residentBytes(of pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
    else { throw POSIXError(.EINVAL) }
    return kib << 10
}

import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOFoundationCompat
import ReplogCore
import ReplogStorage
import Testing
@testable import ReplogNode

/// The HTTP contract of DESIGN.md, driven through the router without sockets.
@Suite struct HTTPAPITests {
    private let maxBodyBytes = 1024

    /// The master's server as `replog master` runs it: in `.live` tests, appends take the
    /// fast path (`AppendFastPath`); in `.router` tests, Hummingbird's route.
    private func masterApp(_ cluster: TestCluster) -> some ApplicationProtocol {
        cluster.masterNode.app(maxBodyBytes: maxBodyBytes)
    }

    /// A node of a cluster with failover that holds seqs 1-3 and learned that 1-2 are
    /// committed: each read level shows what it promises, and an unknown one is a `400`.
    @Test func readLevels() async throws {
        let secondary = try SecondaryNode()
        let watch = secondary.node.watch
        watch.followCommitPoint()
        try await secondary.receive((1...3).map { LogEntry(seq: $0, message: "m\($0)") }, of: "log")
        watch.committed(to: 2)
        let app = Application(router: secondary.router())
        try await app.test(.router) { client in
            func seqs(_ uri: String) async throws -> [Int] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .ok, "\(uri)")
                    return (json(response.body)["messages"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
                }
            }
            #expect(try await seqs("/messages") == [1, 2])
            #expect(try await seqs("/messages?read=committed") == [1, 2])
            #expect(try await seqs("/messages?read=local") == [1, 2, 3])
            // A long poll at the committed level waits for seq 3 to be committed, not to arrive.
            #expect(try await seqs("/messages?from=3&wait=1") == [])
            #expect(try await seqs("/messages?from=3&wait=1&read=local") == [3])
            try await client.execute(uri: "/messages?read=linearizable", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
            }
            try await client.execute(uri: "/messages?read=all", method: .get) { response in
                #expect(response.status == .badRequest)
                #expect((json(response.body)["error"] as? String)?.contains("committed, local, linearizable") == true)
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(json(response.body)["commitSeq"] as? Int == 2)
                #expect(json(response.body)["seq"] as? Int == 3)
            }
            watch.committed(to: 3)
            #expect(try await seqs("/messages") == [1, 2, 3])
        }
    }

    @Test func appendAnswers201WithSeqMessageAndW() async throws {
        let cluster = TestCluster()
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: #"{"message": "Msg1", "w": 1}"#)) { response in
                #expect(response.status == .created)
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                let body = json(response.body)
                #expect(body["seq"] as? Int == 1)
                #expect(body["message"] as? String == "Msg1")
                #expect(body["w"] as? Int == 1)
            }
            try await client.execute(uri: "/messages", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == #"{"messages":[{"message":"Msg1","seq":1}]}"#)
            }
        }
    }

    /// A page of another site cannot write through a visitor's browser: a cross-origin or
    /// cross-site POST (even with curl's form content type, which needs no preflight) is 403
    /// and appends nothing, and CORS preflights are refused. curl (no Origin) and the node's
    /// own origin keep working.
    @Test func crossSiteWritesAre403AndChangeNothing() async throws {
        let cluster = TestCluster(secondaries: 0)
        try await masterApp(cluster).test(.live) { client in
            let body = ByteBuffer(string: #"{"message": "written by another site"}"#)
            let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            var foreign = form
            foreign[.origin] = "http://evil.example"
            try await client.execute(uri: "/messages", method: .post, headers: foreign, body: body) { response in
                #expect(response.status == .forbidden)
                #expect((json(response.body)["error"] as? String)?.contains("another origin (http://evil.example)") == true)
            }
            var crossSite = form
            crossSite[HTTPFields.Element.Name("Sec-Fetch-Site")!] = "cross-site"
            try await client.execute(uri: "/messages", method: .post, headers: crossSite, body: body) { response in
                #expect(response.status == .forbidden)
            }
            try await client.execute(uri: "/messages", method: .options, headers: [.origin: "http://evil.example"]) { response in
                #expect(response.status == .forbidden)
                #expect(response.headers[.accessControlAllowOrigin] == nil)
            }
            var own = form
            own[.origin] = "http://localhost"  // the test client's Host (a browser's carries the port too)
            try await client.execute(uri: "/messages", method: .post, headers: own, body: ByteBuffer(string: #"{"message": "own page"}"#)) { response in
                #expect(response.status == .created, "\(String(buffer: response.body))")
            }
            try await client.execute(uri: "/messages", method: .post, headers: form, body: ByteBuffer(string: #"{"message": "curl"}"#)) { response in
                #expect(response.status == .created)
            }
        }
        #expect(try cluster.master.read(from: 1, limit: 10).map(\.message) == ["own page", "curl"])
    }

    /// With client tokens, an append needs `Authorization: Bearer <one of them>` (401 JSON
    /// and nothing appended otherwise); reads stay open unless they are protected too, and
    /// `/health` always is open (probes).
    @Test(arguments: [false, true])
    func clientTokensGuardAppendsAndIfChosenReads(protectsReads: Bool) async throws {
        let cluster = TestCluster(secondaries: 0)
        let tokens = ClientTokens(["first-token-0123456789", "second-token-0123456789"], protectsReads: protectsReads)
        let app = Application(router: cluster.masterNode.router(clientTokens: tokens))
        try await app.test(.router) { client in
            let body = ByteBuffer(string: #"{"message": "x"}"#)
            for authorization in [nil, "Bearer wrong-token-0123456789", "first-token-0123456789", "Bearer first-token-012345678"] {
                var headers: HTTPFields = [.contentType: "application/json"]
                if let authorization { headers[.authorization] = authorization }
                try await client.execute(uri: "/messages", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .unauthorized, "\(authorization ?? "none")")
                    #expect(response.headers[.wwwAuthenticate] == "Bearer")
                    #expect((json(response.body)["error"] as? String)?.contains("needs a client token to append") == true)
                }
            }
            for token in ["first-token-0123456789", "second-token-0123456789"] {
                let headers: HTTPFields = [.contentType: "application/json", .authorization: "Bearer \(token)"]
                try await client.execute(uri: "/messages", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .created)
                }
            }
            try await client.execute(uri: "/messages", method: .get) { response in
                #expect(response.status == (protectsReads ? .unauthorized : .ok))
            }
            try await client.execute(uri: "/messages", method: .get, headers: [.authorization: "Bearer second-token-0123456789"]) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
        #expect(try cluster.master.read(from: 1, limit: 10).map(\.message) == ["x", "x"])
    }

    /// A long poll (`?wait=MS`) answers at once when there is something at `from`, waits for
    /// the next append when there is not, and ends with an empty page when its wait runs
    /// out (on the master's clock). A wait out of range is 400.
    @Test func aLongPollWaitsForTheNextAppendOrItsTimeout() async throws {
        let cluster = TestCluster(secondaries: 0)
        try await masterApp(cluster).test(.router) { client in
            _ = try await cluster.append("first", w: 1)
            try await client.execute(uri: "/messages?from=1&wait=60000", method: .get) { response in
                #expect(String(buffer: response.body) == #"{"messages":[{"message":"first","seq":1}]}"#)
            }
            async let waiting = client.execute(uri: "/messages?from=2&wait=60000", method: .get) { String(buffer: $0.body) }
            await cluster.clock.waitForSleepers(1)  // the long poll's timeout: it is waiting now
            #expect(cluster.master.watch.waitingCount == 1)
            _ = try await cluster.append("second", w: 1)
            #expect(try await waiting == #"{"messages":[{"message":"second","seq":2}]}"#)
            #expect(cluster.master.watch.waitingCount == 0)

            async let empty = client.execute(uri: "/messages?from=3&wait=1000", method: .get) { String(buffer: $0.body) }
            await cluster.clock.waitForSleepers(1)
            cluster.clock.advance(by: .seconds(1))
            #expect(try await empty == #"{"messages":[]}"#)
            #expect(cluster.master.watch.waitingCount == 0, "a reader that stopped waiting is forgotten")

            for bad in ["60001", "-1", "soon"] {
                try await client.execute(uri: "/messages?from=1&wait=\(bad)", method: .get) { response in
                    #expect(response.status == .badRequest, "wait=\(bad)")
                }
            }
        }
    }

    /// A secondary's long poll ends when a delivery makes the entry listable there.
    @Test func aSecondarysLongPollEndsWhenTheEntryArrives() async throws {
        let clock = ManualClock()
        let secondary = try SecondaryNode(clock: clock)
        try await Application(router: secondary.router()).test(.router) { client in
            async let waiting = client.execute(uri: "/messages?from=1&wait=60000", method: .get) { String(buffer: $0.body) }
            await clock.waitForSleepers(1)
            #expect(secondary.node.watch.waitingCount == 1)
            try await secondary.receive([LogEntry(seq: 2, message: "b")], of: "L")  // held back: not listable yet
            #expect(secondary.node.watch.waitingCount == 1)
            try await secondary.receive([LogEntry(seq: 1, message: "a")], of: "L")
            #expect(try await waiting == #"{"messages":[{"message":"a","seq":1},{"message":"b","seq":2}]}"#)
        }
    }

    /// A key reused for a different message is a client's mistake, not a retry: 409 naming
    /// the key, and nothing appended. The identical retry still answers the original seq.
    @Test func aRetriedIDWithDifferentContentIs409AndAppendsNothing() async throws {
        let cluster = TestCluster(secondaries: 0)
        try await masterApp(cluster).test(.router) { client in
            let first = #"{"message": "pay 10", "id": "order-1"}"#
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: first)) { response in
                #expect(response.status == .created)
            }
            let changed = #"{"message": "pay 20", "id": "order-1"}"#
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: changed)) { response in
                #expect(response.status == .conflict)
                let body = json(response.body)
                #expect((body["error"] as? String)?.contains(#"id "order-1" was already used for a different message (seq 1)"#) == true, "\(body)")
                #expect(body["id"] as? String == "order-1" && body["seq"] as? Int == 1)
            }
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: first)) { response in
                #expect(response.status == .created)
                #expect(json(response.body)["seq"] as? Int == 1)
            }
        }
        #expect(try cluster.master.read(from: 1, limit: 10).map(\.message) == ["pay 10"])
    }

    /// The 201 answer is written without JSONEncoder: whatever the message holds, it must
    /// read back as the same message, in the same bytes as JSONEncoder would write.
    @Test func appendAnswerCarriesAnyMessageExactly() async throws {
        let messages = [
            "plain", "", #"quote " and backslash \ and slash /"#, "line\nfeed\r\ttab",
            String((0..<32).map { Character(Unicode.Scalar(UInt8($0))) }), "ünï ✓ 😀 \u{2028}\u{7F}",
        ]
        let cluster = TestCluster()
        try await masterApp(cluster).test(.router) { client in
            for (index, message) in messages.enumerated() {
                let request = try JSONSerialization.data(withJSONObject: ["message": message, "w": 1])
                try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(data: request)) { response in
                    #expect(response.status == .created)
                    let expected = Master.AppendResult(seq: index + 1, message: message, w: 1)
                    #expect((try? JSON.decoder.decode(Master.AppendResult.self, from: response.body)) == expected, "\(message.debugDescription)")
                    let encoded = (try? JSON.encoder.encode(expected)).map { String(decoding: $0, as: UTF8.self) }
                    #expect(String(buffer: response.body) == encoded)
                }
            }
        }
    }

    /// A batch is appended at consecutive seqs and answered with where it went once `w` nodes
    /// hold all of it; a retry with its `id` appends nothing, and the same `id` with other
    /// messages is a conflict. More than 10,000 messages is refused.
    @Test func aBatchAnswers201WithItsSeqsAndEveryNodeListsAllOfIt() async throws {
        let cluster = TestCluster()
        try await cluster.withReplication {
        try await Application(router: cluster.masterNode.router(maxBodyBytes: 1 << 20)).test(.router) { client in
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: #"{"message": "before"}"#)) { response in
                #expect(response.status == .created)
            }
            let batch = #"{"messages": ["a", "b", "c\n"], "w": 3, "id": "batch-1"}"#
            for _ in 1...2 {
                try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: batch)) { response in
                    #expect(response.status == .created)
                    #expect(String(buffer: response.body) == #"{"count":3,"firstSeq":2,"lastSeq":4,"w":3}"#)
                }
            }
            try await client.execute(
                uri: "/messages", method: .post, body: ByteBuffer(string: #"{"messages": ["a", "x", "c\n"], "id": "batch-1"}"#)
            ) { response in
                #expect(response.status == .conflict)
            }
            let tooMany = "{\"messages\": [" + Array(repeating: "\"m\"", count: 10_001).joined(separator: ",") + "]}"
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: tooMany)) { response in
                #expect(response.status == .badRequest)
                #expect((json(response.body)["error"] as? String)?.contains("1 to 10000 messages") == true)
            }
        }
        }
        let expected = ["before", "a", "b", "c\n"].enumerated().map { LogEntry(seq: $0.offset + 1, message: $0.element) }
        #expect(try cluster.master.read(from: 1, limit: .max) == expected)
        for name in cluster.names { #expect(try cluster.replica(name).read(from: 1, limit: .max) == expected) }
        // Written as one batch: a replication read of its first record carries all of it.
        #expect(try cluster.master.store.readRecords(from: 2, limit: 1, maxBytes: 0)?.seqs == 2...4)
    }

    /// A body over a route's limit is refused with the limit of that route (a vote's, an
    /// append's), however many parts it came in: NIO's own figure is what was left of the
    /// limit after the first part.
    @Test func aTooLargeBodyNamesTheLimitOfItsRoute() async throws {
        let secondary = try SecondaryNode()
        try await Application(router: secondary.router()).test(.router) { client in
            let vote = ByteBuffer(string: String(repeating: "x", count: (64 << 10) + 1))
            try await client.execute(uri: "/replicate/vote", method: .post, body: vote) { response in
                #expect(response.status == .contentTooLarge)
                #expect(json(response.body)["error"] as? String == "request body is larger than 65536 bytes")
            }
        }
        #expect(secondary.node.status.epoch == nil, "the vote was never read")
        let cluster = TestCluster()
        try await Application(router: cluster.masterNode.router(maxBodyBytes: 40_000)).test(.router) { client in
            let append = ByteBuffer(string: String(repeating: "x", count: 70_000))
            try await client.execute(uri: "/messages", method: .post, body: append) { response in
                #expect(response.status == .contentTooLarge)
                #expect(json(response.body)["error"] as? String == "request body is larger than 40000 bytes")
            }
        }
        #expect(cluster.master.store.lastSeq == 0)
    }

    /// Every bad input gets a JSON `{"error": …}` with the right status, and the log stays empty.
    @Test(arguments: [
        ("not json", HTTPResponse.Status.badRequest, "malformed JSON"),
        (#"{"w": 1}"#, .badRequest, "missing field"),
        (#"{"message": 42}"#, .badRequest, "must be a string"),
        (#"{"message": "x", "w": "two"}"#, .badRequest, "must be an integer"),
        (#"{"message": "x", "w": 0}"#, .badRequest, "at least 1"),
        (#"{"message": "x", "w": 4}"#, .badRequest, "between 1 and 3"),
        (#"{"message": "x", "timeout": "soon"}"#, .badRequest, "must be an integer"),
        (String(repeating: "x", count: 2048), .contentTooLarge, "larger than 1024 bytes"),
        (#"{"messages": []}"#, .badRequest, "1 to 10000 messages"),
        (#"{"messages": ["a", 2]}"#, .badRequest, "array of strings"),
        (#"{"messages": "a"}"#, .badRequest, "array of strings"),
        (#"{"messages": ["a"], "message": "b"}"#, .badRequest, "not both"),
        (#"{"messages": ["a", "b"], "w": 4}"#, .badRequest, "between 1 and 3"),
    ])
    func badInputIsRefusedAndChangesNothing(body: String, status: HTTPResponse.Status, reason: String) async throws {
        let cluster = TestCluster()
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: body)) { response in
                #expect(response.status == status)
                let error = json(response.body)["error"] as? String
                #expect(error?.contains(reason) == true, "got \(String(buffer: response.body))")
            }
            try await client.execute(uri: "/messages", method: .get) { response in
                #expect(String(buffer: response.body) == #"{"messages":[]}"#)
            }
        }
        #expect(cluster.master.store.lastSeq == 0)
    }

    /// JSON (or curl's default `-d` type, or none) is read; a form upload or plain text is refused.
    @Test(arguments: [
        ("application/json", HTTPResponse.Status.created), ("application/json; charset=utf-8", .created),
        ("application/x-www-form-urlencoded", .created), ("text/plain", .unsupportedMediaType),
        ("multipart/form-data", .unsupportedMediaType),
    ])
    func contentTypes(contentType: String, status: HTTPResponse.Status) async throws {
        let cluster = TestCluster(secondaries: 0)
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(
                uri: "/messages", method: .post, headers: [.contentType: contentType],
                body: ByteBuffer(string: #"{"message": "x"}"#)
            ) { response in
                #expect(response.status == status)
            }
        }
        #expect(cluster.master.store.lastSeq == (status == .created ? 1 : 0))
    }

    @Test func wrongMethodIs405WithAllow() async throws {
        let cluster = TestCluster()
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/health", method: .delete) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET")
                #expect(json(response.body)["error"] is String)
            }
        }
    }

    @Test func unknownRouteIs404JSON() async throws {
        let cluster = TestCluster()
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/nope", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(json(response.body)["error"] as? String == "no route for GET /nope")
            }
        }
    }

    @Test func pagingWithFromAndLimit() async throws {
        let cluster = TestCluster()
        for index in 1...5 { _ = try await cluster.append("m\(index)", w: 1) }
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/messages?from=2&limit=2", method: .get) { response in
                let messages = json(response.body)["messages"] as? [[String: Any]]
                #expect(messages?.compactMap { $0["seq"] as? Int } == [2, 3])
            }
            try await client.execute(uri: "/messages?from=0", method: .get) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    /// Long listings are streamed page by page; the JSON is the same as for a short one.
    @Test func longListingsStreamTheSameJSON() async throws {
        let cluster = TestCluster(secondaries: 0)
        for index in 1...2_500 { _ = try await cluster.append("m\(index)", w: 1) }
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/messages", method: .get) { response in
                let seqs = (json(response.body)["messages"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int }
                #expect(seqs == Array(1...2_500))
            }
            try await client.execute(uri: "/messages?from=10&limit=1500", method: .get) { response in
                let messages = json(response.body)["messages"] as? [[String: Any]] ?? []
                #expect(messages.compactMap { $0["seq"] as? Int } == Array(10..<1_510))
                #expect(messages.first?["message"] as? String == "m10")
            }
        }
    }

    /// A page holds at most `listingPageBytes` of records (a reader holds one page while its
    /// connection takes it), so a page of large messages is shorter than asked, and the list
    /// goes on behind it: whole, in order, as long as asked.
    @Test func pagesOfLargeMessagesAreCutByTheirBytesAndListsStayWhole() async throws {
        let cluster = TestCluster(secondaries: 1)
        let large = String(repeating: "x", count: 600 << 10)
        try await cluster.withReplication { () async throws in
            for index in 1...12 { _ = try await cluster.append("\(index)" + large, w: 2) }
        }
        for (node, page) in [("master", try await cluster.master.list(from: 1, limit: listingPageSize)),
                             ("secondary", try await cluster.replica(cluster.names[0]).list(from: 1, limit: listingPageSize))] {
            #expect(page.count == 6, "\(node): \(page.count) entries of 600 KiB in one page of at most \(listingPageBytes) bytes")
        }
        try await masterApp(cluster).test(.router) { client in
            for (query, seqs) in [("", Array(1...12)), ("?from=2&limit=9", Array(2...10)), ("?from=7", Array(7...12))] {
                try await client.execute(uri: "/messages" + query, method: .get) { response in
                    let messages = json(response.body)["messages"] as? [[String: Any]] ?? []
                    #expect(messages.compactMap { $0["seq"] as? Int } == seqs, "GET /messages\(query)")
                    #expect(messages.allSatisfy { ($0["message"] as? String)?.hasPrefix("\($0["seq"] as? Int ?? 0)x") == true })
                }
            }
        }
    }

    @Test func healthShowsRoleQuorumAndEverySecondary() async throws {
        let cluster = TestCluster()
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
                let body = json(response.body)
                #expect(body["role"] as? String == "master")
                #expect(body["readOnly"] as? Bool == false)
                #expect(body["quorum"] as? [String: Int] == ["required": 2, "available": 3])
                let secondaries = body["secondaries"] as? [[String: Any]] ?? []
                #expect(secondaries.compactMap { $0["url"] as? String } == ["s1", "s2"])
                #expect(secondaries.compactMap { $0["status"] as? String } == ["healthy", "healthy"])
            }
        }
    }

    @Test func noQuorumIs503WithTheContractMessage() async throws {
        let cluster = TestCluster(thresholds: .init(suspectAfterMisses: 1, unhealthyAfterMisses: 2))
        for _ in 0..<2 {
            cluster.master.onHeartbeatMissed("s1", error: TransportError.timedOut)
            cluster.master.onHeartbeatMissed("s2", error: TransportError.timedOut)
        }
        try await masterApp(cluster).test(.router) { client in
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: #"{"message": "x", "w": 1}"#)) { response in
                #expect(response.status == .serviceUnavailable)
                let body = json(response.body)
                #expect(body["error"] as? String == "no quorum: master is read-only")
                #expect(body["quorum"] as? [String: Int] == ["required": 2, "available": 1])
            }
        }
        #expect(cluster.master.store.lastSeq == 0)
    }

    @Test func secondaryRefusesClientAppendsWithJSON() async throws {
        let app = Application(router: try SecondaryNode().router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/messages", method: .post, body: ByteBuffer(string: #"{"message": "x"}"#)) { response in
                #expect(response.status == .methodNotAllowed)
                #expect((json(response.body)["error"] as? String)?.contains("send appends to the master") == true)
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(json(response.body)["role"] as? String == "secondary")
                #expect(json(response.body)["seq"] as? Int == 0)
            }
        }
    }

    /// The internal endpoint acknowledges duplicates and never stores twice.
    @Test func replicationEndpointIsIdempotent() async throws {
        let app = Application(router: try SecondaryNode().router())
        let batch = #"{"log": "L", "entries": [{"seq": 1, "message": "a"}, {"seq": 2, "message": "b"}]}"#
        try await app.test(.router) { client in
            for _ in 0..<2 {
                try await client.execute(uri: "/replicate", method: .post, body: ByteBuffer(string: batch)) { response in
                    #expect(response.status == .ok)
                    #expect(json(response.body)["seq"] as? Int == 2)
                }
            }
            try await client.execute(uri: "/messages", method: .get) { response in
                #expect(String(buffer: response.body) == #"{"messages":[{"message":"a","seq":1},{"message":"b","seq":2}]}"#)
            }
        }
    }

    /// With a cluster secret, the forged delivery of issue 18 (JSON entries with the log id
    /// read from /health) is refused with 401 and stores nothing; so is a heartbeat without
    /// proof, or with proof of another secret. A signed delivery is stored. The secret is
    /// never echoed.
    @Test func internalRequestsWithoutProofOfTheSecretAre401AndChangeNothing() async throws {
        let text = "correct horse battery staple"
        let secret = try #require(ClusterSecret(text))
        let secondary = try SecondaryNode()
        let replica = secondary.replica
        let app = Application(router: secondary.router(secret: secret))
        let signature = HTTPFields.Element.Name(ClusterSecret.header)!
        try await app.test(.router) { client in
            let forged = #"{"log": "L", "entries": [{"seq": 1, "message": "FORGED"}]}"#
            try await client.execute(uri: "/replicate", method: .post, body: ByteBuffer(string: forged)) { response in
                #expect(response.status == .unauthorized)
                #expect(!String(buffer: response.body).contains(text))
            }
            try await client.execute(uri: "/replicate", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            let records = RecordFraming.encode([LogEntry(seq: 1, message: "real")])
            var headers: HTTPFields = [.contentType: InternalWire.recordsContentType, HTTPFields.Element.Name(InternalWire.logHeader)!: "L"]
            headers[signature] = ClusterSecret("another secret, just as long")!.sign(method: "POST", path: "/replicate", log: "L", body: records)
            try await client.execute(uri: "/replicate", method: .post, headers: headers, body: ByteBuffer(bytes: records)) { response in
                #expect(response.status == .unauthorized)
            }
            #expect(replica.replicaState.seq == 0, "nothing was stored")
            headers[signature] = secret.sign(method: "POST", path: "/replicate", log: "L", body: records)
            try await client.execute(uri: "/replicate", method: .post, headers: headers, body: ByteBuffer(bytes: records)) { response in
                #expect(response.status == .ok)
            }
            let probe: HTTPFields = [signature: secret.sign(method: "GET", path: "/replicate", log: nil, body: [UInt8]())]
            try await client.execute(uri: "/replicate", method: .get, headers: probe) { response in
                #expect(response.status == .ok)
                #expect(json(response.body)["seq"] as? Int == 1)
            }
            // The master's question where a diverged log parts: signed like the rest.
            try await client.execute(uri: "/replicate/hash?seq=1", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/replicate/hash?seq=1", method: .get, headers: probe) { response in
                #expect(response.status == .unauthorized, "a heartbeat's signature is not one for /replicate/hash")
            }
            let hashQuestion: HTTPFields = [signature: secret.sign(method: "GET", path: "/replicate/hash", log: nil, body: [UInt8]())]
            try await client.execute(uri: "/replicate/hash?seq=1", method: .get, headers: hashQuestion) { response in
                #expect(response.status == .ok)
                #expect(json(response.body)["hash"] as? String == replica.store.hash(at: 1))
            }
        }
        #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["real"])
    }

    /// A captured, validly signed delivery sent again (a replay) changes nothing: replayed
    /// at once it is a duplicate, replayed after later deliveries it neither appends again
    /// nor reorders; and replayed against a log it does not match, it is refused.
    @Test func aReplayedSignedDeliveryAppendsNothingAndReordersNothing() async throws {
        let secret = try #require(ClusterSecret("correct horse battery staple"))
        let secondary = try SecondaryNode()
        let replica = secondary.replica
        let app = Application(router: secondary.router(secret: secret))
        func signed(_ entries: [LogEntry]) -> (HTTPFields, ByteBuffer) {
            let records = RecordFraming.encode(entries)
            var headers: HTTPFields = [.contentType: InternalWire.recordsContentType, HTTPFields.Element.Name(InternalWire.logHeader)!: "L"]
            headers[HTTPFields.Element.Name(ClusterSecret.header)!] = secret.sign(method: "POST", path: "/replicate", log: "L", body: records)
            return (headers, ByteBuffer(bytes: records))
        }
        let first = signed([LogEntry(seq: 1, message: "a"), LogEntry(seq: 2, message: "b")])
        let later = signed([LogEntry(seq: 3, message: "c")])
        let forgedLater = signed([LogEntry(seq: 2, message: "replaced")])
        try await app.test(.router) { client in
            for (headers, body) in [first, first, later, first, later] {
                try await client.execute(uri: "/replicate", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .ok)
                }
            }
            // Signed, but another message at a seq it holds: refused, as a diverged log.
            try await client.execute(uri: "/replicate", method: .post, headers: forgedLater.0, body: forgedLater.1) { response in
                #expect(response.status == .conflict)
                #expect((json(response.body)["error"] as? String)?.hasPrefix("diverged at seq 2") == true)
                #expect(json(response.body)["refusal"] as? String == "diverged")
            }
        }
        #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["a", "b", "c"])
    }

    /// The commit point a master sends is covered by its signature with the epoch stamp: a
    /// captured heartbeat with another `Replog-Commit` is refused (401), or a man in the
    /// middle could make a member show its readers what the cluster did not commit.
    @Test func aSignedHeartbeatWithAnotherCommitPointIs401() async throws {
        let secret = try #require(ClusterSecret("correct horse battery staple"))
        let app = Application(router: try SecondaryNode().router(secret: secret))
        let stamp = EpochStamp(
            epoch: 1, master: "m", members: ["m", "s"], you: "s", history: EpochHistory([.init(epoch: 1, after: 0)]), startHash: nil
        ).headerValue
        let signature = secret.sign(
            method: "GET", path: "/replicate", log: ClusterSecret.signedContext(log: nil, stamp: stamp, commit: "5"), body: [UInt8]())
        try await app.test(.router) { client in
            for (commit, status) in [("5", HTTPResponse.Status.ok), ("9", .unauthorized)] {
                let headers: HTTPFields = [
                    HTTPFields.Element.Name(InternalWire.epochHeader)!: stamp, HTTPFields.Element.Name(InternalWire.commitHeader)!: commit,
                    HTTPFields.Element.Name(ClusterSecret.header)!: signature,
                ]
                try await client.execute(uri: "/replicate", method: .get, headers: headers) { response in
                    #expect(response.status == status, "Replog-Commit: \(commit)")
                }
            }
        }
    }

    /// A delivery with a seq below 1, or without a log id, is refused with 400 and stores
    /// nothing. (The fuzzer found that seq 0 crashed a secondary.)
    @Test func aDeliveryOutsideTheLogIsRefused() async throws {
        let secondary = try SecondaryNode()
        let replica = secondary.replica
        try await secondary.receive([LogEntry(seq: 1, message: "a")], of: "L")
        let app = Application(router: secondary.router())
        try await app.test(.router) { client in
            for body in [
                #"{"log": "L", "entries": [{"seq": 0, "message": ""}]}"#,
                #"{"log": "L", "entries": [{"seq": -3, "message": "x"}]}"#,
                #"{"log": "", "entries": [{"seq": 2, "message": "x"}]}"#,
            ] {
                try await client.execute(uri: "/replicate", method: .post, body: ByteBuffer(string: body)) { response in
                    #expect(response.status == .badRequest, "\(body)")
                }
            }
            // A digit that is not ASCII is no number here ("³" once read as "as far as you can go").
            for query in ["/replicate/hash?seq=%C2%B3", "/messages?from=%C2%BD"] {
                try await client.execute(uri: query, method: .get) { response in
                    #expect(response.status == .badRequest, "\(query)")
                }
            }
        }
        #expect(try replica.read(from: 1, limit: 10).map(\.message) == ["a"])
        #expect(replica.replicaState.seq == 1)
    }

    /// The heartbeat reads the internal answer type from `GET /replicate`, not `/health`
    /// (which is for people and may change).
    @Test func heartbeatEndpointAnswersTheInternalReplicaState() async throws {
        let secondary = try SecondaryNode()
        try await secondary.receive([LogEntry(seq: 1, message: "a")], of: "L")
        let app = Application(router: secondary.router())
        try await app.test(.router) { client in
            try await client.execute(uri: "/replicate", method: .get) { response in
                #expect(response.status == .ok)
                let state = try JSONDecoder().decode(ReplicaState.self, from: Data(buffer: response.body))
                // The hash of the log at its seq, for the master to compare (HashChainTests pins it).
                #expect(state == ReplicaState(seq: 1, incarnation: secondary.replica.replicaState.incarnation, logID: "L", hash: "00f87f5348b32d1c"))
            }
        }
    }

    /// What the master sends: the log's binary records. A damaged batch stores nothing.
    @Test func replicationEndpointTakesBinaryRecordsAndRefusesDamagedOnes() async throws {
        let secondary = try SecondaryNode()
        let replica = secondary.replica
        let app = Application(router: secondary.router())
        let entries = [LogEntry(seq: 1, message: "a"), LogEntry(seq: 2, message: "ünï ✓")]
        let records = RecordFraming.encode(entries)
        let headers: HTTPFields = [.contentType: "application/x-replog-records", HTTPFields.Element.Name("Replog-Log")!: "L"]
        try await app.test(.router) { client in
            var damaged = records
            damaged[damaged.count - 1] ^= 0x20
            try await client.execute(uri: "/replicate", method: .post, headers: headers, body: ByteBuffer(bytes: damaged)) { response in
                #expect(response.status == .badRequest)
                #expect((json(response.body)["error"] as? String)?.contains("checksum mismatch") == true, "\(String(buffer: response.body))")
            }
            try await client.execute(
                uri: "/replicate", method: .post, headers: [.contentType: "application/x-replog-records"], body: ByteBuffer(bytes: records)
            ) { response in
                #expect(response.status == .badRequest)
                #expect((json(response.body)["error"] as? String)?.contains("Replog-Log") == true)
            }
            #expect(try replica.read(from: 1, limit: 10).isEmpty)

            try await client.execute(uri: "/replicate", method: .post, headers: headers, body: ByteBuffer(bytes: records)) { response in
                #expect(response.status == .ok)
                #expect(json(response.body)["seq"] as? Int == 2)
                #expect(json(response.body)["logID"] as? String == "L")
            }
            #expect(try replica.read(from: 1, limit: 10) == entries)
        }
    }
}

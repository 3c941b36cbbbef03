import Histogram
import NIOCore
import NIOEmbedded
import Testing
@testable import ReplogBench

/// The load generator's wire protocols, byte for byte, on an in-memory channel: what each
/// client sends, and how it reads each answer into a success or an error.
@Suite struct ClosedLoopClientTests {
    /// A client of `speaking` on an embedded channel, with a budget of `count` operations.
    private func client<Speaking: BenchProtocol>(_ speaking: Speaking, count: Int) throws -> (EmbeddedChannel, Budget) {
        let channel = EmbeddedChannel()
        let budget = Budget(count: count, deadline: nil)
        try Speaking.addCodecs(to: channel.pipeline.syncOperations)
        try channel.pipeline.syncOperations.addHandler(
            ClosedLoopClient(speaking: speaking, firstTurn: 0, budget: budget, finished: channel.eventLoop.makePromise()))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()  // fires channelActive
        return (channel, budget)
    }

    private func sent(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    @Test func redisPushesThenWaitsAndChecksTheReplicaCount() throws {
        let (channel, budget) = try client(RedisPushAndWait(size: 3, replicas: 2), count: 2)
        let payload = #"{"message":"xxx"}"#
        let command = "*3\r\n$5\r\nRPUSH\r\n$6\r\nreplog\r\n$\(payload.utf8.count)\r\n\(payload)\r\n*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$1\r\n0\r\n"
        #expect(try sent(channel) == command)

        try channel.writeInbound(ByteBuffer(string: ":1\r\n:2\r\n"))
        #expect((budget.done, budget.errors) == (1, 0))
        #expect(try sent(channel) == command, "the next operation follows the answer")

        try channel.writeInbound(ByteBuffer(string: ":2\r\n:1\r\n"))  // only one replica had it
        #expect((budget.done, budget.errors) == (1, 1))
        #expect(budget.errorSamples == ["WAIT answered :1"])
        #expect(!channel.isActive, "the budget is used up: the client closes")
    }

    @Test func natsSubscribesThenPublishesAndReadsTheStreamAck() throws {
        let (channel, budget) = try client(NATSJetStreamPublish(subject: "replog.messages", size: 3), count: 2)
        let publish = "PUB replog.messages _INBOX.replog-bench.0 17\r\n{\"message\":\"xxx\"}\r\n"
        #expect(try sent(channel) == "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.replog-bench.0 1\r\n" + publish)

        try channel.writeInbound(ByteBuffer(string: "INFO {\"server_id\":\"x\"}\r\n"))  // not an answer
        let ack = #"{"stream":"REPLOG","seq":1}"#
        try channel.writeInbound(ByteBuffer(string: "MSG _INBOX.replog-bench.0 1 \(ack.utf8.count)\r\n\(ack)\r\n"))
        #expect((budget.done, budget.errors) == (1, 0))
        #expect(try sent(channel) == publish)

        let refusal = #"{"error":{"code":503,"description":"no quorum"}}"#
        try channel.writeInbound(ByteBuffer(string: "MSG _INBOX.replog-bench.0 1 \(refusal.utf8.count)\r\n\(refusal)\r\n"))
        #expect((budget.done, budget.errors) == (1, 1))
        #expect(budget.errorSamples.first?.hasPrefix("JetStream answered") == true)
    }

    @Test func httpPostsJSONAndCountsOnly201AsSuccess() throws {
        let append = try HTTPAppend(master: "http://127.0.0.1:5000", writeConcerns: [3], size: 3)
        let (channel, budget) = try client(append, count: 2)
        let request = try sent(channel)
        #expect(request.hasPrefix("POST /messages HTTP/1.1\r\n"), "\(request)")
        let body = String(try #require(request.split(separator: "\r\n\r\n", maxSplits: 1).last))
        #expect(body == #"{"message":"xxx","w":3}"# || body == #"{"w":3,"message":"xxx"}"#)
        #expect(request.contains("Content-Type: application/json\r\n") && request.contains("Content-Length: \(body.utf8.count)\r\n"))

        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"))
        #expect((budget.done, budget.errors) == (1, 0))
        #expect(try sent(channel) == request)

        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"))
        #expect((budget.done, budget.errors) == (1, 1))
        #expect(budget.errorSamples == ["HTTP 503"])
    }

    @Test func etcdPutsTheMessageThroughTheGatewayAndCountsOnly200AsSuccess() throws {
        let (channel, budget) = try client(HTTPAppend.etcdPut(host: "127.0.0.1", port: 2379, size: 3), count: 2)
        let request = try sent(channel)
        #expect(request.hasPrefix("POST /v3/kv/put HTTP/1.1\r\n"), "\(request)")
        let body = String(try #require(request.split(separator: "\r\n\r\n", maxSplits: 1).last))
        // key "replog-bench" and value {"message":"xxx"}, base64 as the gateway wants them.
        #expect(body == #"{"key":"cmVwbG9nLWJlbmNo","value":"eyJtZXNzYWdlIjoieHh4In0="}"#)
        #expect(request.contains("Host: 127.0.0.1:2379\r\n"))

        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"))
        #expect((budget.done, budget.errors) == (1, 0))
        #expect(try sent(channel) == request)

        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"))
        #expect((budget.done, budget.errors) == (1, 1), "etcd answers 200; anything else is an error")
    }
}

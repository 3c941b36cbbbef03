import NIOCore
import ReplogEcho

/// Just enough of the NATS protocol for the JetStream baseline: publish with a reply
/// subject and wait for the stream's acknowledgement, `{"stream":"…","seq":N}`, which
/// arrives as a `MSG` line followed by its payload line.
struct NATSJetStreamPublish: BenchProtocol {
    typealias AnswerPart = EchoFrame

    private let subject: String
    private let payload: String
    /// This connection's reply subject (set by the greeting).
    private var inbox = ""
    /// The next line is the payload of an acknowledgement.
    private var expectingPayload = false

    init(subject: String, size: Int) {
        self.subject = subject
        self.payload = benchMessageJSON(size: size)
    }

    static func addCodecs(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addLineDecoder(maxLineLength: 1 << 20)
    }

    mutating func writeGreeting(client: Int, context: ChannelHandlerContext) {
        inbox = "_INBOX.replog-bench.\(client)"
        context.write(NIOAny(ByteBuffer(string: "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB \(inbox) 1\r\n")), promise: nil)
    }

    func writeRequest(turn: Int, context: ChannelHandlerContext) {
        context.write(NIOAny(ByteBuffer(string: "PUB \(subject) \(inbox) \(payload.utf8.count)\r\n\(payload)\r\n")), promise: nil)
    }

    mutating func receive(_ part: EchoFrame) -> Outcome? {
        guard case .line(let line) = part else { return .failed("a NATS line over 1 MiB") }
        if expectingPayload {
            expectingPayload = false
            return line.contains("\"error\"") ? .failed("JetStream answered \(line)") : .succeeded
        }
        if line.hasPrefix("MSG ") {
            expectingPayload = true
        } else if line.hasPrefix("-ERR") {
            return .failed("NATS answered \(line)")
        }
        return nil  // INFO, +OK, PING, PONG
    }
}

import NIOCore
import ReplogEcho

/// Just enough of the Redis protocol (RESP) for the baseline: `RPUSH` then `WAIT`,
/// pipelined, each answered with an integer line (`:3`).
struct RedisPushAndWait: BenchProtocol {
    typealias AnswerPart = EchoFrame

    private let command: ByteBuffer
    private let replicas: Int
    /// RPUSH's answer while WAIT's is still coming.
    private var pushed: String?

    /// - Parameter batch: messages per `RPUSH` (Redis appends them to the list at once).
    init(size: Int, replicas: Int, batch: Int = 1) {
        let payload = benchMessageJSON(size: size)
        let command = Self.command(["RPUSH", "replog"] + Array(repeating: payload, count: batch)) + Self.command(["WAIT", "\(replicas)", "0"])
        self.command = ByteBuffer(string: command)
        self.replicas = replicas
    }

    static func addCodecs(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.addLineDecoder(maxLineLength: 1 << 20)
    }

    func writeRequest(turn: Int, context: ChannelHandlerContext) {
        context.write(NIOAny(command), promise: nil)
    }

    mutating func receive(_ part: EchoFrame) -> Outcome? {
        guard case .line(let line) = part else { return .failed("a Redis reply over 1 MiB") }
        guard let pushed else {
            pushed = line
            return nil
        }
        self.pushed = nil
        guard pushed.hasPrefix(":") else { return .failed("RPUSH answered \(pushed)") }
        guard line.hasPrefix(":"), let count = Int(line.dropFirst()), count >= replicas else {
            return .failed("WAIT answered \(line)")
        }
        return .succeeded
    }

    private static func command(_ parts: [String]) -> String {
        "*\(parts.count)\r\n" + parts.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
    }
}

import NIOCore

/// One inbound unit of the echo protocol.
public enum EchoFrame: Sendable, Equatable {
    /// A line of text, without its line ending.
    case line(String)
    /// A line longer than the limit arrived; its bytes were dropped.
    case tooLong
}

/// Splits a byte stream at `\n` (a trailing `\r` is dropped too) and refuses lines over
/// `maxLineLength` bytes without buffering them: it reports `.tooLong` once, then skips
/// to the next newline. So a client that never sends a newline cannot grow our memory.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = EchoFrame

    let maxLineLength: Int
    private var discarding = false

    init(maxLineLength: Int) {
        self.maxLineLength = maxLineLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > maxLineLength {
                if !discarding { context.fireChannelRead(wrapInboundOut(.tooLong)) }
                discarding = true
                buffer.moveReaderIndex(to: buffer.writerIndex)
            }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        if discarding || length > maxLineLength {
            if !discarding { context.fireChannelRead(wrapInboundOut(.tooLong)) }
            discarding = false
            buffer.moveReaderIndex(forwardBy: length + 1)
            return .continue
        }
        var line = buffer.readString(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if line.hasSuffix("\r") { line.removeLast() }
        context.fireChannelRead(wrapInboundOut(.line(line)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A last line without a newline still counts, unless it was too long.
        if buffer.readableBytes > 0, !discarding, let line = buffer.readString(length: buffer.readableBytes) {
            context.fireChannelRead(wrapInboundOut(.line(line)))
        }
        return .needMoreData
    }
}

/// Writes each outbound string followed by `\n`.
struct LineEncoder: MessageToByteEncoder {
    typealias OutboundIn = String

    func encode(data: String, out: inout ByteBuffer) throws {
        out.writeString(data)
        out.writeInteger(UInt8(ascii: "\n"))
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds only the decoding half (bytes in, `EchoFrame`s out), for clients that write
    /// bytes of their own, such as the Redis baseline of `replog bench`.
    public func addLineDecoder(maxLineLength: Int) throws {
        try addHandler(ByteToMessageHandler(LineDecoder(maxLineLength: maxLineLength)))
    }
}

extension Channel {
    /// Installs the line codec (lines in, lines out, `\n`-terminated) and wraps the channel
    /// for async/await use. MUST be called on the channel's event loop.
    public func makeLineAsyncChannel(maxLineLength: Int) throws -> NIOAsyncChannel<EchoFrame, String> {
        try pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(maxLineLength: maxLineLength)))
        try pipeline.syncOperations.addHandler(MessageToByteHandler(LineEncoder()))
        return try NIOAsyncChannel(wrappingChannelSynchronously: self)
    }
}

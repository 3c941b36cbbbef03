import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import ReplogCore
import Synchronization

/// Followers of `GET /messages/stream` on one node while the bench appends
/// (`replog bench --followers N --follow URL`): how long after its `201` each message has
/// reached every follower.
///
/// The appenders note when each seq was answered `201`; each follower notes, per seq, that
/// it arrived and when the last follower got it. Per-seq slots are atomics (no lock on the
/// path of millions of events), sized for the run up front. (`@unchecked`: the pointers
/// are to atomics, allocated in `init` and freed in `deinit`, never replaced.)
public final class FollowerFanOut: @unchecked Sendable {
    public struct Result: Codable, Sendable {
        public let followers: Int
        /// Messages answered `201` during the run.
        public let acknowledged: Int
        /// Of those, how many reached every follower before the bench stopped waiting.
        public let reachedEveryFollower: Int
        /// Events the followers read, in all.
        public let eventsRead: Int
        /// Milliseconds from a message's `201` to its arrival at the last follower, over the
        /// messages that reached every follower (0 when one arrived before its `201`).
        public let toEveryFollower: BenchResult.Latency?
    }

    let base: Int
    let capacity: Int
    let started = NIODeadline.now()
    private let acknowledged: UnsafeMutablePointer<Atomic<UInt64>>
    private let lastArrival: UnsafeMutablePointer<Atomic<UInt64>>
    private let arrivals: UnsafeMutablePointer<Atomic<UInt32>>
    private let eventsRead = Atomic<Int>(0)

    /// `after`: the last seq before the run (followers start after it); `capacity`: the most
    /// messages the run can append.
    init(after: Int, capacity: Int) {
        self.base = after
        self.capacity = capacity
        acknowledged = .allocate(capacity: capacity)
        lastArrival = .allocate(capacity: capacity)
        arrivals = .allocate(capacity: capacity)
        for index in 0..<capacity {
            (acknowledged + index).initialize(to: Atomic(0))
            (lastArrival + index).initialize(to: Atomic(0))
            (arrivals + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        acknowledged.deinitialize(count: capacity).deallocate()
        lastArrival.deinitialize(count: capacity).deallocate()
        arrivals.deinitialize(count: capacity).deallocate()
    }

    private var now: UInt64 { UInt64(max(1, (NIODeadline.now() - started).nanoseconds)) }

    /// An appender got `201` for `seq`.
    func acknowledge(_ seq: Int) {
        let index = seq - base - 1
        guard index >= 0, index < capacity else { return }
        acknowledged[index].store(now, ordering: .relaxed)
    }

    /// A follower read the event of `seq`.
    func arrived(_ seq: Int) {
        eventsRead.wrappingAdd(1, ordering: .relaxed)
        let index = seq - base - 1
        guard index >= 0, index < capacity else { return }
        arrivals[index].wrappingAdd(1, ordering: .relaxed)
        lastArrival[index].max(now, ordering: .relaxed)
    }

    /// Whether every acknowledged message has reached all `followers`.
    func complete(followers: Int) -> Bool {
        (0..<capacity).allSatisfy { index in
            acknowledged[index].load(ordering: .relaxed) == 0 || arrivals[index].load(ordering: .relaxed) >= followers
        }
    }

    func result(followers: Int) -> Result {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var (acknowledgedCount, reached) = (0, 0)
        for index in 0..<capacity {
            let answered = acknowledged[index].load(ordering: .relaxed)
            guard answered > 0 else { continue }
            acknowledgedCount += 1
            guard arrivals[index].load(ordering: .relaxed) >= followers else { continue }
            reached += 1
            let last = lastArrival[index].load(ordering: .relaxed)
            _ = histogram.record(last > answered ? (last - answered) / 1000 : 0)
        }
        let milliseconds = { (value: UInt64) in Double(value) / 1000 }
        let latency =
            reached == 0
            ? nil
            : BenchResult.Latency(
                p50: milliseconds(histogram.valueAtPercentile(50)), p90: milliseconds(histogram.valueAtPercentile(90)),
                p99: milliseconds(histogram.valueAtPercentile(99)), p999: milliseconds(histogram.valueAtPercentile(99.9)),
                max: milliseconds(histogram.max), mean: histogram.mean / 1000)
        return Result(
            followers: followers, acknowledged: acknowledgedCount, reachedEveryFollower: reached,
            eventsRead: eventsRead.load(ordering: .relaxed), toEveryFollower: latency)
    }

    /// Opens `count` streams on `node` from the seq after `base`; returns their channels.
    func follow(_ node: HTTPBaseURL, count: Int) async throws -> [any Channel] {
        var channels: [any Channel] = []
        for _ in 0..<count {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(StreamFollower(fanOut: self))
                    }
                }
                .connect(host: node.host, port: node.port).get()
            let head = HTTPRequestHead(
                version: .http1_1, method: .GET, uri: node.pathPrefix + "/messages/stream?from=\(base + 1)",
                headers: ["Host": "\(node.host):\(node.port)", "Accept": "text/event-stream"])
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
            channels.append(channel)
        }
        return channels
    }
}

/// One follower: reads the stream's body and reports each `id:` line it sees.
final class StreamFollower: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let fanOut: FollowerFanOut
    /// The start of a line that the last piece of the body cut off.
    private var partial: [UInt8] = []

    init(fanOut: FollowerFanOut) { self.fanOut = fanOut }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .body(let buffer) = unwrapInboundIn(data) else { return }
        buffer.withUnsafeReadableBytes { bytes in
            var lineStart = 0
            for offset in 0..<bytes.count where bytes[offset] == UInt8(ascii: "\n") {
                if partial.isEmpty {
                    seq(in: UnsafeRawBufferPointer(rebasing: bytes[lineStart..<offset]))
                } else {
                    partial.append(contentsOf: bytes[lineStart..<offset])
                    partial.withUnsafeBytes { seq(in: $0) }
                    partial.removeAll(keepingCapacity: true)
                }
                lineStart = offset + 1
            }
            partial.append(contentsOf: bytes[lineStart...])
        }
    }

    /// One complete line: an `id: N` line names the event's seq.
    private func seq(in line: UnsafeRawBufferPointer) {
        guard line.count > 4, line[0] == UInt8(ascii: "i"), line[1] == UInt8(ascii: "d"), line[2] == UInt8(ascii: ":") else { return }
        var value = 0
        for byte in line.dropFirst(3) where byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\r") {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        fanOut.arrived(value)
    }
}

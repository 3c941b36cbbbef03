import Foundation
import Histogram
import ReplogCore
import NIOCore
import NIOPosix
import Synchronization

/// What `replog bench` runs: closed-loop clients, each on its own keep-alive connection,
/// appending as fast as the master answers.
public struct BenchConfiguration: Sendable {
    /// What to load.
    public enum Target: Sendable, Equatable {
        /// A replog master (or anything answering `POST /messages` with 201).
        case replog
        /// A Redis primary: each operation is `RPUSH` then `WAIT replicas 0`, the closest Redis
        /// equivalent of a `w = 1 + replicas` append.
        case redisWait(host: String, port: Int, replicas: Int)
        /// A NATS server with JetStream: each operation publishes to `subject` and waits for
        /// the stream's acknowledgement (a replicated stream acknowledges once a quorum stored it).
        case natsJetStream(host: String, port: Int, subject: String)
        /// An etcd member: each operation is a put through the JSON gateway, answered once a
        /// quorum of the cluster committed it.
        case etcdPut(host: String, port: Int)
    }

    public var target: Target = .replog
    public var master: String
    public var clients: Int
    /// Stop after this long…
    public var duration: Duration?
    /// …or after this many appends in total, whichever comes first.
    public var count: Int?
    /// Write concerns to use, round-robin per request (`nil` = every node).
    public var writeConcerns: [Int?]
    /// Message size in bytes.
    public var messageSize: Int
    /// At most this many appends per second in all (`nil`: as fast as answers come).
    public var rate: Double?
    /// Messages per append: a batch (`"messages"`) of this many for replog, an `RPUSH` of
    /// this many for Redis.
    public var batch = 1
    /// Followers of `GET /messages/stream` on one node while the clients append: how many,
    /// on which node, and the node's last seq before the run (they start after it).
    public var followers: (count: Int, node: String, after: Int)?
    /// Read instead of appending: `GET /messages?limit=1&read=LEVEL` on `master`.
    public var readLevel: ReadLevel?

    public init(master: String, clients: Int = 64, duration: Duration? = .seconds(10), count: Int? = nil,
                writeConcerns: [Int?] = [3], messageSize: Int = 100) {
        self.master = master
        self.clients = clients
        self.duration = duration
        self.count = count
        self.writeConcerns = writeConcerns
        self.messageSize = messageSize
    }
}

/// Results of one run; `--json` prints exactly this.
public struct BenchResult: Codable, Sendable {
    public struct Latency: Codable, Sendable {
        public let p50: Double, p90: Double, p99: Double, p999: Double, max: Double, mean: Double
    }

    public let clients: Int
    public let writeConcerns: String
    public let messageSize: Int
    public let seconds: Double
    public let appends: Int
    public let errors: Int
    public let appendsPerSecond: Double
    /// Messages per append, and messages per second (`appendsPerSecond * batch`).
    public let batch: Int
    public let messagesPerSecond: Double
    /// Milliseconds.
    public let latency: Latency
    /// CPU the load generator itself used, in cores (1.0 = one core busy all the time).
    public let benchCPUCores: Double
    /// The first few distinct errors, for the reader.
    public let errorSamples: [String]
    /// With followers: how long after its `201` each message reached all of them.
    public var fanOut: FollowerFanOut.Result?
}

public enum LoadGenerator {
    /// Runs the load and returns the results; `progress` is called about once a second with
    /// (appends so far, seconds elapsed).
    public static func run(
        _ configuration: BenchConfiguration, progress: @escaping @Sendable (Int, Double) -> Void = { _, _ in }
    ) async throws -> BenchResult {
        let budget = Budget(
            count: configuration.count, deadline: configuration.duration.map { .now() + .nanoseconds($0.nanoseconds) },
            rate: configuration.rate)
        // Followers first, so that they are reading when the first append is answered.
        let fanOut = try configuration.followers.map { followers in
            let seconds = configuration.duration.map { Double($0.nanoseconds) / 1e9 } ?? 60
            let most = configuration.count ?? Int((configuration.rate ?? 100_000) * seconds * 1.2) + 10_000
            guard let node = HTTPBaseURL(followers.node) else { throw HTTPAppend.BadURL(url: followers.node) }
            return (FollowerFanOut(after: followers.after, capacity: most), node, followers.count)
        }
        var streams: [any Channel] = []
        if let (fanOut, node, count) = fanOut { streams = try await fanOut.follow(node, count: count) }
        let cpuBefore = cpuSeconds()
        let started = NIODeadline.now()
        let elapsed: @Sendable () -> Double = { Double((NIODeadline.now() - started).nanoseconds) / 1e9 }

        let reporter = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if !Task.isCancelled { progress(budget.done, elapsed()) }
            }
        }
        defer { reporter.cancel() }

        let finished: [EventLoopFuture<Histogram<UInt64>>]
        switch configuration.target {
        case .replog:
            var http =
                try configuration.readLevel.map { try HTTPAppend.read(node: configuration.master, level: $0) }
                ?? HTTPAppend(
                    master: configuration.master, writeConcerns: configuration.writeConcerns, size: configuration.messageSize,
                    batch: configuration.batch)
            if let fanOut = fanOut?.0 { http.onCreated = { seq in fanOut.acknowledge(seq) } }
            finished = try await startClients(configuration.clients, host: http.host, port: http.port, budget: budget, speaking: http)
        case .redisWait(let host, let port, let replicas):
            let redis = RedisPushAndWait(size: configuration.messageSize, replicas: replicas, batch: configuration.batch)
            finished = try await startClients(configuration.clients, host: host, port: port, budget: budget, speaking: redis)
        case .natsJetStream(let host, let port, let subject):
            let nats = NATSJetStreamPublish(subject: subject, size: configuration.messageSize)
            finished = try await startClients(configuration.clients, host: host, port: port, budget: budget, speaking: nats)
        case .etcdPut(let host, let port):
            let etcd = HTTPAppend.etcdPut(host: host, port: port, size: configuration.messageSize)
            finished = try await startClients(configuration.clients, host: host, port: port, budget: budget, speaking: etcd)
        }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for client in finished {
            histogram.add(try await client.get())
        }

        let seconds = elapsed()
        var fanOutResult: FollowerFanOut.Result?
        if let (fanOut, _, count) = fanOut {
            // Give the followers up to 10 s to read what was acknowledged (a measurement loop).
            let patience = NIODeadline.now() + .seconds(10)
            while !fanOut.complete(followers: count), NIODeadline.now() < patience { try? await Task.sleep(for: .milliseconds(50)) }
            fanOutResult = fanOut.result(followers: count)
            for stream in streams { try? await stream.close() }
        }
        let cpu = cpuSeconds() - cpuBefore
        let milliseconds = { (value: UInt64) in Double(value) / 1000 }
        return BenchResult(
            clients: configuration.clients,
            writeConcerns: configuration.writeConcerns.map { $0.map(String.init) ?? "all" }.joined(separator: ","),
            messageSize: configuration.messageSize,
            seconds: seconds,
            appends: budget.done,
            errors: budget.errors,
            appendsPerSecond: Double(budget.done) / seconds,
            batch: configuration.batch,
            messagesPerSecond: Double(budget.done * configuration.batch) / seconds,
            latency: .init(
                p50: milliseconds(histogram.valueAtPercentile(50)), p90: milliseconds(histogram.valueAtPercentile(90)),
                p99: milliseconds(histogram.valueAtPercentile(99)), p999: milliseconds(histogram.valueAtPercentile(99.9)),
                max: milliseconds(histogram.max), mean: histogram.mean / 1000),
            benchCPUCores: cpu / seconds,
            errorSamples: budget.errorSamples, fanOut: fanOutResult)
    }

    /// Connects `clients` connections; each future completes with that client's latencies
    /// once the budget is used up (or its connection is lost).
    private static func startClients<Speaking: BenchProtocol>(
        _ clients: Int, host: String, port: Int, budget: Budget, speaking: Speaking
    ) async throws -> [EventLoopFuture<Histogram<UInt64>>] {
        var finished: [EventLoopFuture<Histogram<UInt64>>] = []
        for index in 0..<clients {
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let done = loop.makePromise(of: Histogram<UInt64>.self)
            do {
                _ = try await ClientBootstrap(group: loop)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try Speaking.addCodecs(to: channel.pipeline.syncOperations)
                            try channel.pipeline.syncOperations.addHandler(
                                ClosedLoopClient(speaking: speaking, firstTurn: index, budget: budget, finished: done))
                        }
                    }
                    .connect(host: host, port: port).get()
            } catch {
                done.fail(error)  // never connected, so the client will not complete it
                throw CannotConnect(host: host, port: port, reason: "\(error)")
            }
            finished.append(done.futureResult)
        }
        return finished
    }

    private static func cpuSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        let time = { (value: timeval) in Double(value.tv_sec) + Double(value.tv_usec) / 1_000_000 }
        return time(usage.ru_utime) + time(usage.ru_stime)
    }
}

/// The system to load is not there; `replog bench` prints this and exits non-zero.
public struct CannotConnect: Error, CustomStringConvertible {
    let host: String
    let port: Int
    let reason: String
    public var description: String { "cannot connect to \(host):\(port) (\(reason)); is it running?" }
}

/// How one operation of a benchmark looks on the wire.
protocol BenchProtocol: Sendable {
    /// What the decoders hand to the client: a part of an answer.
    associatedtype AnswerPart
    /// Installs the codecs between the socket and the client.
    static func addCodecs(to pipeline: ChannelPipeline.SynchronousOperations) throws
    /// Writes (without flushing) what a connection sends once before its first request;
    /// `client` numbers the connections of a run from 0.
    mutating func writeGreeting(client: Int, context: ChannelHandlerContext)
    /// Writes (without flushing) request number `turn`.
    func writeRequest(turn: Int, context: ChannelHandlerContext)
    /// Takes in one part of an answer: nil while the answer is incomplete, else whether the
    /// operation succeeded (nil) or why it failed.
    mutating func receive(_ part: AnswerPart) -> Outcome?
}

extension BenchProtocol {
    func writeGreeting(client: Int, context: ChannelHandlerContext) {}
}

/// The message every benchmark writes, the same for every system: `{"message":"xxx…"}` with
/// `size` x's, and `"w"` when a write concern is given.
func benchMessageJSON(size: Int, w: Int? = nil, batch: Int = 1) -> String {
    let message = "\"" + String(repeating: "x", count: size) + "\""
    let messages = batch > 1 ? "\"messages\":[" + Array(repeating: message, count: batch).joined(separator: ",") + "]" : "\"message\":" + message
    return "{" + messages + (w.map { ",\"w\":\($0)" } ?? "") + "}"
}

enum Outcome {
    case succeeded
    case failed(String)
}

/// One client of the closed loop: it sends a request, waits for the whole answer, records the
/// latency and sends the next. It runs entirely on its connection's event loop, with no task
/// switch per request, so the generator costs little CPU next to what it measures.
final class ClosedLoopClient<Speaking: BenchProtocol>: ChannelInboundHandler {
    typealias InboundIn = Speaking.AnswerPart

    private var speaking: Speaking
    private let budget: Budget
    let finished: EventLoopPromise<Histogram<UInt64>>
    private var latencies = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    private var turn: Int
    /// When the request in flight was sent; nil when none is.
    private var sent: NIODeadline?
    private var lastError: (any Error)?
    private var hardStop: Scheduled<Void>?
    /// Why the request in flight was given up on, when the run's hard stop closed it.
    private var abandoned: String?

    init(speaking: Speaking, firstTurn: Int, budget: Budget, finished: EventLoopPromise<Histogram<UInt64>>) {
        self.speaking = speaking
        self.turn = firstTurn
        self.budget = budget
        self.finished = finished
    }

    func channelActive(context: ChannelHandlerContext) {
        if let stop = budget.hardStop {
            // A timed run ends even if an answer never comes (a hung server, a lost reply).
            let (client, channel) = (NIOLoopBound(self, eventLoop: context.eventLoop), context.channel)
            hardStop = context.eventLoop.scheduleTask(deadline: stop) {
                client.value.abandoned = "no answer \(Budget.grace.nanoseconds / 1_000_000_000) s after the end of the run"
                channel.close(promise: nil)
            }
        }
        speaking.writeGreeting(client: turn, context: context)
        sendNext(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let outcome = speaking.receive(unwrapInboundIn(data)), let sent else { return }
        self.sent = nil
        switch outcome {
        case .succeeded:
            _ = latencies.record(UInt64((NIODeadline.now() - sent).nanoseconds / 1000))
            budget.succeeded()
        case .failed(let reason):
            budget.failed(reason)
        }
        sendNext(context: context)
    }

    private func sendNext(context: ChannelHandlerContext) {
        switch budget.claim() {
        case .stop:
            context.close(promise: nil)
            return
        case .wait(let delay):
            let (client, bound) = (NIOLoopBound(self, eventLoop: context.eventLoop), NIOLoopBound(context, eventLoop: context.eventLoop))
            context.eventLoop.scheduleTask(in: delay) { client.value.sendNext(context: bound.value) }
            return
        case .go:
            break
        }
        turn += 1
        sent = .now()
        speaking.writeRequest(turn: turn, context: context)
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        lastError = error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A connection lost with a request in flight: that request failed, and this client stops.
        hardStop?.cancel()
        if sent != nil {
            budget.failed(abandoned ?? lastError.map { "connection lost: \($0)" } ?? "connection closed by the server")
            sent = nil
        }
        finished.succeed(latencies)
    }
}

/// The run's shared budget (a count and/or a deadline) and tallies, used by every client.
final class Budget: Sendable {
    private struct State {
        var claimed = 0
        var done = 0
        var errors = 0
        var samples: [String] = []
    }

    /// How long after the deadline a request may still be answered.
    static let grace = TimeAmount.seconds(5)

    private let count: Int?
    private let deadline: NIODeadline?
    private let state = Mutex(State())

    private let rate: Double?
    private let started = NIODeadline.now()

    init(count: Int?, deadline: NIODeadline?, rate: Double? = nil) {
        self.count = count
        self.deadline = deadline
        self.rate = rate
    }

    enum Claim {
        case go
        /// Over the rate: ask again after this long.
        case wait(TimeAmount)
        case stop
    }

    /// When clients still waiting for an answer give up and close.
    var hardStop: NIODeadline? { deadline.map { $0 + Self.grace } }

    /// Takes one request from the budget: go, wait (over the rate), or stop when the count
    /// or the time is used up.
    func claim() -> Claim {
        let now = NIODeadline.now()
        if let deadline, now >= deadline { return .stop }
        return state.withLock { state in
            if let count, state.claimed >= count { return .stop }
            if let rate {
                let allowed = rate * Double((now - started).nanoseconds) / 1e9
                if Double(state.claimed) >= allowed {
                    return .wait(.nanoseconds(max(100_000, Int64((Double(state.claimed) + 1 - allowed) / rate * 1e9))))
                }
            }
            state.claimed += 1
            return .go
        }
    }

    func succeeded() { state.withLock { $0.done += 1 } }

    func failed(_ reason: String) {
        state.withLock { state in
            state.errors += 1
            if state.samples.count < 5, !state.samples.contains(reason) { state.samples.append(reason) }
        }
    }

    var done: Int { state.withLock { $0.done } }
    var errors: Int { state.withLock { $0.errors } }
    var errorSamples: [String] { state.withLock { $0.samples } }
}

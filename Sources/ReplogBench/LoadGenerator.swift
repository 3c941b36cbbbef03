import AsyncHTTPClient
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import ReplogCore
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
    /// Milliseconds.
    public let latency: Latency
    /// CPU the load generator itself used, in cores (1.0 = one core busy all the time).
    public let benchCPUCores: Double
    /// The first few distinct errors, for the reader.
    public let errorSamples: [String]
}

public enum LoadGenerator {
    /// Runs the load and returns the results; `progress` is called about once a second with
    /// (appends so far, seconds elapsed).
    public static func run(
        _ configuration: BenchConfiguration, progress: @escaping @Sendable (Int, Double) -> Void = { _, _ in }
    ) async throws -> BenchResult {
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.clients)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        let counters = Counters()
        let bodies = configuration.writeConcerns.map { w in body(size: configuration.messageSize, w: w) }
        let cpuBefore = cpuSeconds()
        let started = ContinuousClock.now
        let deadline = configuration.duration.map { started + $0 }

        let histogram: Histogram<UInt64>
        do {
            histogram = try await withThrowingTaskGroup(of: Histogram<UInt64>?.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(1))
                        progress(counters.done, (ContinuousClock.now - started).seconds)
                    }
                    return nil
                }
                for index in 0..<configuration.clients {
                    group.addTask {
                        var latencies = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
                        /// Runs `operation` until the count or the time is used up; it returns
                        /// nil on success or the reason it failed.
                        func loop(_ operation: () async throws -> String?) async {
                            while counters.claim(limit: configuration.count) {
                                if let deadline, ContinuousClock.now >= deadline { break }
                                let sent = ContinuousClock.now
                                do {
                                    if let problem = try await operation() {
                                        counters.failed(problem)
                                    } else {
                                        _ = latencies.record(UInt64((ContinuousClock.now - sent).microseconds))
                                        counters.succeeded()
                                    }
                                } catch {
                                    counters.failed("\(error)")
                                }
                            }
                        }
                        switch configuration.target {
                        case .replog:
                            var turn = index
                            await loop {
                                turn += 1
                                return try await append(bodies[turn % bodies.count], to: configuration.master, with: client)
                            }
                        case .redisWait(let host, let port, let replicas):
                            do {
                                try await RedisConnection.withConnection(host: host, port: port) { redis in
                                    await loop { try await redis.pushAndWait(payload: bodies[0], replicas: replicas) }
                                }
                            } catch {
                                counters.failed("\(error)")
                            }
                        }
                        return latencies
                    }
                }
                var merged = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
                var finished = 0
                while let result = try await group.next() {
                    guard let latencies = result else { continue }
                    merged.add(latencies)
                    finished += 1
                    if finished == configuration.clients { group.cancelAll() }
                }
                return merged
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        let seconds = (ContinuousClock.now - started).seconds
        let cpu = cpuSeconds() - cpuBefore
        try await client.shutdown()
        let milliseconds = { (value: UInt64) in Double(value) / 1000 }
        return BenchResult(
            clients: configuration.clients,
            writeConcerns: configuration.writeConcerns.map { $0.map(String.init) ?? "all" }.joined(separator: ","),
            messageSize: configuration.messageSize,
            seconds: seconds,
            appends: counters.done,
            errors: counters.errors,
            appendsPerSecond: Double(counters.done) / seconds,
            latency: .init(
                p50: milliseconds(histogram.valueAtPercentile(50)), p90: milliseconds(histogram.valueAtPercentile(90)),
                p99: milliseconds(histogram.valueAtPercentile(99)), p999: milliseconds(histogram.valueAtPercentile(99.9)),
                max: milliseconds(histogram.max), mean: histogram.mean / 1000),
            benchCPUCores: cpu / seconds,
            errorSamples: counters.errorSamples)
    }

    /// One `POST /messages`; nil when answered 201.
    private static func append(_ body: ByteBuffer, to master: String, with client: HTTPClient) async throws -> String? {
        var request = HTTPClientRequest(url: master + "/messages")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(body)
        let response = try await client.execute(request, timeout: .seconds(60))
        _ = try await response.body.collect(upTo: 1 << 20)
        return response.status == .created ? nil : "HTTP \(response.status.code)"
    }

    private static func body(size: Int, w: Int?) -> ByteBuffer {
        var json: [String: Any] = ["message": String(repeating: "x", count: size)]
        if let w { json["w"] = w }
        return ByteBuffer(bytes: Array(try! JSONSerialization.data(withJSONObject: json)))
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

/// Shared tallies of the clients.
private final class Counters: Sendable {
    private struct State {
        var claimed = 0
        var done = 0
        var errors = 0
        var samples: [String] = []
    }

    private let state = Mutex(State())

    /// Takes one request from the budget; `false` when `limit` is used up.
    func claim(limit: Int?) -> Bool {
        state.withLock { state in
            if let limit, state.claimed >= limit { return false }
            state.claimed += 1
            return true
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

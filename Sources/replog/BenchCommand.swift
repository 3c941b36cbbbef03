import ArgumentParser
import Foundation
import Hummingbird
import NIOCore
import ReplogBench
import ReplogClient
import ReplogCore

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Load a running master with closed-loop appends and report throughput and latency.",
        discussion: """
            Each client keeps one append in flight on its own keep-alive connection. The bench runs on the
            same machine as the cluster, so it competes for CPU: its own CPU use is reported too.
            """)

    @OptionGroup var client: ClientOptions

    @Option(help: "Concurrent clients. Env: REPLOG_BENCH_CLIENTS.")
    var clients: Int = Environment.int("REPLOG_BENCH_CLIENTS") ?? 64

    @Option(help: "How long to run, e.g. 10s. Env: REPLOG_BENCH_DURATION.")
    var duration: DurationArgument = Environment.duration("REPLOG_BENCH_DURATION") ?? DurationArgument("10s")

    @Option(name: .customLong("count"), help: "Stop after this many appends in total (whichever comes first with --duration). Env: REPLOG_BENCH_COUNT.")
    var countFlag: Int?

    var count: Int? { countFlag ?? Environment.int("REPLOG_BENCH_COUNT") }

    @Option(help: "Write concern of every append; a comma-separated list (e.g. 1,2,3) is used round-robin; 'all' = omitted. Env: REPLOG_BENCH_W.")
    var w: String = Environment.string("REPLOG_BENCH_W") ?? "3"

    @Option(help: "Message size in bytes. Env: REPLOG_BENCH_SIZE.")
    var size: Int = Environment.int("REPLOG_BENCH_SIZE") ?? 100

    @Flag(help: "Print the result as JSON (for scripts).")
    var json = false

    @Option(help: "At most this many appends per second in all (default: as fast as answers come). Env: REPLOG_BENCH_RATE.")
    var rate: Double? = Environment.int("REPLOG_BENCH_RATE").map(Double.init)

    @Option(help: "Messages per append: a batch (\"messages\") of this many, or an RPUSH of this many with --redis. Env: REPLOG_BENCH_BATCH.")
    var batch: Int = Environment.int("REPLOG_BENCH_BATCH") ?? 1

    @Option(help: "Followers of GET /messages/stream to open on --follow while appending; the result says how long after its 201 each message reached all of them.")
    var followers = 0

    @Option(help: "With --followers: the node they follow (default: the master).")
    var follow: String?

    @Option(help: "Read instead of appending: GET /messages?limit=1&read=LEVEL (committed, local, linearizable) on the master, as fast as answers come.")
    var read: ReadLevel?

    @Option(help: "Load a Redis primary at HOST:PORT instead (RPUSH + WAIT <replicas> 0 per operation), for the baseline.")
    var redis: String?

    @Option(help: "With --redis: replicas each write must reach (WAIT's first argument).")
    var redisReplicas: Int = 2

    @Option(help: "Load a NATS JetStream server at HOST:PORT instead (publish and wait for the stream's ack), for the baseline.")
    var nats: String?

    @Option(help: "With --nats: the subject to publish to (a stream must capture it).")
    var natsSubject = "replog.messages"

    @Option(help: "Load an etcd member at HOST:PORT instead (a put through its JSON gateway, /v3/kv/put, per operation), for the baseline.")
    var etcd: String?

    func run() async throws {
        let writeConcerns = w.split(separator: ",").map { $0 == "all" ? nil : Int($0) }
        guard !writeConcerns.isEmpty, writeConcerns.allSatisfy({ $0 == nil || $0! >= 1 }) else {
            throw ValidationError("--w takes numbers like 3 or 1,2,3, or 'all'")
        }
        var configuration = BenchConfiguration(
            master: client.master, clients: clients, duration: duration.duration, count: count,
            writeConcerns: writeConcerns.map { $0 }, messageSize: size)
        configuration.rate = rate
        guard (1...AppendRequest.maxBatchCount).contains(batch) else {
            throw ValidationError("--batch takes 1 to \(AppendRequest.maxBatchCount) messages")
        }
        guard batch == 1 || (nats == nil && etcd == nil) else { throw ValidationError("--batch works with replog and --redis only") }
        configuration.batch = batch
        configuration.readLevel = read
        if followers > 0 {
            // They start after what the node holds now, so that they measure only this run's appends.
            let node = follow ?? client.master
            let after: Int
            do {
                after = switch try await ReplogClient.command(node, client.token).health() {
                case .master(let health): health.seq
                case .secondary(let health): health.seq
                }
            } catch {
                throw ReplogClient.exit(error)
            }
            configuration.followers = (followers, node, after)
        }
        guard [redis, nats, etcd].compactMap({ $0 }).count <= 1 else {
            throw ValidationError("--redis, --nats and --etcd load different systems: pick one")
        }
        if let redis {
            let (host, port) = try Self.hostAndPort(redis, option: "--redis")
            configuration.target = .redisWait(host: host, port: port, replicas: redisReplicas)
        }
        if let nats {
            let (host, port) = try Self.hostAndPort(nats, option: "--nats")
            configuration.target = .natsJetStream(host: host, port: port, subject: natsSubject)
        }
        if let etcd {
            let (host, port) = try Self.hostAndPort(etcd, option: "--etcd")
            configuration.target = .etcdPut(host: host, port: port)
        }
        let result = try await LoadGenerator.run(configuration) { done, seconds in
            FileHandle.standardError.write(Data(String(format: "  %6.1fs  %8d appends  %8.0f/s\n", seconds, done, Double(done) / seconds).utf8))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            announce(String(decoding: try encoder.encode(result), as: UTF8.self))
            return
        }
        announce(String(format: """
            clients %d, w %@, %d-byte messages, %.1f s
            appends      %d ok, %d errors%@
            throughput   %.0f appends/s
            latency ms   p50 %.3f   p90 %.3f   p99 %.3f   p99.9 %.3f   max %.3f
            bench CPU    %.2f cores
            """, result.clients, result.writeConcerns, result.messageSize, result.seconds, result.appends, result.errors,
            result.errorSamples.isEmpty ? "" : " (" + result.errorSamples.joined(separator: "; ") + ")",
            result.appendsPerSecond, result.latency.p50, result.latency.p90, result.latency.p99, result.latency.p999,
            result.latency.max, result.benchCPUCores))
        if result.batch > 1 {
            announce(String(format: "messages     %.0f/s (%d per append)", result.messagesPerSecond, result.batch))
        }
        if let fanOut = result.fanOut {
            let spread = fanOut.toEveryFollower.map { String(format: "p50 %.3f   p90 %.3f   p99 %.3f   max %.3f", $0.p50, $0.p90, $0.p99, $0.max) } ?? "none reached all"
            announce("""
                followers    \(fanOut.followers): \(fanOut.reachedEveryFollower) of \(fanOut.acknowledged) acknowledged messages reached all of them, \(fanOut.eventsRead) events read
                201 → all ms \(spread)
                """)
        }
    }
}

extension BenchCommand {
    static func hostAndPort(_ text: String, option: String) throws -> (String, Int) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("\(option) takes HOST:PORT") }
        return (String(parts[0]), port)
    }
}

/// A trivial Hummingbird endpoint: the HTTP floor that replog's own numbers are compared
/// with in `Benchmarks/run.sh`. `POST /messages` reads the body and answers 201 at once.
struct FloorServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "floor-server", abstract: "Benchmark helper: the cheapest possible HTTP append endpoint.",
        shouldDisplay: false)

    @Option var host: String = "127.0.0.1"
    @Option var port: Int = 0

    func run() async throws {
        let router = Router()
        router.post("/messages") { request, _ -> Response in
            var request = request
            _ = try await request.collectBody(upTo: 1 << 20)
            return Response(
                status: .created, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"message":"x","seq":1,"w":1}"#)))
        }
        let host = host
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { announce("listening on http://\(host):\($0.localAddress?.port ?? 0)") })
        try await app.runService()
    }
}

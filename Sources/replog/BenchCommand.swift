import ArgumentParser
import Foundation
import ReplogBench

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a running master with closed-loop appends and report throughput and latency.",
        discussion: """
            Each client keeps one append in flight on its own keep-alive connection. The bench runs on the
            same machine as the cluster, so it competes for CPU: its own CPU use is reported too.
            """)

    @OptionGroup var client: ClientOptions

    @Option(help: "Concurrent clients.")
    var clients: Int = 64

    @Option(help: "How long to run, e.g. 10s.")
    var duration: DurationArgument = DurationArgument("10s")

    @Option(help: "Stop after this many appends in total (whichever comes first with --duration).")
    var count: Int?

    @Option(help: "Write concern of every append; a comma-separated list (e.g. 1,2,3) is used round-robin; 'all' = omitted.")
    var w: String = "3"

    @Option(help: "Message size in bytes.")
    var size: Int = 100

    @Flag(help: "Print the result as JSON (for scripts).")
    var json = false

    func run() async throws {
        let writeConcerns = w.split(separator: ",").map { $0 == "all" ? nil : Int($0) }
        guard !writeConcerns.isEmpty, writeConcerns.allSatisfy({ $0 == nil || $0! >= 1 }) else {
            throw ValidationError("--w takes numbers like 3 or 1,2,3, or 'all'")
        }
        let configuration = BenchConfiguration(
            master: client.master, clients: clients, duration: duration.duration, count: count,
            writeConcerns: writeConcerns.map { $0 }, messageSize: size)
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
    }
}

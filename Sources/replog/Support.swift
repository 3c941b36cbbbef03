import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ReplogCore

/// Flag defaults that containers set through the environment (`REPLOG_PORT=5001`, …).
enum Environment {
    static func string(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    static func int(_ name: String) -> Int? { string(name).flatMap(Int.init) }
    static func double(_ name: String) -> Double? { string(name).flatMap(Double.init) }
    /// `1`, `true` or `yes` (any case) is true; `0`, `false` or `no` is false.
    static func bool(_ name: String) -> Bool? {
        switch string(name)?.lowercased() {
        case "1", "true", "yes": true
        case "0", "false", "no": false
        default: nil
        }
    }
    static func duration(_ name: String) -> DurationArgument? { string(name).flatMap(DurationArgument.init(argument:)) }
    static func size(_ name: String) -> ByteSizeArgument? { string(name).flatMap(ByteSizeArgument.init(argument:)) }
    static func list(_ name: String) -> [String] {
        string(name)?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } ?? []
    }
}

/// A command-line duration: `2s`, `500ms`, `1.5s`, `1m`, `0`.
struct DurationArgument: ExpressibleByArgument, CustomStringConvertible {
    let duration: Duration
    let description: String

    init?(argument: String) {
        guard let duration = Duration(parsing: argument) else { return nil }
        self.duration = duration
        self.description = argument
    }

    init(_ text: String) { self.init(argument: text)! }
}

/// A size as people write it (`64MiB`, `1GB`, `1048576`; see `parseByteSize`).
struct ByteSizeArgument: ExpressibleByArgument, CustomStringConvertible {
    let bytes: Int
    let description: String

    init?(argument: String) {
        guard let bytes = parseByteSize(argument) else { return nil }
        self.bytes = bytes
        self.description = argument
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Options every long-running node shares: where its logs and metrics go.
struct LoggingOptions: ParsableArguments {
    @Option(help: "trace, debug, info, notice, warning, error or critical. Env: REPLOG_LOG_LEVEL.")
    var logLevel: Logger.Level = Environment.string("REPLOG_LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .info

    @Option(help: "text (for people) or json (one object per line, for log collectors). Env: REPLOG_LOG_FORMAT.")
    var logFormat: LogFormat = Environment.string("REPLOG_LOG_FORMAT").flatMap(LogFormat.init(rawValue:)) ?? .text

    /// Installs the log backend (stderr) and returns the node's logger.
    func bootstrap(label: String) -> Logger {
        let level = logLevel
        let format = logFormat
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                format == .json ? JSONLogHandler(label: label) : DeferredMetadataLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }

    /// Installs the Prometheus metrics backend; the returned closure renders `GET /metrics`.
    func bootstrapMetrics() -> @Sendable () -> String {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Appends and fsyncs take well under the default 5 ms first bucket on a quiet machine.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        MetricsSystem.bootstrap(factory)
        return { registry.emitToString() }
    }
}

/// Writes a line to stdout at once. `print` is block-buffered into a pipe, and parents
/// (`replog cluster`, the tests) wait for the "listening on" line to know a node is up.
func announce(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Reports a failure in one line on stderr (no stack trace) and exits non-zero.
func fail(_ message: String, code: Int32 = 1) -> ExitCode {
    FileHandle.standardError.write(Data(("replog: " + message + "\n").utf8))
    return ExitCode(code)
}

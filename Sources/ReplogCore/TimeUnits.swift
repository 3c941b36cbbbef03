import Foundation

/// Durations in the units logs, JSON, metrics and timeouts want, in one place.
extension Duration {
    /// Whole milliseconds (rounded down).
    public var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }
    /// Whole microseconds (rounded down).
    public var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
    /// Whole nanoseconds (rounded down).
    public var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
    /// Seconds as a fraction.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension Date {
    /// ISO-8601 in UTC with milliseconds, e.g. `2026-11-27T12:00:00.123Z`: the one timestamp
    /// format replog prints (echo replies, `lastContact`, JSON logs).
    public var iso8601WithMilliseconds: String {
        formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

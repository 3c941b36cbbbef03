import Foundation

/// How far a test run goes.
///
/// `swift test --disable-xctest` is the quick run: every test, with the simulations and the
/// chaos runs cut to a size that gives a newcomer an answer in minutes. `scripts/deep-test.sh`
/// (`REPLOG_DEEP=1`, which CI runs after the quick run) runs the simulations and chaos runs
/// at full breadth. Work is bounded by count, never by the machine's speed, so a slow period
/// makes a run longer, not red.
public enum TestDepth: Sendable {
    case quick, deep

    public static let current: TestDepth = ProcessInfo.processInfo.environment["REPLOG_DEEP"] == "1" ? .deep : .quick

    /// The number `variable` names if it is set, otherwise `quick` or `deep` for this run.
    public static func count(_ variable: String, quick: Int, deep: Int) -> Int {
        if let set = ProcessInfo.processInfo.environment[variable].flatMap(Int.init) { return set }
        return current == .deep ? deep : quick
    }
}

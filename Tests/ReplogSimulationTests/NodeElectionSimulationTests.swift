import Foundation
import Testing

/// Failovers run against the real node code (`NodeElectionSimulation`), seeded schedules.
///
/// - `REPLOG_NODE_SCHEDULES=N` runs N schedules (default 4,000: the first that finds the
///   mutant `staletail` is seed 2064, and the hold-back bug `heldbackepoch` plants was
///   first found at seed 3692);
/// - `REPLOG_NODE_SEED=S` replays schedule S alone and prints its trace.
@Suite struct NodeElectionSimulationTests {
    static let environment = ProcessInfo.processInfo.environment

    @Test(.timeLimit(.minutes(10)))
    func seededFailoversOfTheRealNodesKeepEveryGuarantee() async {
        if let seed = Self.environment["REPLOG_NODE_SEED"].flatMap(UInt64.init) {
            let simulation = NodeElectionSimulation(seed: seed, trace: Self.environment["REPLOG_NODE_TRACE"] != "0")
            let violations = simulation.run()
            print(simulation.traceText)
            #expect(violations.isEmpty, "\(violations.joined(separator: "\n"))")
            return
        }
        let schedules = Self.environment["REPLOG_NODE_SCHEDULES"].flatMap(Int.init) ?? 4_000
        let started = ContinuousClock.now
        let (violations, counts) = await runSchedules(schedules) { seed in
            let simulation = NodeElectionSimulation(seed: seed)
            let violations = simulation.run()
            return (violations, [simulation.elections, simulation.acknowledged, simulation.retention == nil ? 0 : 1, simulation.restartedLogs])
        }
        let (elections, acknowledged) = (counts[0], counts[1])
        print("node election simulation: \(schedules) schedules, \(elections) masters, \(acknowledged) acknowledged appends, "
            + "\(counts[2]) schedules with retention, \(counts[3]) logs started again, in \(ContinuousClock.now - started), \(violations.count) violations")
        #expect(elections > schedules, "the schedules must make elections happen")
        #expect(acknowledged > schedules, "the schedules must get appends acknowledged")
        #expect(violations.isEmpty, "replay one with REPLOG_NODE_SEED=<seed>:\n\(violations.prefix(20).joined(separator: "\n"))")
    }

    /// The same seed gives the same run, event for event, log line for log line.
    @Test(arguments: [13, 21, 24] as [UInt64])
    func aSeedReplaysExactly(seed: UInt64) {
        let first = NodeElectionSimulation(seed: seed, trace: true)
        _ = first.run()
        let second = NodeElectionSimulation(seed: seed, trace: true)
        _ = second.run()
        // Log ids and rollback file names are random or dated by design: not part of a replay.
        func replayable(_ trace: String) -> [Substring] {
            trace.replacing(#/[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}|rollback=\S+/#, with: "…").split(separator: "\n")
        }
        let (a, b) = (replayable(first.traceText), replayable(second.traceText))
        #expect(a.count > 10)
        let differs = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }
        #expect(differs == nil && a.count == b.count, "first difference at line \(differs?.offset ?? min(a.count, b.count)):\n\(differs.map { "\($0.element.0)\n\($0.element.1)" } ?? "")")
    }
}

import Foundation
import ReplogCore
import ReplogTestKit
import Testing

/// Elections under faults, thousands of seeded schedules per run (`FailoverSimulation`).
///
/// - `REPLOG_FAILOVER_SCHEDULES=N` runs N schedules (default 1,000 in the quick run, 10,000
///   in the deep run: `TestDepth`);
/// - `REPLOG_FAILOVER_SEED=S` replays schedule S alone and prints its trace.
@Suite struct FailoverSimulationTests {
    static let environment = ProcessInfo.processInfo.environment

    /// Bounded by its count; the limit only ends a hang (the deep run took about 2 minutes in CI).
    @Test(.timeLimit(.minutes(30)))
    func seededElectionSchedulesKeepEveryGuarantee() async {
        if let seed = Self.environment["REPLOG_FAILOVER_SEED"].flatMap(UInt64.init) {
            let simulation = FailoverSimulation(seed: seed, tracing: true)
            let violations = simulation.run()
            print(simulation.trace.joined(separator: "\n"))
            #expect(violations.isEmpty, "\(violations.joined(separator: "\n"))")
            return
        }
        let schedules = TestDepth.count("REPLOG_FAILOVER_SCHEDULES", quick: 1_000, deep: 10_000)
        let started = ContinuousClock.now
        let (violations, counts) = await runSchedules(scheduleSeeds(schedules), lanes: simulationLanes) { seed in
            let simulation = FailoverSimulation(seed: seed)
            let violations = simulation.run()
            return (violations, [simulation.elections, simulation.acknowledged])
        }
        let (elections, acknowledged) = (counts.first ?? 0, counts.last ?? 0)
        print("failover simulation: \(schedules) schedules, \(elections) elections, \(acknowledged) acknowledged appends in \(ContinuousClock.now - started), \(violations.count) violations")
        #expect(elections > schedules, "the schedules must make elections happen")
        #expect(acknowledged > schedules, "the schedules must get appends acknowledged")
        #expect(violations.isEmpty, "replay one with REPLOG_FAILOVER_SEED=<seed>:\n\(violations.prefix(20).joined(separator: "\n"))")
    }

    /// The same seed gives the same run, event for event.
    @Test func aSeedReplaysExactly() {
        let first = FailoverSimulation(seed: 7, tracing: true)
        _ = first.run()
        let second = FailoverSimulation(seed: 7, tracing: true)
        _ = second.run()
        #expect(first.trace.count > 10)
        #expect(first.trace == second.trace)
    }
}

import Foundation
import ReplogCore
import ReplogTestKit
import Testing

/// Thousands of seeded fault schedules per run, each checked for every guarantee.
///
/// - `REPLOG_SIM_SCHEDULES=N` runs N schedules (default 1,000 in the quick run, 10,000 in
///   the deep run: `TestDepth`);
/// - `REPLOG_SIM_SEED=S` replays schedule S alone and prints its trace.
@Suite struct SimulationTests {
    static let environment = ProcessInfo.processInfo.environment

    /// Bounded by its count; the limit only ends a hang (the deep run took 2-2.5 minutes in CI).
    @Test(.timeLimit(.minutes(30)))
    func seededFaultSchedulesKeepEveryGuarantee() async throws {
        if let seed = Self.environment["REPLOG_SIM_SEED"].flatMap(UInt64.init) {
            let simulation = Simulation(seed: seed, trace: true)
            let violations = simulation.run()
            print(simulation.traceText)
            #expect(violations.isEmpty, "\(violations.joined(separator: "\n"))")
            return
        }
        let schedules = TestDepth.count("REPLOG_SIM_SCHEDULES", quick: 1_000, deep: 10_000)
        let started = ContinuousClock.now
        let (violations, _) = await runSchedules(scheduleSeeds(schedules), lanes: simulationLanes) { seed in (Simulation(seed: seed).run(), []) }
        let elapsed = ContinuousClock.now - started
        print("simulation: \(schedules) schedules in \(elapsed), \(violations.count) violations")
        #expect(violations.isEmpty, "replay one with REPLOG_SIM_SEED=<seed>:\n\(violations.prefix(20).joined(separator: "\n"))")
    }

    /// The same seed gives the same run, event for event.
    @Test func aSeedReplaysExactly() {
        let first = Simulation(seed: 42, trace: true)
        _ = first.run()
        let second = Simulation(seed: 42, trace: true)
        _ = second.run()
        #expect(!first.traceText.isEmpty)
        #expect(first.traceText == second.traceText)
    }
}

/// The checker itself catches what it should (a checker that cannot fail proves nothing).
@Suite struct HistoryCheckerTests {
    private func log(_ messages: String...) -> [LogEntry] {
        messages.enumerated().map { LogEntry(seq: $0.offset + 1, message: $0.element) }
    }

    @Test func acceptsACorrectHistory() {
        let records = [HistoryChecker.Record(message: "a", outcome: .ok(seq: 1)), .init(message: "b", outcome: .unknown)]
        #expect(HistoryChecker.check(records, logs: [("m", log("a", "b")), ("s1", log("a", "b"))]).isEmpty)
    }

    @Test func catchesALostAcknowledgedMessage() {
        let records = [HistoryChecker.Record(message: "a", outcome: .ok(seq: 1))]
        #expect(!HistoryChecker.check(records, logs: [("m", log("b")), ("s1", log("b"))]).isEmpty)
    }

    @Test func catchesDivergenceDuplicatesAndRefusedAppends() {
        #expect(!HistoryChecker.check([], logs: [("m", log("a", "b")), ("s1", log("b", "a"))]).isEmpty)
        #expect(!HistoryChecker.check([], logs: [("m", log("a", "a"))]).isEmpty)
        #expect(!HistoryChecker.check([.init(message: "a", outcome: .refused)], logs: [("m", log("a"))]).isEmpty)
    }

    @Test func catchesPartOfABatchAndABatchOutOfOrder() {
        let batches = [["b1", "b2", "b3"]]
        #expect(HistoryChecker.checkBatches(batches, logs: [("m", log("a", "b1", "b2", "b3")), ("s1", log("a"))]).isEmpty)
        #expect(!HistoryChecker.checkBatches(batches, logs: [("m", log("a", "b1", "b2"))]).isEmpty)
        #expect(!HistoryChecker.checkBatches(batches, logs: [("m", log("b1", "a", "b2", "b3"))]).isEmpty)
        #expect(!HistoryChecker.checkBatches(batches, logs: [("m", log("b2", "b1", "b3"))]).isEmpty)
    }
}

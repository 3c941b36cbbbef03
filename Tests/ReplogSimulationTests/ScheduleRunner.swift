import Foundation
import ReplogCore
import ReplogStorage
import ReplogTestKit

/// The seeds a simulation runs: 0 ..< `count`, then every seed of `remembered` past that
/// (seeds that once caught a planted bug or a real one, so the quick run still meets them).
func scheduleSeeds(_ count: Int, remembered: [UInt64] = []) -> [UInt64] {
    let first = UInt64(max(count, 0))
    return Array(0..<first) + remembered.filter { $0 >= first }.sorted()
}

/// Runs the seeded schedules of `seeds`, each one synchronously from start to end, on
/// threads of their own (`lanes` of them, sharing the seeds): a schedule must not tie up
/// the threads that the other tests' tasks run on. A lane stops after 20 violations.
///
/// `run` runs one schedule and returns its violations and the counts to add up over all
/// schedules (elections, acknowledged appends, …), in a fixed order.
func runSchedules(
    _ seeds: [UInt64], lanes: Int = 1, _ run: @escaping @Sendable (UInt64) -> (violations: [String], counts: [Int])
) async -> (violations: [String], counts: [Int]) {
    await withTaskGroup(of: ([String], [Int]).self) { group in
        for lane in 0..<lanes {
            group.addTask {
                await withCheckedContinuation { continuation in
                    Thread {
                        var (found, counts): ([String], [Int]) = ([], [])
                        for index in stride(from: lane, to: seeds.count, by: lanes) {
                            let schedule = run(seeds[index])
                            found += schedule.violations
                            counts = counts.isEmpty ? schedule.counts : zip(counts, schedule.counts).map { $0 + $1 }
                            if found.count > 20 { break }
                        }
                        continuation.resume(returning: (found, counts))
                    }.start()
                }
            }
        }
        return await group.reduce(into: ([], [])) { total, lane in
            total.0 += lane.0
            total.1 = total.1.isEmpty ? lane.1 : zip(total.1, lane.1).map { $0 + $1 }
        }
    }
}

/// Lanes for a simulation: in the quick run one, leaving the other core to the tests that
/// run real processes at the same time; in the deep run, which runs only simulations and
/// chaos, every core.
var simulationLanes: Int {
    TestDepth.current == .deep ? max(1, ProcessInfo.processInfo.activeProcessorCount) : 1
}

extension BlockingIO {
    /// A simulated disk's fsyncs: each takes a latency drawn from `random` in simulated
    /// time, on the simulation's executor. As on SwiftNIO's thread pool, an fsync that has
    /// started finishes even if the task that waits for it is cancelled (a request whose
    /// sender died): a cancellable wait left entries written and never fsynced.
    /// - Parameter stalled: how much longer the disk is stalled, asked as each piece of work
    ///   arrives: the work waits that long first.
    static func simulated(
        clock: ManualClock, random: SimulationRandom, latency: ClosedRange<Duration>, executor: SimulationExecutor,
        stalled: @escaping @Sendable () -> Duration = { .zero }
    ) -> BlockingIO {
        BlockingIO { work in
            let latency = random.duration(latency) + stalled()
            try await Task(executorPreference: executor) {
                try? await clock.sleep(for: latency)
                try work()
            }.value
        }
    }
}

import Foundation
import ReplogCore
import ReplogStorage

/// Runs seeded schedules 0 ..< `count`, each one synchronously from start to end, on
/// threads of their own (`lanes` of them, sharing the seeds): a schedule must not tie up
/// the threads that the other tests' tasks run on. A lane stops after 20 violations.
///
/// `run` runs one schedule and returns its violations and the counts to add up over all
/// schedules (elections, acknowledged appends, …), in a fixed order.
func runSchedules(
    _ count: Int, lanes: Int = 1, _ run: @escaping @Sendable (UInt64) -> (violations: [String], counts: [Int])
) async -> (violations: [String], counts: [Int]) {
    await withTaskGroup(of: ([String], [Int]).self) { group in
        for lane in 0..<lanes {
            group.addTask {
                await withCheckedContinuation { continuation in
                    Thread {
                        var (found, counts): ([String], [Int]) = ([], [])
                        for seed in stride(from: UInt64(lane), to: UInt64(count), by: lanes) {
                            let schedule = run(seed)
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

extension BlockingIO {
    /// A simulated disk's fsyncs: each takes a latency drawn from `random` in simulated
    /// time, on the simulation's executor. As on SwiftNIO's thread pool, an fsync that has
    /// started finishes even if the task that waits for it is cancelled (a request whose
    /// sender died): a cancellable wait left entries written and never fsynced.
    static func simulated(
        clock: ManualClock, random: SimulationRandom, latency: ClosedRange<Duration>, executor: SimulationExecutor
    ) -> BlockingIO {
        BlockingIO { work in
            let latency = random.duration(latency)
            try await Task(executorPreference: executor) {
                try? await clock.sleep(for: latency)
                try work()
            }.value
        }
    }
}

import Glibc
import ReplogCore
import ReplogTestKit
import Synchronization

/// Runs every job of the simulated cluster on the calling thread, one at a time, in the
/// order they were enqueued. With the manual clock this makes a whole schedule, every
/// interleaving included, a function of its seed.
///
/// Tasks opt in with `Task(executorPreference:)`; their child tasks, continuations and
/// task-group members inherit the preference. An unstructured `Task` without a preference
/// does not: it runs on the global pool, beside the simulation, and the jobs it hands back
/// arrive from another thread at moments no seed decides. `leak` reports those, so a
/// simulation can report the leak instead of silently replaying differently (an optimised
/// build showed one: the master's streams ran on the global pool).
final class SimulationExecutor: TaskExecutor, Sendable {
    private let queue = Mutex<[UnownedJob]>([])
    private let owner = Mutex<pthread_t?>(nil)
    private let foreign = Atomic<Int>(0)

    /// Makes the calling thread the simulation's: jobs enqueued from any other count as foreign.
    func claimThread() { owner.withLock { $0 = pthread_self() } }

    /// What to report when jobs were enqueued from a thread other than the simulation's.
    var leak: String? {
        let count = foreign.load(ordering: .relaxed)
        guard count > 0 else { return nil }
        return "\(count) jobs reached the simulation from other threads: a task runs outside its executor, so the seed no longer decides the run"
    }

    func enqueue(_ job: consuming ExecutorJob) {
        if let owner = owner.withLock({ $0 }), pthread_equal(owner, pthread_self()) == 0 {
            foreign.add(1, ordering: .relaxed)
        }
        let job = UnownedJob(job)
        queue.withLock { $0.append(job) }
    }

    /// Runs jobs until none is left; returns how many ran.
    @discardableResult
    func runUntilIdle() -> Int {
        var ran = 0
        while let job = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            job.runSynchronously(on: asUnownedTaskExecutor())
            ran += 1
        }
        return ran
    }
}

/// A seeded generator shared by everything in one schedule (single-threaded, so the
/// draws happen in the same order on every replay).
final class SimulationRandom: Sendable {
    private let generator: Mutex<SplitMix64>

    init(seed: UInt64) { generator = Mutex(SplitMix64(seed: seed)) }

    func next() -> UInt64 { generator.withLock { $0.next() } }

    /// A number in `0..<1`.
    func unit() -> Double { generator.withLock { $0.unit() } }
    func chance(_ probability: Double) -> Bool { unit() < probability }
    func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    func duration(_ range: ClosedRange<Duration>) -> Duration {
        range.lowerBound + (range.upperBound - range.lowerBound) * unit()
    }
}

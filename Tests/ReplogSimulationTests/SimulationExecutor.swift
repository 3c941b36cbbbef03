import Synchronization

/// Runs every job of the simulated cluster on the calling thread, one at a time, in the
/// order they were enqueued. With the manual clock this makes a whole schedule, every
/// interleaving included, a function of its seed.
///
/// Tasks opt in with `Task(executorPreference:)`; their child tasks, continuations and
/// task-group members inherit the preference.
final class SimulationExecutor: TaskExecutor, Sendable {
    private let queue = Mutex<[UnownedJob]>([])

    func enqueue(_ job: consuming ExecutorJob) {
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
    private let state: Mutex<UInt64>

    init(seed: UInt64) {
        // Mix the seed first: raw consecutive seeds would give streams that are shifted
        // copies of each other.
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        state = Mutex(z ^ (z >> 31))
    }

    func next() -> UInt64 {
        state.withLock { state in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// A number in `0..<1`.
    func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    func chance(_ probability: Double) -> Bool { unit() < probability }
    func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    func duration(_ range: ClosedRange<Duration>) -> Duration {
        range.lowerBound + (range.upperBound - range.lowerBound) * unit()
    }
}

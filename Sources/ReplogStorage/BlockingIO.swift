import NIOPosix
import Synchronization
import ReplogCore

/// Where a node runs the file I/O that may block (fsync): never on Swift Concurrency's
/// cooperative threads, which every task of the node shares.
///
/// Production uses SwiftNIO's thread pool; the simulation passes its own, which runs the
/// work on its single-threaded executor after a simulated disk latency, so that a seed
/// replays exactly.
public struct BlockingIO: Sendable {
    private let body: @Sendable (@escaping @Sendable () throws -> Void) async throws -> Void

    public init(_ body: @escaping @Sendable (@escaping @Sendable () throws -> Void) async throws -> Void) {
        self.body = body
    }

    /// Runs `work` and returns its result; errors of `work` are rethrown as they are.
    public func run(_ work: @escaping @Sendable () throws -> Void) async throws {
        try await body(work)
    }

    /// Runs `work` and returns its result; an error that is not the store's (the thread pool
    /// shut down) becomes `LogStoreError.io`.
    public func run<Value: Sendable>(_ work: @escaping @Sendable () throws(LogStoreError) -> Value) async throws(LogStoreError) -> Value {
        do {
            return try await value { try work() }
        } catch {
            throw error as? LogStoreError ?? .io("\(error)")
        }
    }

    /// Runs `work` and returns its value; whatever it throws is rethrown as it is.
    public func value<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
        let result = Mutex<Result<Value, any Error>?>(nil)
        try await body { result.withLock { $0 = Result { try work() } } }
        return try result.withLock { $0! }.get()
    }

    /// SwiftNIO's shared thread pool (throws once the pool has shut down).
    public static let threadPool = BlockingIO { work in try await NIOThreadPool.singleton.runIfActive(work) }
}

import NIOCore

/// Runs a task's jobs on one SwiftNIO event loop, so that a task which waits for I/O on
/// that loop is woken there, without a hop to another thread:
/// - an append that starts on the loop that read it continues there, and so does its
///   answer (`AppendFastPath`);
/// - a secondary's replication stream runs on the loop of its connections to that
///   secondary (`PeerConnections.executor(for:)`).
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }
}

import NIOCore
import NIOPosix
import ServiceLifecycle

/// Ends when the `replog cluster` that started this node is gone, however it ended.
///
/// The cluster gives each node the read end of a pipe as standard input and never writes
/// to it. When the cluster process ends (Ctrl-C, SIGTERM, `kill -9`, a crash, a closed
/// output pipe), the kernel closes the write end, this node reads end-of-file, and it
/// shuts down gracefully instead of living on as an orphan that holds its port.
struct ParentWatch: Service {
    func run() async throws {
        let stdin = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .takingOwnershipOfDescriptor(input: STDIN_FILENO).get()
        // The node stops for another reason: stop watching. Both ways, because a service that
        // fails (a port already taken) makes the group cancel the others rather than shut
        // them down gracefully, and a future's get() does not end on cancellation: without
        // the cancellation handler the node printed its error and then hung for ever.
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await stdin.closeFuture.get()
            } onGracefulShutdown: {
                stdin.close(promise: nil)
            }
        } onCancel: {
            stdin.close(promise: nil)
        }
    }
}

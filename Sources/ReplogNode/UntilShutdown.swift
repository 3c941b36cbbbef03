import ServiceLifecycle

/// Runs `operation` until it returns, or until graceful shutdown or cancellation, which
/// cancel it; returns once it has returned.
///
/// Like ServiceLifecycle's `cancelWhenGracefulShutdown`, but the cancellation reaches the
/// operation synchronously, in the canceller's thread. `cancelWhenGracefulShutdown` hands
/// it over through an actor and an unstructured task on the global executor, so in the
/// simulation a crashed node's loops stopped at a moment the seed did not decide (two runs
/// of one schedule could differ). `executor` is where the operation runs (the simulation's,
/// or nil for the default).
func untilShutdown(on executor: (any TaskExecutor)?, _ operation: @escaping @Sendable () async -> Void) async {
    let task = Task(executorPreference: executor) { await operation() }
    await withTaskCancellationHandler {
        await withGracefulShutdownHandler {
            await task.value
        } onGracefulShutdown: {
            task.cancel()
        }
    } onCancel: {
        task.cancel()
    }
}

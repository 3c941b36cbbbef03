extension Task where Failure == any Error {
    /// Waits for the task's value like `value`, but cancels the task when the waiting task is
    /// cancelled. A test's time limit cancels the test, not the tasks it started; without this
    /// a test waiting for an append that never completes would hang the whole run instead of
    /// failing at its limit.
    public func join() async throws -> Success {
        try await withTaskCancellationHandler { try await value } onCancel: { cancel() }
    }
}

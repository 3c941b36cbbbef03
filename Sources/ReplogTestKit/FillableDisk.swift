import ReplogStorage
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A disk that can fill up, for tests of a full disk: a `FileLogStore` opened with
/// `FileLogStore.Options(writeFile: disk.write)` has every write refused with `ENOSPC`
/// while the disk is full, as a real full disk does, and written normally otherwise.
public final class FillableDisk: Sendable {
    private let full: Atomic<Bool>

    public init(full: Bool) {
        self.full = Atomic(full)
    }

    /// Takes writes again.
    public func makeRoom() { full.store(false, ordering: .relaxed) }

    /// The `pwrite` of `FileLogStore.Options.writeFile`.
    public func write(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, _ offset: Int) -> Int {
        guard !full.load(ordering: .relaxed) else {
            errno = ENOSPC
            return -1
        }
        return FileLogStore.systemPwrite(descriptor, bytes, offset)
    }
}

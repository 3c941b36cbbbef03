import Foundation
import Synchronization

/// A node's data folder on a file system of its own (ext4 in a file, on a loop device) that
/// can lose power: `cutPower` shuts the file system down without writing anything more
/// (the `FS_IOC_SHUTDOWN` ioctl with `NOLOGFLUSH`, as xfstests simulate a power failure),
/// so what the node wrote but did not fsync is gone when it is mounted again, while what it
/// fsynced is there. A `kill -9` alone loses nothing the kernel already holds; this is how
/// a real-network test finds a node that answers before its fsync.
///
/// Nodes run in mount namespaces of their own (`ip netns exec` makes one), each with a copy
/// of every mount: a disk is mounted below a folder that shares its mounts
/// (`PowerLossDisk.shareMounts`), so that unmounting it reaches every copy, and mounting it
/// again mounts a fresh file system rather than the one that was shut down.
///
/// Needs root, `losetup`, `mkfs.ext4` and `mount` (`PowerLossDisk.unavailable`).
final class PowerLossDisk: Sendable {
    static let unavailable: String? = {
        for tool in ["/usr/sbin/losetup", "/usr/sbin/mkfs.ext4", "/usr/bin/mount", "/usr/bin/umount"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "needs \(tool) (apt-get install util-linux mount e2fsprogs)"
        }
        guard FileManager.default.fileExists(atPath: "/dev/loop-control") else { return "needs loop devices (/dev/loop-control)" }
        return nil
    }()

    /// Every image lives in a folder named for the run's process, so a later run can take
    /// down what a killed run left mounted.
    static let folderPrefix = "replog-disks-"

    let mountPoint: String
    private let image: String
    private let device: String
    private let detached = Mutex(false)

    /// Makes an ext4 image of `megabytes` (sparse: it takes on the host only what is written)
    /// and mounts it at `mountPoint`.
    init(image: URL, mountPoint: URL, megabytes: Int = 256) throws {
        self.image = image.path
        self.mountPoint = mountPoint.path
        guard FileManager.default.createFile(atPath: image.path, contents: nil) else { throw Failure("cannot create \(image.path)") }
        let handle = try FileHandle(forWritingTo: image)
        try handle.truncate(atOffset: UInt64(megabytes) << 20)
        try handle.close()
        try Self.run("/usr/sbin/mkfs.ext4", "-q", "-F", image.path)
        device = try Self.run("/usr/sbin/losetup", "--find", "--show", image.path)
        do {
            try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
            try Self.run("/usr/bin/mount", device, mountPoint.path)
        } catch {
            _ = try? Self.run("/usr/sbin/losetup", "--detach", device)
            throw error
        }
    }

    deinit { tearDown() }

    /// The power goes: from now on nothing reaches the disk, and the node's next write or
    /// fsync fails. Kill the node, then `powerOn`.
    func cutPower() throws {
        // The ioctl shuts down whichever file system holds the folder: only ever ours.
        guard Self.mounts().contains(where: { $0.point == mountPoint && $0.source == device }) else {
            throw Failure("\(mountPoint) is not \(device)'s mount; not shutting it down")
        }
        let folder = open(mountPoint, O_RDONLY | O_DIRECTORY)
        guard folder >= 0 else { throw Failure("cannot open \(mountPoint): errno \(errno)") }
        defer { close(folder) }
        var noLogFlush: UInt32 = 2  // EXT4_GOING_FLAGS_NOLOGFLUSH
        guard ioctl(folder, 0x8004_587D, &noLogFlush) == 0 else { throw Failure("FS_IOC_SHUTDOWN failed: errno \(errno)") }
    }

    /// Mounts the disk again once its node is gone: the journal is replayed, and the folder
    /// holds what was fsynced before the power went.
    func powerOn() async throws {
        // The node's process may take a moment to let go of the file system.
        for attempt in 0..<100 {
            do {
                try Self.run("/usr/bin/umount", mountPoint)
                break
            } catch where attempt < 99 {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try Self.run("/usr/bin/mount", device, mountPoint)
    }

    /// Unmounts and detaches the disk, and deletes its image. Its node was just killed and
    /// may hold the file system for a moment: the unmount is tried for up to 2 s before it
    /// is left to finish lazily, because a loop device whose file system is still mounted
    /// somewhere is not detached, and would outlive the run with its image deleted.
    func tearDown() {
        guard detached.withLock({ detached in defer { detached = true }; return !detached }) else { return }
        var unmounted = false
        for _ in 0..<40 where !unmounted {
            unmounted = (try? Self.run("/usr/bin/umount", mountPoint)) != nil
            if !unmounted { usleep(50_000) }
        }
        if !unmounted { _ = try? Self.run("/usr/bin/umount", "--lazy", mountPoint) }
        _ = try? Self.run("/usr/sbin/losetup", "--detach", device)
        try? FileManager.default.removeItem(atPath: image)
    }

    /// Makes `folder` a mount of its own whose mounts and unmounts reach every copy of it in
    /// other mount namespaces (a shared bind mount); the disks go below it.
    static func shareMounts(in folder: URL) throws {
        try run("/usr/bin/mount", "--bind", folder.path, folder.path)
        try run("/usr/bin/mount", "--make-shared", folder.path)
    }

    /// Undoes `shareMounts`, once the disks below are gone.
    static func unshareMounts(in folder: URL) {
        if (try? run("/usr/bin/umount", folder.path)) == nil { _ = try? run("/usr/bin/umount", "--lazy", folder.path) }
    }

    /// Unmounts and detaches the disks of earlier runs whose process is gone, and removes
    /// their folders.
    static func removeLeftovers(in parent: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        for name in names where name.hasPrefix(folderPrefix) {
            guard let pid = Int32(name.dropFirst(folderPrefix.count).prefix { $0.isNumber }), kill(pid, 0) != 0, errno == ESRCH else { continue }
            let folder = parent.appendingPathComponent(name).path
            for mount in mounts().reversed() where mount.point == folder || mount.point.hasPrefix(folder + "/") {
                _ = try? run("/usr/bin/umount", "--lazy", mount.point)
            }
            let loops = ((try? run("/usr/sbin/losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE")) ?? "").split(separator: "\n")
            for loop in loops {
                let fields = loop.split(separator: " ", omittingEmptySubsequences: true)
                if fields.count == 2, fields[1].hasPrefix(folder + "/") { _ = try? run("/usr/sbin/losetup", "--detach", String(fields[0])) }
            }
            try? FileManager.default.removeItem(atPath: folder)
        }
    }

    /// This process's mounts: mount point and source, from `/proc/self/mountinfo`.
    private static func mounts() -> [(point: String, source: String)] {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return (point: String(fields[4]), source: String(fields[dash + 2]))
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @discardableResult
    private static func run(_ arguments: String...) throws -> String {
        try NamespaceNetwork.run(arguments)
    }
}

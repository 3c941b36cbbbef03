import Foundation
import ReplogCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A node's `--data-dir`: its log segments plus `replog.json`, which says which role the
/// folder belongs to, its format version, and which master log it holds.
///
/// Opening refuses, with a clear reason, a folder that cannot be written, that belongs to
/// a node of the other role, or that a newer replog wrote: never silent data loss.
public struct DataDirectory: Sendable {
    /// 2: a master's records may carry the client's idempotency key (`RecordFraming.idFlag`).
    /// 3: records may carry a batch mark (`RecordFraming.continuesFlag`).
    /// A replog that reads an older format would take such a record for damage and cut the
    /// log there, so it must refuse the folder instead.
    public static let formatVersion = 3
    static let metadataName = "replog.json"

    public struct Metadata: Codable, Sendable, Equatable {
        public var format: Int
        public var role: String
        /// The master log this folder holds (`nil` until a secondary has received something).
        public var log: String?
    }

    public struct Problem: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public let url: URL
    public private(set) var metadata: Metadata
    /// Held for as long as any copy of this value lives: no other process opens the folder.
    private let lock: FolderLock

    /// Opens or initialises `path` for `role` ("master" or "secondary").
    public init(path: String, role: String) throws(Problem) {
        let url = URL(fileURLWithPath: path, isDirectory: true)
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw Problem(description: "data dir \(path) cannot be created: \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: url.path) else {
            throw Problem(description: "data dir \(path) is not writable")
        }
        // Before anything is read: two nodes on one folder would each recover and append to
        // the same segments (a restart command pasted while the node still runs).
        self.lock = try FolderLock(url, path: path)
        self.url = url
        let metadataURL = url.appendingPathComponent(Self.metadataName)
        if let data = try? Data(contentsOf: metadataURL) {
            guard let metadata = try? JSONDecoder().decode(Metadata.self, from: data) else {
                throw Problem(description: "\(metadataURL.path) is not a replog metadata file; refusing to touch \(path)")
            }
            guard metadata.format <= Self.formatVersion else {
                throw Problem(description: "data dir \(path) was written by a newer replog (format \(metadata.format), this one reads \(Self.formatVersion))")
            }
            guard metadata.role == role else {
                throw Problem(description: "data dir \(path) belongs to a \(metadata.role), not a \(role); give each node its own folder")
            }
            self.metadata = metadata
            if metadata.format < Self.formatVersion {
                // Older records are newer records without keys or batch marks: mark the folder
                // before anything new is written to it.
                self.metadata.format = Self.formatVersion
                try save()
            }
        } else {
            let hasSegments = ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).contains { $0.hasSuffix(".seg") }
            guard !hasSegments else {
                throw Problem(description: "data dir \(path) holds log segments but no \(Self.metadataName); refusing to guess whose they are")
            }
            self.metadata = Metadata(format: Self.formatVersion, role: role, log: nil)
            try save()
        }
    }

    /// The master log a master's folder holds, named and recorded on first use: a master
    /// keeps one log id for the life of its data dir, so that its secondaries recognise it
    /// after a restart. (A master without a data dir starts a new log every time.)
    public mutating func masterLog() throws(Problem) -> String {
        if let log = metadata.log { return log }
        let log = UUID().uuidString
        try setLog(log)
        return log
    }

    /// Records which master log this folder holds (atomically: write, fsync, rename).
    public mutating func setLog(_ log: String) throws(Problem) {
        guard metadata.log != log else { return }
        metadata.log = log
        try save()
    }

    private func save() throws(Problem) {
        try writeAtomically(metadata, to: Self.metadataName)
    }

    // MARK: Failover

    static let electionName = "election.json"

    /// What a node keeps for failover beside its log (`election.json`): its election record
    /// (epoch, vote, epoch history) and the cluster it belongs to, as its master last told it.
    public typealias ElectionState = FailoverMember.Kept

    /// The election state saved in this folder (an empty one if none was saved yet).
    public var election: ElectionState {
        get throws(Problem) {
            let file = url.appendingPathComponent(Self.electionName)
            guard let data = try? Data(contentsOf: file) else { return ElectionState() }
            guard let state = try? JSONDecoder().decode(ElectionState.self, from: data) else {
                throw Problem(description: "\(file.path) is not a replog election file; refusing to vote without it")
            }
            return state
        }
    }

    /// Saves the election state (atomically, fsynced: a vote must outlive a crash).
    public func saveElection(_ state: ElectionState) throws(Problem) {
        try writeAtomically(state, to: Self.electionName)
    }

    static let commitName = "commit.json"

    private struct CommitRecord: Codable {
        var commitSeq: Int
    }

    /// The commit point saved in this folder (0 if none was saved yet): the highest seq this
    /// node learned that no failover can replace.
    public var commitSeq: Int {
        get throws(Problem) {
            let file = url.appendingPathComponent(Self.commitName)
            guard let data = try? Data(contentsOf: file) else { return 0 }
            guard let record = try? JSONDecoder().decode(CommitRecord.self, from: data) else {
                throw Problem(description: "\(file.path) is not a replog commit file")
            }
            return record.commitSeq
        }
    }

    /// Saves the commit point (atomically, fsynced: a restarted node never shows its readers
    /// less than it showed before).
    public func saveCommit(_ seq: Int) throws(Problem) {
        try writeAtomically(CommitRecord(commitSeq: seq), to: Self.commitName)
    }

    /// Writes the entries a node cut from its log (failover) to `rollback/`, one JSON line
    /// each, in a file named after the time and the first seq; returns its path.
    public func saveRollback(_ entries: [LogEntry], epoch: Int) throws(Problem) -> String {
        let folder = url.appendingPathComponent("rollback", isDirectory: true)
        let name = "epoch-\(epoch)-from-seq-\(entries.first?.seq ?? 0)-\(Int(Date().timeIntervalSince1970)).jsonl"
        let lines = entries.map { entry in
            (try? JSONEncoder().encode(entry)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        }
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: folder.appendingPathComponent(name), options: .atomic)
        } catch {
            throw Problem(description: "cannot write \(folder.path)/\(name): \(error.localizedDescription)")
        }
        return folder.appendingPathComponent(name).path
    }

    private func writeAtomically(_ value: some Encodable, to name: String) throws(Problem) {
        let target = url.appendingPathComponent(name)
        let temporary = url.appendingPathComponent(name + ".tmp")
        guard let data = try? JSONEncoder().encode(value) else {
            throw Problem(description: "cannot encode \(target.path)")
        }
        // Write, fsync, then rename: after a crash the file is either the old or the new one.
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw Problem(description: "cannot write \(temporary.path): \(FileLogStore.errnoText())") }
        let written = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == data.count, synced == 0, rename(temporary.path, target.path) == 0 else {
            throw Problem(description: "cannot write \(target.path): \(FileLogStore.errnoText())")
        }
        FileLogStore.syncDirectory(url)
    }
}

/// An exclusive lock on a data dir (`replog.lock`), as etcd and Kafka take one: a second
/// process that opens the folder is refused and told which process holds it.
///
/// A POSIX record lock (`fcntl`), so that the kernel names the holder and drops the lock
/// when the process ends, however it ends. It belongs to the process: opening the folder
/// again in the same process (tests do) succeeds, and closing any copy releases it.
final class FolderLock: Sendable {
    private let descriptor: Int32

    init(_ folder: URL, path: String) throws(DataDirectory.Problem) {
        let file = folder.appendingPathComponent("replog.lock").path
        let descriptor = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw DataDirectory.Problem(description: "cannot open \(file): \(FileLogStore.errnoText())")
        }
        var wanted = Self.wholeFileWriteLock()
        guard fcntl(descriptor, F_SETLK, &wanted) == 0 else {
            var holder = Self.wholeFileWriteLock()
            let known = fcntl(descriptor, F_GETLK, &holder) == 0 && holder.l_type != Int16(F_UNLCK)
            close(descriptor)
            throw DataDirectory.Problem(
                description: "data dir \(path) is in use by \(known ? "process \(holder.l_pid)" : "another process") "
                    + "(a replog node still running?): stop it first, or give this node a folder of its own")
        }
        self.descriptor = descriptor
    }

    private static func wholeFileWriteLock() -> flock {
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 0
        lock.l_len = 0  // to the end of the file, however long
        return lock
    }

    deinit { close(descriptor) }
}

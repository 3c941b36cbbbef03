import Foundation

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
    /// A replog that reads only format 1 would take such a record for damage and cut the log
    /// there, so it must refuse the folder instead.
    public static let formatVersion = 2
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
                // Format 1 records are format 2 records without keys: mark the folder before
                // anything new is written to it.
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
        let target = url.appendingPathComponent(Self.metadataName)
        let temporary = url.appendingPathComponent(Self.metadataName + ".tmp")
        guard let data = try? JSONEncoder().encode(metadata) else {
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

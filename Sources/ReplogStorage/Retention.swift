import CoreMetrics
import Foundation
import Logging
import Metrics
import ReplogCore
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How much of its log a node keeps (`--retain-messages`, `--retain-bytes`, `--retain-age`;
/// by default everything). Whole segments go, oldest first, and never the one being written,
/// so a node keeps at least what the limits ask and at most one segment more.
public struct RetentionPolicy: Sendable, Equatable {
    /// Keep at least the newest this many messages.
    public var messages: Int?
    /// Keep at least this many bytes of records (the newest).
    public var bytes: Int?
    /// Keep what was written within this long.
    public var age: Duration?

    public init(messages: Int? = nil, bytes: Int? = nil, age: Duration? = nil) {
        self.messages = messages
        self.bytes = bytes
        self.age = age
    }

    public var keepsEverything: Bool { messages == nil && bytes == nil && age == nil }

    /// A segment as retention sees it.
    public struct Segment: Sendable, Equatable {
        public var lastSeq: Int
        public var bytes: Int
        /// When its last record was written.
        public var lastWrite: Date
        public init(lastSeq: Int, bytes: Int, lastWrite: Date) {
            self.lastSeq = lastSeq
            self.bytes = bytes
            self.lastWrite = lastWrite
        }
    }

    /// How many of the oldest `segments` (oldest first; the last is being written) go now: a
    /// segment goes when what stays after it still holds `messages` messages or `bytes`
    /// bytes, or when its newest record is older than `age`.
    public func segmentsToDrop(_ segments: [Segment], lastSeq: Int, now: Date) -> Int {
        guard !keepsEverything else { return 0 }
        var remainingBytes = segments.reduce(0) { $0 + $1.bytes }
        var dropped = 0
        for segment in segments.dropLast() {
            let tooMany = messages.map { lastSeq - segment.lastSeq >= $0 } ?? false
            let tooLarge = bytes.map { remainingBytes - segment.bytes >= $0 } ?? false
            let tooOld = age.map { now.timeIntervalSince(segment.lastWrite) > Double($0.components.seconds) } ?? false
            guard tooMany || tooLarge || tooOld else { break }
            remainingBytes -= segment.bytes
            dropped += 1
        }
        return dropped
    }
}

/// Where a log starts when retention dropped its beginning (or a secondary restarted its
/// log at the master's first seq): the first seq it holds and the hash chain's full link
/// before it, so that the chain goes on as on every other node.
///
/// A file store keeps it in `start.json`, written (and fsynced) before the segments it
/// replaces are removed; replication sends it to a secondary that fell behind it.
public struct LogStart: Codable, Sendable, Equatable {
    public let firstSeq: Int
    /// The link at `firstSeq - 1`, 64 hex digits.
    public let link: String

    public init(firstSeq: Int, link: [UInt8]) {
        self.firstSeq = firstSeq
        let digits = Array("0123456789abcdef".utf8)
        self.link = String(decoding: link.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] }, as: UTF8.self)
    }

    /// The link's bytes, or nil when `link` is not 64 hex digits.
    public var linkBytes: [UInt8]? {
        guard link.utf8.count == 64 else { return nil }
        var bytes: [UInt8] = []
        var index = link.startIndex
        while index < link.endIndex {
            let next = link.index(index, offsetBy: 2)
            guard let byte = UInt8(link[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }

    /// The hash nodes show for the link (`HashChain.hash(at:)`): its first 8 bytes in hex.
    public var hash: String { String(link.prefix(16)) }

    /// `InternalWire.logStartHeader`'s text: the first seq and the link, space-separated.
    public var headerValue: String { "\(firstSeq) \(link)" }

    public init?(headerValue: String) {
        let parts = headerValue.split(separator: " ")
        guard parts.count == 2, let firstSeq = Int(parts[0]), firstSeq >= 1 else { return nil }
        self.firstSeq = firstSeq
        self.link = String(parts[1])
        guard linkBytes != nil else { return nil }
    }

    static let fileName = "start.json"

    /// Reads `start.json` in `directory`; nil when there is none (the log starts at 1).
    static func load(from directory: URL) throws(LogStoreError) -> LogStart? {
        let url = directory.appendingPathComponent(fileName)
        guard let data = try? Data(contentsOf: url) else { return nil }
        guard let start = try? JSONDecoder().decode(LogStart.self, from: data), start.firstSeq >= 1, start.linkBytes != nil else {
            throw .io("\(url.path) is not a replog log start; refusing to guess where the log starts")
        }
        return start
    }

    /// What `start.json` holds: the start, and the idempotency keys of the latest entries
    /// before it, so that retention never makes a node forget a key it would otherwise still
    /// know (a retry of one is answered, not appended again).
    private struct File: Codable {
        let firstSeq: Int
        let link: String
        var ids: [Key]?
        struct Key: Codable {
            let id: String
            let seq: Int
        }
    }

    /// The keys `start.json` in `directory` keeps (none when there is no such file).
    static func loadIDs(from directory: URL) -> [RememberedID] {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent(fileName)),
              let file = try? JSONDecoder().decode(File.self, from: data)
        else { return [] }
        return (file.ids ?? []).map { RememberedID(id: $0.id, seq: $0.seq) }
    }

    /// Writes `start.json` atomically and durably (write, fsync, rename, fsync the folder),
    /// with the keys of the latest entries before the start.
    func save(in directory: URL, ids: [RememberedID] = []) throws(LogStoreError) {
        let url = directory.appendingPathComponent(Self.fileName)
        let temporary = directory.appendingPathComponent(Self.fileName + ".tmp")
        do {
            let file = File(firstSeq: firstSeq, link: link, ids: ids.isEmpty ? nil : ids.map { File.Key(id: $0.id, seq: $0.seq) })
            let data = try JSONEncoder().encode(file)
            try data.write(to: temporary)
            let handle = try FileHandle(forWritingTo: temporary)
            try handle.synchronize()
            try handle.close()
        } catch {
            throw .io("cannot write \(url.path): \(error.localizedDescription)")
        }
        guard rename(temporary.path, url.path) == 0 else { throw .io("cannot write \(url.path): \(FileLogStore.errnoText())") }
        FileLogStore.syncDirectory(directory)
    }
}

/// Applies a node's `RetentionPolicy` once a second, off the cooperative threads (it
/// removes files and fsyncs the folder), until the node shuts down.
public final class RetentionService: Service {
    public static let interval: Duration = .seconds(1)

    public let store: any LogStore
    public let policy: RetentionPolicy
    private let io: BlockingIO
    private let clock: any NodeClock
    private let logger: Logger
    private let firstSeq: Gauge

    public init(
        store: any LogStore, policy: RetentionPolicy, io: BlockingIO = .threadPool, clock: any NodeClock = SystemClock(),
        logger: Logger = Logger(label: "replog.storage"), metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.store = store
        self.policy = policy
        self.io = io
        self.clock = clock
        self.logger = logger
        self.firstSeq = Gauge(label: "replog_first_seq", factory: metricsFactory)
        firstSeq.record(store.firstSeq)
    }

    /// One pass: drops what the policy no longer keeps; returns how many entries went.
    @discardableResult
    public func applyOnce() async throws -> Int {
        let dropped = Mutex(0)
        try await io.run { [store, policy] in
            let count = try store.applyRetention(policy, now: Date())
            dropped.withLock { $0 = count }
        }
        let count = dropped.withLock { $0 }
        if count > 0 {
            let start = store.firstSeq
            firstSeq.record(start)
            logger.info("retention dropped old segments", metadata: ["replog.entries": "\(count)", "replog.firstSeq": "\(start)"])
        }
        return count
    }

    /// Runs a pass every second. A file log gets one even when it keeps everything: a pass
    /// also closes the descriptors of segments that a cut or a restart of the log removed
    /// (one pass after, since a read may still use one).
    public func run() async throws {
        guard !policy.keepsEverything || store.readsFromDisk else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await clock.sleep(for: Self.interval)
            do {
                try await applyOnce()
            } catch let error as LogStoreError {
                logger.error("retention failed; the log keeps its segments", metadata: ["replog.error": "\(error)"])
            } catch {
                return  // the thread pool shut down: so does the node
            }
        }
    }
}

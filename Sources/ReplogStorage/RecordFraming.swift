import CReplogCRC32C
import NIOCore
import ReplogCore

/// The shape of one log entry on disk and on the wire.
///
/// ```
/// +----------------+----------------+------------------------------------+
/// | length: UInt32 | crc32c: UInt32 | payload: seq (UInt64) + UTF-8 text |
/// +----------------+----------------+------------------------------------+
/// ```
/// All integers little-endian. `length` counts the payload; the checksum covers the
/// payload, so a torn write (a short tail) and a flipped bit are both detected.
///
/// On the master's disk a record may also keep the client's idempotency key (data dir
/// format 2): then `length` has its top bit (`idFlag`) set and the payload is
/// `seq (UInt64) + id length (UInt16) + id (UTF-8) + text`. A restarted master reads the
/// keys back, so a client's retry after the restart still appends nothing.
///
/// A batch appended atomically (`"messages": [...]`, data dir format 3) is one record per
/// message with `continuesFlag` (bit 30 of `length`) set on every record but its last: "the
/// next record belongs to the same batch". Recovery drops a batch whose last record is
/// missing, streams never split one, and no node lists or acknowledges part of one.
///
/// The log segments are sequences of these records, and so is a replication batch: the
/// master sends a secondary the bytes it wrote to its own disk, keys included.
public enum RecordFraming {
    public static let headerSize = 8
    /// Larger lengths can only come from corruption.
    public static let maxPayloadSize = 256 << 20
    /// Set in `length` when the payload carries an idempotency key.
    static let idFlag: UInt32 = 1 << 31
    /// Set in `length` when the next record belongs to the same atomic batch.
    static let continuesFlag: UInt32 = 1 << 30

    /// How many bytes `entry` (with `id`) takes as a record.
    public static func size(of entry: LogEntry, id: String? = nil) -> Int {
        headerSize + 8 + (id.map { 2 + $0.utf8.count } ?? 0) + entry.message.utf8.count
    }

    /// Appends the framed `entry` to `bytes`, keeping `id` with it when there is one
    /// (at most `UInt16.max` bytes; `AppendRequest` allows 256), and marking it as
    /// `continues` (the next record belongs to the same batch) when it does.
    public static func encode(_ entry: LogEntry, id: String? = nil, continues: Bool = false, into bytes: inout [UInt8]) {
        let start = bytes.count
        let size = size(of: entry, id: id)
        bytes.append(contentsOf: repeatElement(0, count: size))
        bytes.withUnsafeMutableBytes { write(entry, id: id, continues: continues, size: size, to: UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
    }

    /// Appends the framed `entry` to `buffer`, as `encode(_:id:continues:into:)` does.
    public static func encode(_ entry: LogEntry, id: String? = nil, continues: Bool = false, into buffer: inout ByteBuffer) {
        let size = size(of: entry, id: id)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) {
            write(entry, id: id, continues: continues, size: size, to: $0)
            return size
        }
    }

    /// Writes the record of `entry` (`size` bytes) at the start of `bytes`: the one place
    /// that knows the layout.
    private static func write(_ entry: LogEntry, id: String?, continues: Bool, size: Int, to bytes: UnsafeMutableRawBufferPointer) {
        var lengthField = UInt32(size - headerSize)
        if id != nil { lengthField |= idFlag }
        if continues { lengthField |= continuesFlag }
        bytes.storeBytes(of: lengthField.littleEndian, toByteOffset: 0, as: UInt32.self)
        bytes.storeBytes(of: UInt64(entry.seq).littleEndian, toByteOffset: headerSize, as: UInt64.self)
        var offset = headerSize + 8
        func copy(_ text: String) {
            var text = text  // `withUTF8` may make the text contiguous first
            text.withUTF8 { utf8 in
                UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + utf8.count]).copyMemory(from: UnsafeRawBufferPointer(utf8))
                offset += utf8.count
            }
        }
        if let id {
            bytes.storeBytes(of: UInt16(id.utf8.count).littleEndian, toByteOffset: offset, as: UInt16.self)
            offset += 2
            copy(id)
        }
        copy(entry.message)
        // The checksum covers the payload, so it is written last.
        let checksum = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[headerSize..<size]))
        bytes.storeBytes(of: checksum.littleEndian, toByteOffset: 4, as: UInt32.self)
    }

    /// The records of `entries`, one after the other: a replication batch. `ids[i]` and
    /// `continues[i]` belong to `entries[i]` (missing means none, and `false`).
    public static func encode(_ entries: [LogEntry], ids: [String?] = [], continues: [Bool] = []) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.enumerated().reduce(0) { $0 + size(of: $1.element, id: ids.at($1.offset) ?? nil) })
        for (index, entry) in entries.enumerated() {
            encode(entry, id: ids.at(index) ?? nil, continues: continues.at(index) ?? false, into: &bytes)
        }
        return bytes
    }

    /// Decodes a buffer that holds whole records and nothing else (a replication batch);
    /// the reason, if any record is damaged or cut short.
    public static func decodeAll(_ bytes: UnsafeRawBufferPointer) -> Result<[LogEntry], BatchError> {
        decodeAllKeyed(bytes).map(\.entries)
    }

    /// Like `decodeAll`, with each record's idempotency key (`nil` where it has none) and
    /// batch mark: a secondary keeps both with the entries, so that a master elected later
    /// knows the keys, and nobody lists part of a batch.
    public static func decodeAllKeyed(_ bytes: UnsafeRawBufferPointer) -> Result<DecodedRecords, BatchError> {
        var records = DecodedRecords()
        var offset = 0
        while offset < bytes.count {
            switch decode(bytes, at: offset) {
            case .record(let entry, let size, let id, let continues):
                records.entries.append(entry)
                records.ids.append(id)
                records.continues.append(continues)
                offset += size
            case .truncated:
                return .failure(BatchError(description: "record \(records.entries.count + 1) is cut short at byte \(offset)"))
            case .corrupt(let reason):
                return .failure(BatchError(description: "record \(records.entries.count + 1) at byte \(offset): \(reason)"))
            }
        }
        return .success(records)
    }

    /// Records taken apart: `ids[i]` and `continues[i]` belong to `entries[i]`.
    public struct DecodedRecords: Sendable, Equatable {
        public var entries: [LogEntry] = []
        public var ids: [String?] = []
        public var continues: [Bool] = []
        /// Where the sender's log starts, when the receiver may lack what comes before.
        public var start: LogStart?
        public init(entries: [LogEntry] = [], ids: [String?] = [], continues: [Bool] = []) {
            self.entries = entries
            self.ids = ids
            self.continues = continues
        }
    }

    public struct BatchError: Error, Equatable, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public enum Decoded: Equatable {
        /// A complete, intact record, the number of bytes it took, its idempotency key, and
        /// whether the next record belongs to the same batch.
        case record(LogEntry, size: Int, id: String? = nil, continues: Bool = false)
        /// The bytes end before the record does (a torn write at the tail).
        case truncated
        /// The record is damaged: wrong checksum or impossible length.
        case corrupt(String)
    }

    /// Decodes the record that starts at `offset` in `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Decoded {
        guard bytes.count - offset >= headerSize else { return .truncated }
        let lengthField = readLittleEndian(UInt32.self, bytes, offset)
        let hasID = lengthField & idFlag != 0
        let length = Int(lengthField & ~(idFlag | continuesFlag))
        let checksum = readLittleEndian(UInt32.self, bytes, offset + 4)
        guard length >= (hasID ? 10 : 8), length <= maxPayloadSize else { return .corrupt("impossible record length \(length)") }
        guard bytes.count - offset - headerSize >= length else { return .truncated }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[(offset + headerSize)..<(offset + headerSize + length)])
        guard CRC32C.checksum(payload) == checksum else { return .corrupt("checksum mismatch") }
        let seq = Int(readLittleEndian(UInt64.self, payload, 0))
        var messageStart = 8
        var id: String?
        if hasID {
            let idLength = Int(readLittleEndian(UInt16.self, payload, 8))
            guard 10 + idLength <= length else { return .corrupt("idempotency key longer than its record") }
            id = String(decoding: payload[10..<(10 + idLength)], as: UTF8.self)
            messageStart = 10 + idLength
        }
        let message = String(decoding: payload[messageStart...], as: UTF8.self)
        return .record(
            LogEntry(seq: seq, message: message), size: headerSize + length, id: id, continues: lengthField & continuesFlag != 0)
    }

    static func readLittleEndian<T: FixedWidthInteger>(_: T.Type, _ bytes: UnsafeRawBufferPointer, _ offset: Int) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and many logs.
///
/// Every record is checksummed when it is written and again when a secondary receives it.
/// Byte by byte this was the master's largest cost for batches (13 % of its CPU); eight
/// bytes at a time with eight tables ("slicing-by-8", as in Intel's and zlib's software
/// CRCs) it was still 8 % with 1 MiB messages. So it uses the processor's CRC32 instruction
/// where there is one (x86-64 SSE 4.2, 64-bit ARM; `CReplogCRC32C`), and the tables
/// elsewhere. `checksumBytewise` is the plain definition, which the tests compare both with.
public enum CRC32C {
    /// Whether `checksum` uses the processor's instruction.
    public static let inHardware = replog_crc32c_in_hardware() != 0

    /// `tables[k][i]`: the CRC of byte `i` followed by `k` zero bytes; `tables[0]` is the
    /// classic byte-at-a-time table.
    private static let tables: [[UInt32]] = {
        var first = [UInt32](repeating: 0, count: 256)
        for index in 0..<256 {
            var crc = UInt32(index)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            first[index] = crc
        }
        var tables = [first]
        for k in 1..<8 {
            tables.append((0..<256).map { tables[k - 1][$0] >> 8 ^ first[Int(tables[k - 1][$0] & 0xFF)] })
        }
        return tables
    }()
    /// The eight tables one after the other, for unchecked indexing on the hot path.
    private static let flat: [UInt32] = tables.flatMap { $0 }

    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        let array = Array(bytes)
        return array.withUnsafeBytes { checksum($0) }
    }

    /// The definition, one byte at a time.
    public static func checksumBytewise(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = tables[0][Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard inHardware, let start = bytes.baseAddress else { return checksumInSoftware(bytes) }
        return replog_crc32c(start, bytes.count)
    }

    /// Slicing-by-8: where the processor has no CRC32 instruction.
    public static func checksumInSoftware(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        flat.withUnsafeBufferPointer { table in
            var crc: UInt32 = 0xFFFF_FFFF
            var offset = 0
            let count = bytes.count
            while count - offset >= 8 {
                let low = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) ^ crc
                let high = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                crc = table[7 * 256 + Int(low & 0xFF)] ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((low >> 16) & 0xFF)] ^ table[4 * 256 + Int(low >> 24)]
                    ^ table[3 * 256 + Int(high & 0xFF)] ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((high >> 16) & 0xFF)] ^ table[Int(high >> 24)]
                offset += 8
            }
            while offset < count {
                crc = table[Int((crc ^ UInt32(bytes[offset])) & 0xFF)] ^ (crc >> 8)
                offset += 1
            }
            return crc ^ 0xFFFF_FFFF
        }
    }
}

/// Consecutive entries as the log's own records (`RecordFraming`): what a master sends a
/// secondary, read from its log as it is on disk, keys included, with nothing decoded or
/// encoded again on the way.
///
/// The records are kept in a `ByteBuffer`, which goes to the socket as it is: a batch of
/// large messages is written into memory once, not copied again for the network.
public struct RecordBatch: Sendable, Equatable {
    /// The records, one after the other.
    public let buffer: ByteBuffer
    /// The seqs they carry.
    public let seqs: ClosedRange<Int>
    /// Set when the sender no longer holds what comes before `seqs` (retention): a receiver
    /// that lacks it starts its log again at `start` (`LogStore.restart(at:)`).
    public var start: LogStart?

    public init(buffer: ByteBuffer, seqs: ClosedRange<Int>) {
        self.buffer = buffer
        self.seqs = seqs
    }

    public init(bytes: [UInt8], seqs: ClosedRange<Int>) {
        self.init(buffer: ByteBuffer(bytes: bytes), seqs: seqs)
    }

    /// Encodes `entries` (which MUST be consecutive and not empty), with their keys and
    /// batch marks (see `RecordFraming.encode(_:ids:continues:)`).
    public init(_ entries: [LogEntry], ids: [String?] = [], continues: [Bool] = []) {
        precondition(!entries.isEmpty, "a batch holds at least one entry")
        let size = entries.indices.reduce(0) { $0 + RecordFraming.size(of: entries[$1], id: ids.at($1) ?? nil) }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        for (index, entry) in entries.enumerated() {
            RecordFraming.encode(entry, id: ids.at(index) ?? nil, continues: continues.at(index) ?? false, into: &buffer)
        }
        self.init(buffer: buffer, seqs: entries.first!.seq...entries.last!.seq)
    }

    public var count: Int { seqs.count }

    /// The records as an array (tests; a copy).
    public var bytes: [UInt8] { Array(buffer.readableBytesView) }

    /// The entries, for a receiver in the same process (the in-memory transports).
    public func entries() throws(RecordFraming.BatchError) -> [LogEntry] {
        try buffer.withUnsafeReadableBytes { RecordFraming.decodeAll($0) }.get()
    }

    /// The entries with their idempotency keys, batch marks and the log's start, if set.
    public func keyedEntries() throws(RecordFraming.BatchError) -> RecordFraming.DecodedRecords {
        var records = try buffer.withUnsafeReadableBytes { RecordFraming.decodeAllKeyed($0) }.get()
        records.start = start
        return records
    }
}

extension Array {
    /// The element at `index`, or nil past the end: for the optional parallel arrays (keys,
    /// batch marks) that may be shorter than the entries they belong to.
    func at(_ index: Int) -> Element? { index < count ? self[index] : nil }
}

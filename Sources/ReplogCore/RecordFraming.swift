/// The on-disk shape of one log entry.
///
/// ```
/// +----------------+----------------+------------------------------------+
/// | length: UInt32 | crc32c: UInt32 | payload: seq (UInt64) + UTF-8 text |
/// +----------------+----------------+------------------------------------+
/// ```
/// All integers little-endian. `length` counts the payload; the checksum covers the
/// payload, so a torn write (a short tail) and a flipped bit are both detected.
public enum RecordFraming {
    public static let headerSize = 8
    /// Larger lengths can only come from corruption.
    public static let maxPayloadSize = 256 << 20

    /// Appends the framed `entry` to `bytes`.
    public static func encode(_ entry: LogEntry, into bytes: inout [UInt8]) {
        var payload: [UInt8] = []
        payload.reserveCapacity(8 + entry.message.utf8.count)
        appendLittleEndian(UInt64(entry.seq), to: &payload)
        payload.append(contentsOf: entry.message.utf8)
        appendLittleEndian(UInt32(payload.count), to: &bytes)
        appendLittleEndian(CRC32C.checksum(payload), to: &bytes)
        bytes.append(contentsOf: payload)
    }

    public enum Decoded: Equatable {
        /// A complete, intact record and the number of bytes it took.
        case record(LogEntry, size: Int)
        /// The bytes end before the record does (a torn write at the tail).
        case truncated
        /// The record is damaged: wrong checksum or impossible length.
        case corrupt(String)
    }

    /// Decodes the record that starts at `offset` in `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Decoded {
        guard bytes.count - offset >= headerSize else { return .truncated }
        let length = Int(readLittleEndian(UInt32.self, bytes, offset))
        let checksum = readLittleEndian(UInt32.self, bytes, offset + 4)
        guard length >= 8, length <= maxPayloadSize else { return .corrupt("impossible record length \(length)") }
        guard bytes.count - offset - headerSize >= length else { return .truncated }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[(offset + headerSize)..<(offset + headerSize + length)])
        guard CRC32C.checksum(payload) == checksum else { return .corrupt("checksum mismatch") }
        let seq = Int(readLittleEndian(UInt64.self, payload, 0))
        let message = String(decoding: payload[8...], as: UTF8.self)
        return .record(LogEntry(seq: seq, message: message), size: headerSize + length)
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func readLittleEndian<T: FixedWidthInteger>(_: T.Type, _ bytes: UnsafeRawBufferPointer, _ offset: Int) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and many logs.
public enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        table.withUnsafeBufferPointer { table in
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            return crc ^ 0xFFFF_FFFF
        }
    }
}

import Crypto
import ReplogCore

/// A running hash of a log, so that two nodes can show they hold the same log by
/// comparing one value instead of every entry (issue 18).
///
/// Link 0 is 32 zero bytes; link n is SHA-256(link n-1 ‖ n as 8 bytes big-endian ‖ the
/// message's UTF-8 bytes). Two logs with the same link at seq n hold the same n entries.
/// Every store keeps the chain of what it holds, rebuilt from the entries when it opens,
/// so it needs no file of its own and cannot disagree with the log it describes.
///
/// To answer "what was your link at seq k" for any k it holds, it keeps the first 8 bytes
/// of every link (8 bytes an entry, beside the 4 of the file index); that is the `hash`
/// nodes show and compare. The full last link is kept to extend the chain.
public struct HashChain: Sendable, Equatable {
    private var last = [UInt8](repeating: 0, count: SHA256.byteCount)
    /// The seq before the first link kept: 0, or where retention dropped the log's start.
    public private(set) var base = 0
    /// The full link at `base` (32 zero bytes for the empty log): what a node restarting its
    /// log at `base + 1` needs to go on with the same chain.
    public private(set) var baseLink = [UInt8](repeating: 0, count: SHA256.byteCount)
    private var basePrefix: UInt64 { Self.prefix(of: baseLink) }
    /// `prefixes[n - base - 1]`: the first 8 bytes of link n, big-endian.
    private var prefixes: [UInt64] = []

    public init() {}

    /// A chain whose links before `base` are gone (retention): it goes on from `link`, the
    /// full link at `base`.
    public init(base: Int, link: [UInt8]) {
        precondition(base >= 0 && link.count == SHA256.byteCount, "a base needs its full link")
        self.base = base
        last = link
        baseLink = link
    }

    /// The last seq the chain covers.
    public var count: Int { base + prefixes.count }

    /// The full link at `count`: what a store keeps where a segment starts, so that a cut
    /// can rebuild the chain from there instead of from seq 1.
    public var lastLink: [UInt8] { last }

    /// Forgets every link after `seq`; `link` MUST be the full link at `seq` (`lastLink` as
    /// it was then), from which the chain goes on.
    public mutating func cut(after seq: Int, link: [UInt8]) {
        precondition((base...count).contains(seq) && link.count == SHA256.byteCount, "a cut inside the chain, with a full link")
        prefixes.removeLast(count - seq)
        last = link
    }

    /// Forgets the links before `seq` (retention dropped those entries); `link` MUST be the
    /// full link at `seq - 1`.
    public mutating func forget(before seq: Int, link: [UInt8]) {
        precondition((base + 1...count + 1).contains(seq) && link.count == SHA256.byteCount, "forget inside the chain, with a full link")
        prefixes.removeFirst(seq - 1 - base)
        base = seq - 1
        baseLink = link
    }

    /// Extends the chain by the next entry (its seq must be `count + 1`).
    public mutating func append(_ entry: LogEntry) {
        precondition(entry.seq == count + 1, "a hash chain grows one seq at a time")
        var hasher = SHA256()
        hasher.update(data: last)
        withUnsafeBytes(of: UInt64(entry.seq).bigEndian) { hasher.update(bufferPointer: $0) }
        var message = entry.message  // (its bytes in place, not a copy: messages may be megabytes)
        message.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        last = Array(hasher.finalize())
        prefixes.append(Self.prefix(of: last))
    }

    /// The hash at `seq` (16 hex digits), `0000000000000000` at 0; nil beyond the chain and
    /// before its base.
    public func hash(at seq: Int) -> String? {
        guard seq >= base, seq <= count else { return nil }
        let value = seq == base ? basePrefix : prefixes[seq - base - 1]
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private static func prefix(of link: [UInt8]) -> UInt64 {
        link.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

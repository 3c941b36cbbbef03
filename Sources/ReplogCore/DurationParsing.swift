/// Reads durations as people write them on a command line: `2s`, `500ms`, `1.5s`, `1m`,
/// `7d`, `0`.
extension Duration {
    public init?(parsing text: String) {
        let text = text.trimmingCharacters(in: [" "])
        let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for unit in units where text.hasSuffix(unit.suffix) {
            guard let value = Double(text.dropLast(unit.suffix.count)), value >= 0, value.isFinite else { return nil }
            self = .nanoseconds(Int64((value * unit.seconds * 1e9).rounded()))
            return
        }
        guard text == "0" else { return nil }
        self = .zero
    }
}

/// Reads sizes as people write them on a command line: `1048576`, `64MiB`, `1.5GB`, `512k`
/// (`KiB`, `MiB`, `GiB`, `TiB` and `k`, `m`, `g` are powers of 1024; `KB`, `MB`, `GB`, `TB` of
/// 1000). Nil for anything else, or a size below 1 byte.
public func parseByteSize(_ text: String) -> Int? {
    let text = String(text.trimmingCharacters(in: [" "]))
    let units: [(suffix: String, bytes: Double)] = [
        ("KiB", 0x1p10), ("MiB", 0x1p20), ("GiB", 0x1p30), ("TiB", 0x1p40),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
        ("k", 0x1p10), ("m", 0x1p20), ("g", 0x1p30), ("B", 1), ("", 1),
    ]
    for unit in units where text.hasSuffix(unit.suffix) {
        guard let value = Double(text.dropLast(unit.suffix.count)), value.isFinite else { continue }
        let bytes = value * unit.bytes
        guard bytes >= 1, bytes < Double(Int.max) else { return nil }
        return Int(bytes)
    }
    return nil
}

extension String {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> Substring {
        var view = self[...]
        while let first = view.first, set.contains(first) { view.removeFirst() }
        while let last = view.last, set.contains(last) { view.removeLast() }
        return view
    }
}

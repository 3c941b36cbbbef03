/// Reads durations as people write them on a command line: `2s`, `500ms`, `1.5s`, `1m`, `0`.
extension Duration {
    public init?(parsing text: String) {
        let text = text.trimmingCharacters(in: [" "])
        let units: [(suffix: String, seconds: Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600)]
        for unit in units where text.hasSuffix(unit.suffix) {
            guard let value = Double(text.dropLast(unit.suffix.count)), value >= 0, value.isFinite else { return nil }
            self = .nanoseconds(Int64((value * unit.seconds * 1e9).rounded()))
            return
        }
        guard text == "0" else { return nil }
        self = .zero
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> Substring {
        var view = self[...]
        while let first = view.first, set.contains(first) { view.removeFirst() }
        while let last = view.last, set.contains(last) { view.removeLast() }
        return view
    }
}

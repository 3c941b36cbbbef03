/// The wire format of `GET /messages/stream` (server-sent events, as browsers'
/// `EventSource` read them): one event per entry,
///
/// ```
/// id: 7
/// data: {"message":"hello","seq":7}
///
/// ```
///
/// and comment lines (`: …`) that keep an idle connection open. A client that reconnects
/// sends the last `id` it saw as `Last-Event-ID` and the stream resumes after it.
public enum ServerSentEvents {
    /// Appends the event of `entry` to `bytes`: `id:` its seq, and `data:` its JSON on one
    /// line (JSON escapes line breaks), the same bytes a `JSONEncoder` with sorted keys and
    /// unescaped slashes gives, written by hand. Every follower of a stream encodes every entry, and `JSONEncoder` made that
    /// the secondary's largest cost (100 followers: most of its CPU in JSON writing and the
    /// allocations around it).
    public static func appendEvent(_ entry: LogEntry, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: "id: \(entry.seq)\ndata: {\"message\":\"".utf8)
        JSONText.appendEscaped(entry.message, to: &bytes)
        bytes.append(contentsOf: "\",\"seq\":\(entry.seq)}\n\n".utf8)
    }

    /// A comment: ignored by readers, it keeps proxies and clients from closing an idle stream.
    public static func comment(_ text: String) -> [UInt8] {
        Array(": \(text)\n\n".utf8)
    }

    /// Reads events out of a stream of bytes as they arrive, in pieces of any size.
    public struct Parser: Sendable {
        public struct Event: Sendable, Equatable {
            public var id: String?
            public var data: String

            public init(id: String?, data: String) {
                self.id = id
                self.data = data
            }
        }

        private var line: [UInt8] = []
        private var id: String?
        private var data: [String] = []

        public init() {}

        /// Feeds bytes; returns the events they completed.
        public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
            var events: [Event] = []
            for byte in bytes {
                guard byte == UInt8(ascii: "\n") else {
                    line.append(byte)
                    continue
                }
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if let event = take(String(decoding: line, as: UTF8.self)) { events.append(event) }
                line.removeAll(keepingCapacity: true)
            }
            return events
        }

        /// One complete line: a field, a comment, or the blank line that ends an event.
        private mutating func take(_ line: String) -> Event? {
            if line.isEmpty {
                defer { (id, data) = (nil, []) }
                return data.isEmpty ? nil : Event(id: id, data: data.joined(separator: "\n"))
            }
            if line.hasPrefix(":") { return nil }
            let (field, value): (Substring, Substring)
            if let colon = line.firstIndex(of: ":") {
                field = line[..<colon]
                let rest = line[line.index(after: colon)...]
                value = rest.hasPrefix(" ") ? rest.dropFirst() : rest
            } else {
                (field, value) = (line[...], "")
            }
            switch field {
            case "id": id = String(value)
            case "data": data.append(String(value))
            default: break  // event, retry: replog sends neither
            }
            return nil
        }
    }
}

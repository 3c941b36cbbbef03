import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import ReplogCore

/// The log from a seq on, as it grows: what `ReplogClient.follow(from:)` returns.
///
/// Pull-based: the next events are read from the connection only when you ask for the
/// next entry, so a slow consumer slows its own stream and queues nothing.
public struct LogFollower: AsyncSequence, Sendable {
    public typealias Element = LogEntry

    let client: ReplogClient
    let from: Int
    /// What the stream shows: committed entries unless asked otherwise.
    let read: ReadLevel
    let onInterruption: (@Sendable (_ reason: String, _ resumingAt: Int) -> Void)?

    /// Streams get their own connections: a node sends a comment every 15 s while idle,
    /// so 45 s of silence means a dead connection (appends, which may wait long for their
    /// write concern, must not have that limit).
    static let streams = ReplogClient.makeConnections(readTimeout: .seconds(45))

    public func makeAsyncIterator() -> Iterator {
        Iterator(follower: self, next: Swift.max(from, 1))
    }

    public struct Iterator: AsyncIteratorProtocol {
        let follower: LogFollower
        /// The seq to hand out next: everything before it was handed out, once.
        var next: Int
        var body: HTTPClientResponse.Body.AsyncIterator?
        var parser = ServerSentEvents.Parser()
        var ready: [LogEntry] = []
        var node = 0
        var delay: Duration

        init(follower: LogFollower, next: Int) {
            self.follower = follower
            self.next = next
            self.delay = follower.client.configuration.firstRetryDelay
        }

        public mutating func next() async throws -> LogEntry? {
            while true {
                if !ready.isEmpty { return ready.removeFirst() }
                try Task.checkCancellation()
                if body == nil { try await connect() }
                do {
                    guard let chunk = try await body?.next() else {
                        interrupted("the node ended the stream")
                        continue
                    }
                    delay = follower.client.configuration.firstRetryDelay
                    for event in parser.feed(chunk.readableBytesView) {
                        guard let entry = try? JSONDecoder().decode(LogEntry.self, from: Data(event.data.utf8)) else {
                            throw ReplogClientError.unexpectedAnswer("a stream event that is not a log entry: \(event.data)")
                        }
                        // Never a repeat (a gap never comes: a node streams its contiguous prefix).
                        if entry.seq == next {
                            ready.append(entry)
                            next += 1
                        }
                    }
                } catch let error as ReplogClientError {
                    throw error
                } catch {
                    try Task.checkCancellation()
                    interrupted(ReplogClient.reason(for: error))
                    try await pause()
                }
            }
        }

        /// Opens the stream at `next` on the current node, trying the others in turn.
        private mutating func connect() async throws {
            while true {
                let url = follower.client.nodes[node] + "/messages/stream?from=\(next)" + ReplogClient.query(follower.read)
                do {
                    let response = try await LogFollower.streams.execute(follower.client.request(url), timeout: .hours(24 * 365))
                    guard response.status == .ok else {
                        let answer = try await response.body.collect(upTo: 1 << 20)
                        // From seq 1 means the whole log: after retention, what is still kept.
                        // (Any later seq that is gone is a gap the caller must hear of.)
                        if response.status == .gone, next == 1,
                           let first = (try? JSONDecoder().decode(GoneAnswer.self, from: answer))?.firstSeq, first > 1
                        {
                            next = first
                            continue
                        }
                        throw ReplogClientError.refused(status: Int(response.status.code), answer: String(buffer: answer))
                    }
                    body = response.body.makeAsyncIterator()
                    parser = ServerSentEvents.Parser()
                    return
                } catch let error as ReplogClientError {
                    throw error
                } catch {
                    try Task.checkCancellation()
                    interrupted("cannot reach \(url): \(ReplogClient.reason(for: error))")
                    try await pause()
                }
            }
        }

        private mutating func interrupted(_ reason: String) {
            body = nil
            node = (node + 1) % follower.client.nodes.count
            follower.onInterruption?(reason, next)
        }

        private mutating func pause() async throws {
            try await Task.sleep(for: delay)
            delay = Swift.min(delay * 2, follower.client.configuration.maxRetryDelay)
        }
    }
}

/// A `410` answer: where the log now starts.
private struct GoneAnswer: Decodable {
    let firstSeq: Int
}

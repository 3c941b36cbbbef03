import ReplogCore

/// Checks a recorded history of appends against the final logs of every node: the checker
/// shared by the deterministic simulation and the chaos test with real processes.
///
/// What it proves, for any history:
/// - every append answered 201 is in every node's log exactly once, at the seq it was
///   answered with;
/// - every node holds the same sequence;
/// - no node's log has a gap (seqs are 1, 2, 3, …);
/// - no message is in the log twice (each append carries a unique message; idempotent
///   retries reuse the message *and* the id, and must not append it again).
public enum HistoryChecker {
    public enum Outcome: Sendable, Equatable {
        /// 201 with this seq.
        case ok(seq: Int)
        /// Refused (4xx, 503 no quorum): the message must not be appended by this request.
        case refused
        /// 504, a lost connection, a crashed master: it may or may not be in the log.
        case unknown
    }

    public struct Record: Sendable, Equatable {
        public let message: String
        public let outcome: Outcome
        public init(message: String, outcome: Outcome) {
            self.message = message
            self.outcome = outcome
        }
    }

    /// The violations found (empty when the history is correct).
    /// - Parameters:
    ///   - logs: each node's final log by name; the first is taken as the reference.
    ///   - mayRepeat: messages a retry may have appended again, for a reason the caller
    ///     names (a key the master could not know); empty unless a test says why.
    public static func check(_ records: [Record], logs: [(node: String, log: [LogEntry])], mayRepeat: Set<String> = []) -> [String] {
        var violations: [String] = []
        guard let reference = logs.first else { return ["no node logs to check"] }
        for (node, log) in logs {
            if log.map(\.seq) != Array(1..<(log.count + 1)) { violations.append("\(node) has a gap: \(log.map(\.seq))") }
            if log != reference.log {
                let diverges = zip(log, reference.log).enumerated().first { $0.element.0 != $0.element.1 }.map { "at seq \($0.offset + 1)" } ?? "in length"
                violations.append("\(node) holds another sequence than \(reference.node) (\(diverges): \(log.count) vs \(reference.log.count) entries)")
            }
        }
        var count: [String: Int] = [:]
        for entry in reference.log { count[entry.message, default: 0] += 1 }
        for (message, times) in count where times > 1 && !mayRepeat.contains(message) {
            violations.append("\(message) is in the log \(times) times")
        }
        for record in records {
            switch record.outcome {
            case .ok(let seq):
                if seq < 1 || seq > reference.log.count || reference.log[seq - 1].message != record.message {
                    violations.append("acknowledged \(record.message) at seq \(seq) is not in the log there")
                }
            case .refused, .unknown:
                break
            }
        }
        // A message all of whose appends were refused must not be in the log.
        let outcomes = Dictionary(grouping: records, by: \.message)
        for (message, appends) in outcomes where appends.allSatisfy({ $0.outcome == .refused }) && count[message] != nil {
            violations.append("\(message) was refused but is in the log")
        }
        return violations
    }

    /// The violations of batch atomicity: each batch (its messages in order) must be in every
    /// log whole, at consecutive seqs in its order, or not at all.
    public static func checkBatches(_ batches: [[String]], logs: [(node: String, log: [LogEntry])]) -> [String] {
        var violations: [String] = []
        for (node, log) in logs {
            let seqOf = Dictionary(log.map { ($0.message, $0.seq) }, uniquingKeysWith: { first, _ in first })
            for batch in batches {
                let seqs = batch.map { seqOf[$0] }
                guard seqs.contains(where: { $0 != nil }) else { continue }
                if let first = seqs[0], seqs == batch.indices.map({ Optional(first + $0) }) { continue }
                violations.append("\(node) holds part of batch \(batch.joined(separator: "+")): at seqs \(seqs.map { $0.map(String.init) ?? "-" })")
            }
        }
        return violations
    }
}

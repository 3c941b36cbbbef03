/// Why a secondary cannot follow this master, as the master judged it from its answers.
/// Typed, so that a metric or a checker asks what it is; `description` is the text
/// `/health` shows.
public enum PeerProblem: Sendable, Equatable, CustomStringConvertible {
    /// It answers, but follows another master log (`held`) than this master's.
    case holdsAnotherLog(held: String, master: String)
    /// A replication request was refused because it follows another log (the reason it
    /// gave).
    case refusesThisLog(reason: String)
    /// Its disk failed: it can store nothing until it is restarted (its own words).
    case storageFailed(reason: String)
    /// It holds `extra` entries past the master's last seq: a deposed master's tail.
    case holdsMore(extra: Int, masterSeq: Int)
    /// Its hash at `seq` is not the master's: the same seqs with other messages.
    case differsAtOrBefore(seq: Int, hash: String, masterHash: String)
    /// The first seq where its log parts from the master's was found.
    case differsAt(seq: Int)
    /// Heartbeats reach it, but replication requests fail (the last reason).
    case replicationFails(reason: String)

    /// Whether its log parted from the master's (the `replog_secondary_diverged` metric).
    public var isDivergence: Bool {
        switch self {
        case .holdsMore, .differsAtOrBefore, .differsAt: true
        case .holdsAnotherLog, .refusesThisLog, .storageFailed, .replicationFails: false
        }
    }

    public var description: String {
        switch self {
        case .holdsAnotherLog(let held, let master):
            "holds master log \(held), not this master's \(master): restart it with an empty log"
        case .refusesThisLog(let reason), .storageFailed(let reason):
            reason
        case .holdsMore(let extra, let masterSeq):
            "diverged: it holds \(extra) entries past the master's log (seq \(masterSeq))"
        case .differsAtOrBefore(let seq, let hash, let masterHash):
            "diverged: its log differs from the master's at or before seq \(seq) (hash \(hash), the master's \(masterHash)); "
                + "stop it, empty its log and restart it"
        case .differsAt(let seq):
            "diverged at seq \(seq): it holds another message there than the master; stop it, empty its log and restart it"
        case .replicationFails(let reason):
            "replication requests fail: \(reason)"
        }
    }
}

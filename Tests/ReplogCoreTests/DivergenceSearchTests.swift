import ReplogCore
import Testing

/// What a master does with a member whose log parts from its own: where, found by
/// halving, and the remedy.
struct DivergenceSearchTests {
    /// Runs a search against a member whose log agrees with the master's through
    /// `agreesThrough` and holds seqs `memberFirst...memberLast`; returns the remedy and how
    /// many questions it asked.
    private func search(
        start: Int = 0, last: Int, masterLast: Int, agreesThrough: Int, memberFirst: Int = 0, memberLast: Int, cuts: Bool = true
    ) -> (DivergenceSearch.Step, Int) {
        var search = DivergenceSearch(start: start, differsAtOrBefore: last, masterLast: masterLast, cuts: cuts)
        var questions = 0
        while case .ask(let seq) = search.next {
            questions += 1
            #expect(seq >= start && seq <= max(last, masterLast), "asks only seqs between what is known")
            let ours = seq <= masterLast ? "m\(seq)" : nil
            let theirs = seq < memberFirst || seq > memberLast ? nil : seq <= agreesThrough ? "m\(seq)" : "x\(seq)"
            search.onHash(at: seq, theirs: theirs, ours: ours)
            if questions > 64 { break }
        }
        return (search.next, questions)
    }

    @Test(arguments: [0, 1, 2, 511, 998, 999])
    func findsWhereTheLogsPartInAboutLog2Questions(agreesThrough: Int) {
        let (remedy, questions) = search(last: 1_000, masterLast: 1_000, agreesThrough: agreesThrough, memberLast: 1_000)
        #expect(remedy == .cut(after: agreesThrough))
        #expect(questions <= 10, "log2(1000) questions, not one per seq")
    }

    /// Without failover nothing is cut: the master reports the first seq where they part.
    @Test func withoutFailoverWhereTheLogsPartIsReported() {
        let (remedy, _) = search(last: 1_000, masterLast: 1_000, agreesThrough: 399, memberLast: 1_000, cuts: false)
        #expect(remedy == .report(differsAt: 400))
    }

    /// A deposed master's tail past this master's end may agree with all of this log: the
    /// master's last seq is asked first, and one answer settles it.
    @Test func aMemberAheadThatHoldsAllOfThisLogIsCutAtItsEnd() {
        let (remedy, questions) = search(last: 1_040, masterLast: 1_000, agreesThrough: 1_000, memberLast: 1_040)
        #expect(remedy == .cut(after: 1_000))
        #expect(questions == 1)
    }

    @Test func aMemberAheadThatPartsEarlierIsSearchedBelowTheMastersEnd() {
        let (remedy, _) = search(last: 1_040, masterLast: 1_000, agreesThrough: 700, memberLast: 1_040)
        #expect(remedy == .cut(after: 700))
    }

    /// After retention the member first shows this log's hash at the seq before its start;
    /// the search then starts there.
    @Test func afterRetentionTheSearchStartsWhereTheMemberShowedItHoldsThisLog() {
        let (remedy, questions) = search(start: 500, last: 1_000, masterLast: 1_000, agreesThrough: 800, memberLast: 1_000)
        #expect(remedy == .cut(after: 800))
        #expect(questions <= 1 + 9)
        #expect(DivergenceSearch(start: 0, differsAtOrBefore: 1, masterLast: 5, cuts: true).next == .cut(after: 0))
    }

    /// A member that cannot show this log's hash before its start (another hash, or it
    /// lacks that seq) starts its log again there: it could not be cut to a seq it holds no
    /// hash of. Without failover there is no such check.
    @Test func aMemberThatCannotShowThisLogsStartStartsItsLogAgain() {
        #expect(search(start: 500, last: 1_000, masterLast: 1_000, agreesThrough: 400, memberLast: 1_000).0 == .restartLog)
        #expect(search(start: 500, last: 1_000, masterLast: 1_000, agreesThrough: 900, memberFirst: 600, memberLast: 1_000).0 == .restartLog)
        let unchecked = search(start: 500, last: 1_000, masterLast: 1_000, agreesThrough: 400, memberLast: 1_000, cuts: false).0
        #expect(unchecked == .report(differsAt: 501), "without failover the start is taken as agreed, and nothing restarts")
    }

    /// A member that does not hold a seq it is asked of while halving (its own retention
    /// dropped it, though the master still holds it) starts its log again at the master's
    /// start: it cannot be cut there, and asked again it would answer the same. Without
    /// failover it is asked again later.
    @Test func aMemberWithoutTheAskedSeqStartsItsLogAgain() {
        let (remedy, _) = search(last: 1_000, masterLast: 1_000, agreesThrough: 900, memberFirst: 600, memberLast: 1_000)
        #expect(remedy == .restartLog)
        let (unchecked, _) = search(last: 1_000, masterLast: 1_000, agreesThrough: 900, memberFirst: 600, memberLast: 1_000, cuts: false)
        #expect(unchecked == .retryLater)
    }
}

import ReplogCore
import Testing

/// The halving search for where a member's log parts from the master's.
struct DivergenceSearchTests {
    /// Runs a search against a member whose log agrees with the master's through
    /// `agreesThrough` (and holds `memberLast` entries); returns what it found and how many
    /// questions it asked.
    private func search(from: Int = 0, last: Int, masterLast: Int, agreesThrough: Int, memberLast: Int) -> (DivergenceSearch.Step, Int) {
        var search = DivergenceSearch(from: from, differsAtOrBefore: last, masterLast: masterLast)
        var questions = 0
        while case .ask(let seq) = search.next {
            questions += 1
            #expect(seq > from && seq <= max(last, masterLast), "asks only seqs between what is known")
            let ours = seq <= masterLast ? "m\(seq)" : nil
            let theirs = seq > memberLast ? nil : seq <= agreesThrough ? "m\(seq)" : "x\(seq)"
            search.onHash(at: seq, theirs: theirs, ours: ours)
            if questions > 64 { break }
        }
        return (search.next, questions)
    }

    @Test(arguments: [0, 1, 2, 511, 998, 999])
    func findsWhereTheLogsPartInAboutLog2Questions(agreesThrough: Int) {
        let (found, questions) = search(last: 1_000, masterLast: 1_000, agreesThrough: agreesThrough, memberLast: 1_000)
        #expect(found == .found(agreed: agreesThrough, differs: agreesThrough + 1))
        #expect(questions <= 10, "log2(1000) questions, not one per seq")
    }

    /// A deposed master's tail past this master's end may agree with all of this log: the
    /// master's last seq is asked first, and one answer settles it.
    @Test func aMemberAheadThatHoldsAllOfThisLogIsCutAtItsEnd() {
        let (found, questions) = search(last: 1_040, masterLast: 1_000, agreesThrough: 1_000, memberLast: 1_040)
        #expect(found == .found(agreed: 1_000, differs: 1_001))
        #expect(questions == 1)
    }

    @Test func aMemberAheadThatPartsEarlierIsSearchedBelowTheMastersEnd() {
        let (found, _) = search(last: 1_040, masterLast: 1_000, agreesThrough: 700, memberLast: 1_040)
        #expect(found == .found(agreed: 700, differs: 701))
    }

    /// After retention the search starts at the seq before this log's start, where the
    /// logs were shown to agree.
    @Test func theSearchStartsWhereTheLogsAreKnownToAgree() {
        let (found, _) = search(from: 500, last: 1_000, masterLast: 1_000, agreesThrough: 800, memberLast: 1_000)
        #expect(found == .found(agreed: 800, differs: 801))
        #expect(DivergenceSearch(from: 0, differsAtOrBefore: 1, masterLast: 5).next == .found(agreed: 0, differs: 1))
    }
}

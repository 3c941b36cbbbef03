import Foundation
import Testing

/// The shell blocks that README.md and docs/ tell a reader to paste, read from the Markdown
/// itself so that the docs and what CI runs cannot drift apart.
///
/// Every ```` ```sh ```` block is preceded by an HTML comment (GitHub does not render it)
/// that says how to check it:
///
/// ```
/// <!-- recipe
/// session: readme            blocks of one session run in one shell, in order (default: alone)
/// before: SHELL              a hidden line run first (what the prose asks the reader to do;
///                            `cd "$RECIPE_REPO"` for a command run in the clone)
/// after: SHELL               a hidden line run after the block
/// only-lines: 1              run only these lines (the others are this very test run, …)
/// terminal-ready: TEXT       what a `# terminal 1` command prints once it is up
/// follow-until: TEXT         the block never ends by itself (a follow loop): stop it (Ctrl-C)
///                            once its output holds TEXT; `before`/`after` run meanwhile
/// expect: TEXT               the block's output holds TEXT (`…` matches anything), after
///                            what the previous `expect` matched; `/REGEX/` matches a line
/// not-run: REASON            cannot run here (needs Docker, Kubernetes); says why
/// -->
/// ```
///
/// A line whose comment says `# terminal 1` runs in the background, as a second terminal
/// would have it, and the block goes on once that command has printed `terminal-ready`.
/// A comment line `# Ctrl-C in terminal 1` interrupts it (`… and start it again`: and
/// restarts it).
struct RecipeBook {
    /// The documents whose shell blocks are recipes.
    static let documents = [
        "README.md", "docs/guarantees.md", "docs/durability.md", "docs/deploy.md", "docs/testing.md", "docs/benchmarks.md",
        "docs/architecture.md",
    ]

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    struct Recipe: Sendable {
        let document: String
        /// The line of the opening fence, for failure messages.
        let line: Int
        /// The block as written.
        let lines: [String]
        var session: String?
        var before: [String] = []
        var after: [String] = []
        var onlyLines: [Int]?
        var terminalReady = "replog cluster is up."
        var followUntil: String?
        var expectations: [String] = []
        var notRun: String?

        var place: String { "\(document):\(line)" }
        /// The lines that run, in order.
        var runnableLines: [String] {
            guard let onlyLines else { return lines }
            return onlyLines.map { lines[$0 - 1] }
        }
    }

    /// Recipes that share a shell (a cluster started by the first, used by the next).
    struct Session: Sendable, CustomTestStringConvertible {
        let name: String
        let recipes: [Recipe]
        var testDescription: String { name }
    }

    let recipes: [Recipe]
    /// What is wrong with the annotations (a block without one, an unknown directive).
    let problems: [String]

    static func load() -> RecipeBook {
        var recipes: [Recipe] = []
        var problems: [String] = []
        for document in documents {
            guard let text = try? String(contentsOf: root.appendingPathComponent(document), encoding: .utf8) else {
                problems.append("\(document): cannot be read")
                continue
            }
            let (found, wrong) = parse(text, document: document)
            recipes += found
            problems += wrong
        }
        return RecipeBook(recipes: recipes, problems: problems)
    }

    /// Sessions in document order; a recipe without a session is one of its own.
    var sessions: [Session] {
        var order: [String] = []
        var byName: [String: [Recipe]] = [:]
        for recipe in recipes where recipe.notRun == nil {
            let name = recipe.session ?? recipe.place
            if byName[name] == nil { order.append(name) }
            byName[name, default: []].append(recipe)
        }
        return order.map { Session(name: $0, recipes: byName[$0]!) }
    }

    static func parse(_ text: String, document: String) -> (recipes: [Recipe], problems: [String]) {
        let lines = text.components(separatedBy: "\n")
        var recipes: [Recipe] = []
        var problems: [String] = []
        var comment: [String]?
        var index = 0
        while index < lines.count {
            let line = lines[index]
            if line.hasPrefix("<!-- recipe") {
                var body: [String] = []
                var end = index
                while end < lines.count, !lines[end].contains("-->") { end += 1 }
                for commentLine in lines[index...min(end, lines.count - 1)] {
                    let stripped = commentLine.replacingOccurrences(of: "<!-- recipe", with: "")
                        .replacingOccurrences(of: "-->", with: "").trimmingCharacters(in: .whitespaces)
                    if !stripped.isEmpty { body.append(stripped) }
                }
                comment = body
                index = end + 1
                continue
            }
            if line.hasPrefix("```sh") {
                var end = index + 1
                while end < lines.count, lines[end] != "```" { end += 1 }
                var recipe = Recipe(document: document, line: index + 1, lines: Array(lines[(index + 1)..<end]))
                if let comment {
                    problems += apply(comment, to: &recipe)
                } else {
                    problems.append("\(recipe.place): a shell block without a <!-- recipe … --> comment")
                }
                if recipe.notRun == nil, recipe.expectations.isEmpty, comment != nil {
                    problems.append("\(recipe.place): a recipe that checks nothing (add an expect:)")
                }
                recipes.append(recipe)
                comment = nil
                index = end + 1
                continue
            }
            if line.hasPrefix("```") {
                // Another kind of block (YAML, Mermaid, an example of these comments): skip it whole.
                index += 1
                while index < lines.count, lines[index] != "```" { index += 1 }
                index += 1
                continue
            }
            if !line.trimmingCharacters(in: .whitespaces).isEmpty, comment != nil {
                problems.append("\(document):\(index + 1): a recipe comment that no shell block follows")
                comment = nil
            }
            index += 1
        }
        return (recipes, problems)
    }

    private static func apply(_ directives: [String], to recipe: inout Recipe) -> [String] {
        var problems: [String] = []
        for directive in directives {
            guard let colon = directive.firstIndex(of: ":") else {
                problems.append("\(recipe.place): '\(directive)' is not 'name: value'")
                continue
            }
            let name = directive[..<colon].trimmingCharacters(in: .whitespaces)
            let value = directive[directive.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch name {
            case "session": recipe.session = value
            case "before": recipe.before.append(value)
            case "after": recipe.after.append(value)
            case "terminal-ready": recipe.terminalReady = value
            case "follow-until": recipe.followUntil = value
            case "expect": recipe.expectations.append(value)
            case "not-run": recipe.notRun = value
            case "only-lines":
                let numbers = value.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                if numbers.isEmpty || numbers.contains(where: { $0 < 1 || $0 > recipe.lines.count }) {
                    problems.append("\(recipe.place): only-lines '\(value)' names no line of the block")
                } else {
                    recipe.onlyLines = numbers
                }
            default: problems.append("\(recipe.place): unknown directive '\(name)'")
            }
        }
        return problems
    }
}

extension RecipeBook.Recipe {
    /// The expectations this block's output does not meet, in order: each must be found
    /// after the previous one; `…` inside one matches anything.
    func unmetExpectations(in output: String) -> [String] {
        var rest = output[...]
        for expectation in expectations {
            if expectation.count > 2, expectation.hasPrefix("/"), expectation.hasSuffix("/") {
                // A regular expression, matched line by line: `/^ +3 [0-9a-f]{32}  -$/`.
                let pattern = String(expectation.dropFirst().dropLast())
                guard let regex = try? Regex(pattern).anchorsMatchLineEndings(),
                    let match = rest.firstMatch(of: regex)
                else { return [expectation] }
                rest = rest[match.range.upperBound...]
                continue
            }
            var found = true
            var cursor = rest
            for piece in expectation.components(separatedBy: "…") where !piece.isEmpty {
                guard let range = cursor.range(of: piece) else {
                    found = false
                    break
                }
                cursor = cursor[range.upperBound...]
            }
            guard found else { return [expectation] }
            rest = cursor
        }
        return []
    }
}

import Foundation
import ReplogProcess
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every shell block that README.md and docs/ tell a reader to paste runs here, as written,
/// against real processes on the ports the docs name, and its output is checked against
/// the comment next to it (see `RecipeBook` for the annotations).
///
/// The recipes use fixed ports (5000–5002, 8080), so they run one session at a time; the
/// other process tests use ports the kernel picks or `freePorts` (20000 and up).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RecipeTests {
    static let book = RecipeBook.load()

    @Test func everyShellBlockInTheDocsIsARecipe() {
        #expect(Self.book.problems == [])
        // README, guarantees, durability, deploy: a parser that found nothing proves nothing.
        #expect(Self.book.recipes.count >= 10, "found \(Self.book.recipes.count) shell blocks")
        for recipe in Self.book.recipes {
            if let reason = recipe.notRun {
                #expect(reason.count > 20, "\(recipe.place): say why it cannot run here")
            }
        }
    }

    @Test(.serialized, arguments: book.sessions)
    func recipeRunsAsWritten(_ session: RecipeBook.Session) async throws {
        // REPLOG_RECIPE=durability runs only the sessions whose name holds that text.
        if let only = ProcessInfo.processInfo.environment["REPLOG_RECIPE"], !session.name.contains(only) { return }
        let run = try RecipeRun(session)
        defer { run.remove() }
        let outputs = try await run.execute()
        for (number, recipe) in session.recipes.enumerated() {
            let output = outputs[number] ?? "(the block never ran)"
            let unmet = recipe.unmetExpectations(in: output)
            #expect(
                unmet.isEmpty,
                "\(recipe.place): expected \(unmet) in the output:\n\(output)\n--- everything the session wrote:\n\(run.everything)")
        }
    }
}

/// One session: a shell script in a folder of its own, the recipes' working directory.
private final class RecipeRun: Sendable {
    let session: RecipeBook.Session
    let folder: URL
    /// Set in the environment of everything the session starts, so that whatever outlives
    /// it (a node a recipe left running, a cluster whose shell was killed) is found and
    /// stopped by this marker, and only that.
    let runID = UUID().uuidString
    var marker: String { "REPLOG_RECIPE_RUN=\(runID)" }
    private let everythingBox = Mutex<String>("")

    var everything: String { everythingBox.withLock { $0 } }

    init(_ session: RecipeBook.Session) throws {
        self.session = session
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("replog-recipe-\(UUID().uuidString)")
        let bin = folder.appendingPathComponent(".bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        // `replog` (and the example programs) on the PATH, as after installing them.
        for name in ["replog", "ReplogProducerExample", "ReplogConsumerExample"] {
            try FileManager.default.createSymbolicLink(
                at: bin.appendingPathComponent(name),
                withDestinationURL: NodeProcess.binary.deletingLastPathComponent().appendingPathComponent(name))
        }
        try Self.script(for: session).write(to: folder.appendingPathComponent(".recipe.sh"), atomically: true, encoding: .utf8)
    }

    /// Runs the script; the output of each recipe, by its number in the session.
    func execute(within limit: Duration = .seconds(120)) async throws -> [Int: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["RECIPE_DIR"] = folder.path
        environment["RECIPE_BIN"] = folder.appendingPathComponent(".bin").path
        environment["RECIPE_REPO"] = RecipeBook.root.path  // for commands a reader runs in the clone
        environment["REPLOG_RECIPE_RUN"] = runID
        let shell = try await ChildProcess(
            executable: "/bin/bash", arguments: [folder.appendingPathComponent(".recipe.sh").path], environment: environment)
        let ended = await shell.waitForExit(within: limit) != nil
        stopEverythingStarted()
        if !ended { _ = await shell.waitForExit() }
        everythingBox.withLock { $0 = shell.log + terminalLogs() }
        if !ended { Issue.record("\(session.name) did not end within \(limit)") }
        return Self.split(shell.stdout)
    }

    /// What each `# terminal N` command wrote (it is not in the shell's output).
    private func terminalLogs() -> String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasPrefix("terminal-") }.sorted().map { name in
            "\n--- \(name) (terminal 1):\n" + ((try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "")
        }.joined()
    }

    /// SIGKILLs every process that carries this run's marker, and waits (up to 10 s) until
    /// none is left, so that the next session finds its ports free.
    private func stopEverythingStarted() {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let marked = processesWithMarker()
            if marked.isEmpty { return }
            for pid in marked { kill(pid, SIGKILL) }
            usleep(50_000)  // the kernel reaps them; there is no event to await for non-children
        }
    }

    private func processesWithMarker() -> [pid_t] {
        let needle = Data(marker.utf8)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), pid != getpid(),
                let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ"),
                environ.range(of: needle) != nil
            else { return nil }
            return pid
        }
    }

    func remove() {
        try? FileManager.default.removeItem(at: folder)
    }

    // MARK: The script

    /// Marks the start of recipe N in the output.
    private static let separator = "@@recipe "

    private static func split(_ output: String) -> [Int: String] {
        var outputs: [Int: String] = [:]
        var current: Int?
        for line in output.components(separatedBy: "\n") {
            if line.hasPrefix(separator), let number = Int(line.dropFirst(separator.count)) {
                current = number
                outputs[number] = ""
            } else if let current {
                outputs[current, default: ""] += line + "\n"
            }
        }
        return outputs
    }

    private static func quoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// What a line that speaks of terminal 1 does in the script, or nil for any other line:
    /// `COMMAND   # terminal 1 …` starts COMMAND there; a comment line `# Ctrl-C in
    /// terminal 1` interrupts it, and `… and start it again` restarts it.
    private static func terminalOne(_ line: String, ready: String) -> String? {
        if line.range(of: #"^\s*#\s*Ctrl-C in terminal 1\b"#, options: .regularExpression) != nil {
            return line.contains("again") ? "recipe_restart" : "recipe_ctrl_c"
        }
        guard let range = line.range(of: #"\s+#\s*terminal 1\b"#, options: .regularExpression) else { return nil }
        return "recipe_terminal \(quoted(String(line[..<range.lowerBound]))) \(quoted(ready))"
    }

    static func script(for session: RecipeBook.Session) -> String {
        var script = prelude
        for (number, recipe) in session.recipes.enumerated() {
            script += "\nprintf '\\n\(separator)\(number)\\n'\n"
            var body = recipe.runnableLines.map { line in
                terminalOne(line, ready: recipe.terminalReady) ?? line
            }
            if let until = recipe.followUntil {
                // It never ends by itself: run it as a job, do the hidden steps meanwhile,
                // and press Ctrl-C once its output shows what the prose promises.
                let log = "follow-\(number).log"
                body = ["( "] + body + [") > \(log) 2>&1 &", "recipe_follower=$!"] + recipe.before
                    + ["recipe_wait_for \(log) \(quoted(until))", "kill -INT -- -$recipe_follower; wait $recipe_follower", "cat \(log)"]
                    + recipe.after
            } else {
                body = recipe.before + body + recipe.after
            }
            script += "{\n" + body.joined(separator: "\n") + "\n} 2>&1\n"
        }
        return script
    }

    private static let prelude = #"""
        # Generated by RecipeTests from the Markdown; each block runs as a reader would paste it.
        set -m    # every job its own process group, as in a terminal, so that "Ctrl-C" reaches it
        cd "$RECIPE_DIR" || exit 1
        export PATH="$RECIPE_BIN:$PATH"

        # `swift run NAME …` is the binary this test run built (a nested `swift run` would
        # wait for the build lock this very run holds).
        swift() {
            if [ "$1" = run ] && [ -x "$RECIPE_BIN/$2" ]; then shift; "$@"
            else echo "recipe: only 'swift run' of replog and the examples runs here, not 'swift $*'" >&2; return 2; fi
        }

        # recipe_wait_for FILE TEXT [PID]: until FILE holds TEXT (at most 60 s, and only
        # while PID runs).
        recipe_wait_for() {
            local i
            for i in $(seq 1 600); do
                grep -qF -- "$2" "$1" 2>/dev/null && return 0
                if [ -n "$3" ] && ! kill -0 "$3" 2>/dev/null; then break; fi
                sleep 0.1
            done
            echo "recipe: '$2' never appeared in $1" >&2; return 1
        }

        # recipe_terminal COMMAND READY: COMMAND as terminal 1 runs it, until it prints READY.
        recipe_terminal_runs=0
        recipe_terminal() {
            recipe_terminal_runs=$((recipe_terminal_runs + 1))
            recipe_terminal_command=$1 recipe_terminal_ready=$2
            eval "$1" > "terminal-1.$recipe_terminal_runs.log" 2>&1 &
            recipe_terminal_pid=$!
            recipe_wait_for "terminal-1.$recipe_terminal_runs.log" "$2" "$recipe_terminal_pid"
        }
        # A reader's `wait` waits for the jobs of their own terminal, not for terminal 1's.
        wait() {
            if [ $# -gt 0 ]; then builtin wait "$@"; return; fi
            local own
            own=$(jobs -p | grep -vx -- "${recipe_terminal_pid:-none}")
            [ -z "$own" ] || builtin wait $own
        }
        # "# Ctrl-C in terminal 1": interrupts it and waits until it has ended.
        recipe_ctrl_c() {
            kill -INT -- "-$recipe_terminal_pid"
            builtin wait "$recipe_terminal_pid"
        }
        # "# Ctrl-C in terminal 1 and start it again"
        recipe_restart() {
            recipe_ctrl_c
            recipe_terminal "$recipe_terminal_command" "$recipe_terminal_ready"
        }

        # At the end, Ctrl-C every job still running, as closing the terminals would.
        recipe_cleanup() {
            local pid
            for pid in $(jobs -p); do kill -INT -- "-$pid" 2>/dev/null; done
            builtin wait
        }
        trap recipe_cleanup EXIT

        """#
}

import Foundation
import Testing
import TestSupport

/// `llama chat` in a real terminal: tmux gives it a pseudo-terminal, types into it, and reads the screen.
@Suite(.serialized) struct ChatCLITests {
    static let tmux = ["/usr/bin/tmux", "/usr/local/bin/tmux"].first { FileManager.default.isExecutableFile(atPath: $0) }

    struct Terminal {
        let name = "llama-chat-\(getpid())"

        /// Runs tmux with posix_spawn and waitpid (Foundation's Process can miss the exit of a
        /// client whose server daemonizes). Output goes to a file, never to a pipe the server would hold.
        @discardableResult
        func tmux(_ arguments: [String]) throws -> String {
            let outputPath = TemporaryFile.path("tmux-\(UUID().uuidString).txt")
            defer { try? FileManager.default.removeItem(atPath: outputPath) }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
            let argv = ([ChatCLITests.tmux!, "-L", name] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            guard posix_spawn(&pid, ChatCLITests.tmux!, &actions, nil, argv, environ) == 0 else { throw FixtureError("cannot start tmux") }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1, errno == EINTR {}
            return (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        }

        func screen() throws -> String { try tmux(["capture-pane", "-p", "-J", "-S", "-200", "-t", name]) }

        /// Waits until the screen satisfies `condition` (up to `seconds`).
        func waitFor(_ what: String, seconds: Double = 90, _ condition: (String) -> Bool) throws -> String {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                let text = try screen()
                if condition(text) { return text }
                Thread.sleep(forTimeInterval: 0.2)
            }
            let text = try screen()
            Issue.record("timed out waiting for \(what); the screen shows:\n\(text)")
            return text
        }

        func type(_ text: String) throws { try tmux(["send-keys", "-t", name, "-l", text]) }
        func key(_ key: String) throws { try tmux(["send-keys", "-t", name, key]) }
        func close() { _ = try? tmux(["kill-server"]) }
    }

    /// Lines after the last one that begins with "> " count the prompts shown so far.
    static func prompts(_ screen: String) -> Int { screen.components(separatedBy: "\n").filter { $0.hasPrefix(">") }.count }

    @Test(.enabled(if: tmux != nil, "needs tmux (Scripts/test installs it with apt)"))
    func twoTurnsResetInterruptAndExit() throws {
        let terminal = Terminal()
        defer { terminal.close() }
        let env = ["LLAMA_CACHE", "LLAMA_FIXTURES", "HOME", "PATH"].compactMap { key in
            ProcessInfo.processInfo.environment[key].map { "\(key)='\($0)'" }
        }.joined(separator: " ")
        let command = "env \(env) '\(CLI.executable)' chat --temp 0 -c 1024 -n 300 --stats --system 'You are a helpful assistant who answers in English.'; echo EXIT-STATUS=$?; sleep 60"
        try terminal.tmux(["new-session", "-d", "-s", terminal.name, "-x", "160", "-y", "50", command])

        // The banner and the first prompt.
        _ = try terminal.waitFor("the first prompt") { $0.contains("/help lists commands") && Self.prompts($0) == 1 }

        try terminal.type("What is the capital of France?")
        try terminal.key("Enter")
        var screen = try terminal.waitFor("the first answer") { Self.prompts($0) == 2 }
        #expect(screen.contains("Paris"), "\(screen)")
        #expect(screen.contains("(0 reused)"))

        try terminal.type("And of Italy?")
        try terminal.key("Enter")
        screen = try terminal.waitFor("the second answer") { Self.prompts($0) == 3 }
        // The second turn reuses the first one's cache.
        #expect(screen.range(of: #"\((?!0 )\d+ reused\)"#, options: .regularExpression) != nil, "\(screen)")

        try terminal.type("/reset")
        try terminal.key("Enter")
        screen = try terminal.waitFor("the reset") { $0.contains("[conversation cleared]") && Self.prompts($0) == 4 }

        // Ctrl-C while an answer streams stops it and comes back to the prompt.
        try terminal.type("Tell me a very long story about a dragon and a knight, with many chapters.")
        try terminal.key("Enter")
        let before = try terminal.screen()
        _ = try terminal.waitFor("the answer to start") { $0.count > before.count + 40 }
        try terminal.key("C-c")
        screen = try terminal.waitFor("the stopped answer", seconds: 20) { $0.contains("[answer stopped]") && Self.prompts($0) == 5 }
        #expect(!screen.contains("EXIT-STATUS"))

        // End of input leaves cleanly.
        try terminal.key("C-d")
        screen = try terminal.waitFor("the exit") { $0.contains("EXIT-STATUS=") }
        #expect(screen.contains("EXIT-STATUS=0"), "\(screen)")
    }

    @Test func oneShotPromptIsScriptable() throws {
        let r = try CLI.run(["chat", "--temp", "0", "-c", "512", "-n", "40", "--system", "You are a helpful assistant who answers in English.", "-p", "What is the capital of France?"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Paris"), "\(r.stdout)")
    }

    @Test func commandsWorkFromAPipe() throws {
        let path = TemporaryFile.path("cli-chat.json")
        let r = try CLI.run(["chat", "--temp", "0", "-c", "512", "-n", "8"],
                            stdin: "Hi\n/system Be brief.\n/system\n/save \(path)\n/bogus\n/load /nonexistent/file\n/help\n/exit\nnever read\n")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("[system prompt: Be brief.]"))
        #expect(r.stderr.contains("[saved to \(path)]"))
        #expect(r.stderr.contains("unknown command /bogus"))
        #expect(r.stderr.contains("cannot read '/nonexistent/file'"))
        #expect(r.stderr.contains("/reset"))
        let saved = try String(contentsOfFile: path, encoding: .utf8)
        #expect(saved.contains("\"role\" : \"user\"") && saved.contains("Be brief."))
    }

    @Test func badTemplateOptionIsAUsageError() throws {
        let r = try CLI.run(["chat", "--chat-template", "nonsense", "-p", "hi"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("llama2, llama3, chatml, mistral, zephyr"))
    }
}

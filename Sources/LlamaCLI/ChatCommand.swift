import ArgumentParser
import Dispatch
import Foundation
import Llama

struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with the model in the terminal, or answer one message with --prompt.",
        discussion: """
            The conversation goes through the model's chat template (its own Jinja template when the file \
            has one, else a built-in format: llama2, llama3, chatml, mistral, zephyr). Each answer only \
            evaluates the new turn: the rest is already in the cache. When the conversation outgrows the \
            context, the oldest turns are dropped (the system prompt stays).

            Commands: /reset (start over), /system [TEXT] (show or set the system prompt), /save FILE, \
            /load FILE, /help, /exit. Ctrl-C stops an answer; Ctrl-D (end of input) or /exit leaves.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var runOptions: RunOptions

    @Option(help: "The system prompt.")
    var system: String?

    @Option(name: [.short, .customLong("prompt")], help: "Answer this one message and exit (for scripts).")
    var prompt: String?

    @Option(name: .customLong("chat-template"), help: "Use a built-in format instead of the model's template: llama2, llama3, chatml, mistral or zephyr.")
    var chatTemplate: String?

    @Option(name: .customLong("chat-template-file"), help: ArgumentHelp("Use the Jinja chat template in this file.", valueName: "file"))
    var chatTemplateFile: String?

    @Flag(help: "After each answer, print token counts and speed to standard error.")
    var stats = false

    @Flag(name: .customLong("hide-thinking"), help: "Leave out what a reasoning model thinks (<think>...</think>); by default it is shown dimmed.")
    var hideThinking = false

    @Option(name: .customLong("reasoning-budget"), help: ArgumentHelp("Most tokens a reasoning model may think before its thinking is closed for it; 0 asks the template not to think, -1 is no limit.", valueName: "tokens"))
    var reasoningBudget: Int = -1

    @OptionGroup var sampling: SamplingOptions

    func validate() throws {
        if let chatTemplate, ChatTemplate.Format(rawValue: chatTemplate) == nil {
            throw ValidationError("--chat-template takes one of \(ChatTemplate.Format.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if chatTemplate != nil, chatTemplateFile != nil { throw ValidationError("give --chat-template or --chat-template-file, not both") }
        if reasoningBudget < -1 { throw ValidationError("--reasoning-budget must be -1 (no limit), 0 (no thinking) or a number of tokens") }
    }

    func template(for model: LlamaModel) throws -> ChatTemplate {
        if let chatTemplate, let format = ChatTemplate.Format(rawValue: chatTemplate) { return ChatTemplate(format: format) }
        if let chatTemplateFile {
            guard let data = FileManager.default.contents(atPath: chatTemplateFile) else { throw CLIError("cannot read '\(chatTemplateFile)'") }
            do { return try ChatTemplate(jinja: String(decoding: data, as: UTF8.self)) } catch {
                throw CLIError("the chat template in '\(chatTemplateFile)' does not parse: \(error)")
            }
        }
        return model.chatTemplate
    }

    func run() async throws {
        let model = try await runOptions.loadModel(modelOptions)
        let template = try template(for: model)
        var parameters = try sampling.parameters()
        // Thinking is shown apart from the answer: its tags stay in the text, and a template that
        // opens the block itself means the answer starts inside it.
        let rendered = (try? template.render([.user("?")], bos: model.bosText, eos: model.eosText)) ?? ""
        parameters.startsInReasoning = ToolCallParser.opensThinking(rendered)
        parameters.keptSpecialTokens = model.specialTokens(["<think>", "</think>"])
        parameters.reasoningBudget = reasoningBudget < 0 ? nil : reasoningBudget
        let chat = ChatSession(model: model, systemPrompt: system, parameters: parameters,
                               template: template, contextSize: runOptions.contextSize, threads: runOptions.threads,
                               kvCache: try runOptions.cache.checked(model))
        if let prompt {
            let (_, summary) = try await answer(chat, prompt)
            if stats, let summary { report(summary) }
            return
        }

        let interactive = isatty(0) == 1
        let contextSize = await chat.session.contextSize
        let cacheSummary = CacheTypeOptions.summary(model, await chat.session.kvCache, bytes: await chat.session.kvCacheBytes, contextSize: contextSize)
        Console.error("""
            chatting with \(URL(fileURLWithPath: model.path).lastPathComponent) (\(await chat.template.name) template, context \(contextSize) tokens)
            \(cacheSummary)
            /help lists commands; Ctrl-C stops an answer; Ctrl-D or /exit leaves.
            """)
        let interrupts = Interrupts()
        while true {
            if interactive { write("> ") }
            interrupts.atPrompt()
            guard let line = readLine(strippingNewline: true) else {
                if interactive { write("\n") }
                return
            }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text.hasPrefix("/") {
                if try await command(text, chat) { return }
                continue
            }
            let task = Task { try await answer(chat, text) }
            interrupts.during(task)
            do {
                let (stopped, summary) = try await task.value
                if stopped { Console.error("[answer stopped]") }
                if stats, let summary { report(summary) }
            } catch is CancellationError {
                write("\n")
                Console.error("[answer stopped]")
            } catch {
                Console.error("Error: \(error)")
            }
        }
    }

    /// Streams one answer to standard output. Returns whether it was cut short, and its summary.
    func answer(_ chat: ChatSession, _ text: String) async throws -> (Bool, GenerationSummary?) {
        var summary: GenerationSummary? = nil
        let parser = ToolCallParser(format: .generic, parsesToolCalls: false, startsInReasoning: await chat.parameters.startsInReasoning)
        var pieces = ToolCallStream(parser: parser)
        var thought = false, answered = false
        let dim = isatty(1) == 1
        func show(_ deltas: [ToolCallStream.Delta]) {
            for delta in deltas {
                switch delta {
                case .reasoning(let s):
                    thought = true
                    if !hideThinking { write(dim ? "\u{1B}[2m" + s + "\u{1B}[0m" : s) }
                case .content(let s):
                    if thought, !answered, !hideThinking { write("\n\n") }
                    answered = true
                    write(s)
                case .toolCall: break
                }
            }
        }
        for try await event in await chat.streamEvents(to: text) {
            switch event {
            case .text(let piece): show(pieces.add(piece))
            case .notice(let notice): Console.error("[\(notice)]")
            case .reasoning, .toolCall, .toolResult: break
            case .logprob: break
            case .finished(let s): summary = s
            }
        }
        show(pieces.finish().deltas)
        write("\n")
        return (Task.isCancelled || summary?.finishReason == .cancelled || summary == nil, summary)
    }

    func report(_ summary: GenerationSummary) {
        let s = summary.statistics
        Console.error(String(format: "[prompt: %d tokens (%d reused), %.1f tokens/s; answer: %d tokens, %.1f tokens/s]",
                             s.promptTokens, summary.reusedPromptTokens, s.promptTokensPerSecond, s.generatedTokens, s.generationTokensPerSecond))
    }

    /// Runs a /command; returns true to leave.
    func command(_ text: String, _ chat: ChatSession) async throws -> Bool {
        let parts = text.split(separator: " ", maxSplits: 1).map(String.init)
        let argument = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
        switch parts[0] {
        case "/exit", "/quit":
            return true
        case "/reset":
            await chat.reset()
            Console.error("[conversation cleared]")
        case "/system":
            if argument.isEmpty {
                Console.error("[system prompt: \(await chat.systemPrompt ?? "(none)")]")
            } else {
                await chat.setSystemPrompt(argument)
                Console.error("[system prompt set]")
            }
        case "/save":
            guard !argument.isEmpty else { Console.error("usage: /save FILE"); break }
            do {
                try await chat.save(to: argument)
                Console.error("[saved to \(argument)]")
            } catch { Console.error("Error: cannot save to '\(argument)': \(error.localizedDescription)") }
        case "/load":
            guard !argument.isEmpty else { Console.error("usage: /load FILE"); break }
            do {
                try await chat.load(from: argument)
                Console.error("[loaded \(await chat.messages.count) messages from \(argument)]")
            } catch { Console.error("Error: \(error)") }
        case "/help":
            Console.error("""
                /reset          start a new conversation (the system prompt stays)
                /system [TEXT]  show or set the system prompt
                /save FILE      save the conversation as JSON
                /load FILE      continue a saved conversation
                /exit           leave (as does Ctrl-D)
                Ctrl-C stops the answer being written.
                """)
        default:
            Console.error("unknown command \(parts[0]); /help lists them")
        }
        return false
    }

    func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

/// Ctrl-C: stops the answer being written; at the prompt it only says how to leave.
final class Interrupts: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var current: Task<(Bool, GenerationSummary?), Error>?

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            let task = self.lock.withLock { () -> Task<(Bool, GenerationSummary?), Error>? in
                defer { self.current = nil }
                return self.current
            }
            if let task {
                task.cancel()
            } else {
                FileHandle.standardError.write(Data("\n(Ctrl-D or /exit leaves)\n".utf8))
                FileHandle.standardOutput.write(Data("> ".utf8))
            }
        }
        source.resume()
    }

    func during(_ task: Task<(Bool, GenerationSummary?), Error>) { lock.withLock { current = task } }
    func atPrompt() { lock.withLock { current = nil } }
}

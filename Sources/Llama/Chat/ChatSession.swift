import Foundation
import Tokenizers

/// A conversation with a chat model: the messages so far, the template that turns them into a
/// prompt, and a `Session` whose cache keeps the transcript, so each answer only evaluates the
/// new turn. An actor: calls from many tasks are safe; answers come one at a time.
///
///     let model = try LlamaModel.load(path: path)
///     let chat = ChatSession(model: model, systemPrompt: "You are terse.")
///     print(try await chat.respond(to: "Hello!").content)             // the whole answer
///     for try await piece in await chat.streamResponse(to: "And?") {   // its text as it comes
///         print(piece, terminator: "")
///     }
///
/// `streamEvents(to:)` gives everything: text, thinking, tool calls and results, the summary.
public actor ChatSession {
    public let session: Session
    public let template: ChatTemplate
    public private(set) var messages: [ChatMessage] = []
    public private(set) var systemPrompt: String?
    public var parameters: GenerationParameters
    /// Tokens kept free for the answer when old turns must be dropped to fit the context.
    public var answerReserve: Int
    /// Swift functions the model may call while it answers (see `respond`).
    public let tools: [any Tool]
    /// Most rounds of calls in one answer; the round after the last must answer in text.
    public var maxToolRounds = 8
    /// How the last answer ended, also when its consumer was cancelled before `.finished`.
    public private(set) var lastSummary: GenerationSummary?

    /// The context a session reserves when none is given: the model's training context, at
    /// most this (a Llama 3.1 session would otherwise reserve 128k positions, gigabytes of cache).
    public static let defaultContextSize = 4096

    public init(model: LlamaModel, systemPrompt: String? = nil, parameters: GenerationParameters = GenerationParameters(),
                template: ChatTemplate? = nil, contextSize: Int? = nil, threads: Int? = nil,
                kvCache: LlamaContext.KVCacheTypes = .f16, tools: [any Tool] = []) {
        self.init(model: model, transcript: Transcript(systemPrompt: systemPrompt, messages: []), parameters: parameters,
                  template: template, contextSize: contextSize, threads: threads, kvCache: kvCache, tools: tools)
    }

    /// Goes on with a saved conversation (see `transcript`).
    public init(model: LlamaModel, transcript: Transcript, parameters: GenerationParameters = GenerationParameters(),
                template: ChatTemplate? = nil, contextSize: Int? = nil, threads: Int? = nil,
                kvCache: LlamaContext.KVCacheTypes = .f16, tools: [any Tool] = []) {
        let positions = contextSize ?? min(model.configuration.contextLength, Self.defaultContextSize)
        session = Session(model: model, contextSize: positions, threads: threads, kvCache: kvCache)
        self.template = template ?? model.chatTemplate
        systemPrompt = transcript.systemPrompt
        messages = transcript.messages
        self.parameters = parameters
        self.tools = tools
        answerReserve = min(512, session.contextSize / 4)
    }

    /// The conversation so far, as a `Codable` value to keep and go on with later.
    public var transcript: Transcript { Transcript(systemPrompt: systemPrompt, messages: messages) }

    /// Replaces the conversation (the cache is reused up to where it changed).
    public func setTranscript(_ transcript: Transcript) {
        systemPrompt = transcript.systemPrompt
        messages = transcript.messages
    }

    public var model: LlamaModel { session.model }
    /// Positions the session's cache holds.
    public var contextSize: Int { session.contextSize }

    /// Starts over (the system prompt stays).
    public func reset() {
        messages = []
    }

    /// Replaces the system prompt; the next answer sees it (the cache is reused up to where it changed).
    public func setSystemPrompt(_ text: String?) {
        systemPrompt = text?.isEmpty == true ? nil : text
    }

    public func setParameters(_ parameters: GenerationParameters) {
        self.parameters = parameters
    }

    public func setMaxToolRounds(_ rounds: Int) {
        maxToolRounds = max(0, rounds)
    }

    /// The prompt tokens for a transcript, ending where the assistant's answer begins (with
    /// `toolUse`, prepared for the tools).
    public func promptTokens(for conversation: [ChatMessage], toolUse: ToolUse? = nil) throws -> [TokenID] {
        let all = (systemPrompt.map { [ChatMessage.system($0)] } ?? []) + conversation
        return try model.chatPromptTokens(all, template: template, toolUse: toolUse)
    }

    /// Adds the user's message and answers it whole: the text, what the model thought, the tool
    /// calls it made, and how the generation ended. A cancelled task gets what was said before
    /// the cancellation, with `finishReason` `.cancelled`.
    public func respond(to text: String, parameters: GenerationParameters? = nil) async throws -> Response<String> {
        var response = Response(content: "", text: "", summary: GenerationSummary(finishReason: .cancelled, text: ""))
        var finished = false
        for try await event in streamEvents(to: text, parameters: parameters) {
            switch event {
            case .text(let piece): response.content += piece
            case .reasoning(let piece): response.reasoning += piece
            case .toolCall(let call): response.toolCalls.append(call)
            case .toolResult(let result): response.toolResults.append(result)
            case .finished(let summary):
                response.summary = summary
                finished = true
            default: break
            }
        }
        response.text = response.content
        if !finished { response.summary.text = response.content }
        return response
    }

    /// Adds the user's message and streams the answer's text (see `streamEvents` for the rest).
    public func streamResponse(to text: String, parameters: GenerationParameters? = nil) -> AsyncThrowingStream<String, Error> {
        let events = streamEvents(to: text, parameters: parameters)
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    for try await event in events { if case .text(let piece) = event { continuation.yield(piece) } }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Adds the user's message and streams the answer. When the transcript no longer fits the
    /// context, the oldest turns go first (the system prompt stays) and a `.notice` says so.
    /// The answer joins the transcript when it ends (also when cancelled, with what was said).
    ///
    /// With tools, each answer may call them: the calls (`.toolCall`) run, their results
    /// (`.toolResult`, errors included) go back to the model, and it goes on, for at most
    /// `maxToolRounds` rounds (the round after must answer in text). `.text` is then the answer's
    /// text without the call syntax, and `.reasoning` what it thought. An answer held to a
    /// grammar (`parameters.grammar`) is not offered the tools.
    ///
    /// Cancelled before its first token, the exchange leaves the transcript as it was (no empty
    /// answer, and the question is taken back); `lastSummary` tells how an answer ended.
    public func streamEvents(to text: String, parameters override: GenerationParameters? = nil) -> AsyncThrowingStream<GenerationEvent, Error> {
        let parameters = override ?? self.parameters
        if Task.isCancelled {  // cancelled before it began: the exchange does not happen
            lastSummary = GenerationSummary(finishReason: .cancelled, text: "")
            return AsyncThrowingStream { $0.finish() }
        }
        messages.append(.user(text))
        if !tools.isEmpty && parameters.grammar == nil {
            return AsyncThrowingStream { continuation in
                let task = Task { await self.answerWithTools(parameters, continuation) }
                continuation.onTermination = { _ in task.cancel() }
            }
        }
        let fitted: (prompt: [TokenID], notice: String?)
        do {
            fitted = try fit(toolUse: nil)
        } catch {
            messages.removeLast()  // the user's message, which did not go through
            return AsyncThrowingStream { $0.finish(throwing: error) }
        }
        let inner = session.generate(prompt: fitted.prompt, parameters: parameters, startOfAnswer: true)
        return AsyncThrowingStream { continuation in
            let task = Task {
                if let notice = fitted.notice { continuation.yield(.notice(notice)) }
                var answer = ""
                var summary: GenerationSummary?
                do {
                    for try await event in inner {
                        if case .text(let piece) = event { answer += piece }
                        if case .finished(let s) = event { summary = s }
                        continuation.yield(event)
                    }
                    self.record(answer: answer, summary: summary)
                    continuation.finish()
                } catch {
                    self.record(answer: answer, summary: summary)
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The prompt for the transcript, the oldest turns dropped while it does not fit (a turn
    /// starts at a user message, so calls and results go with the question they answer).
    private func fit(toolUse: ToolUse?) throws -> (prompt: [TokenID], notice: String?) {
        var dropped = 0
        var prompt = try promptTokens(for: messages, toolUse: toolUse)
        while prompt.count + answerReserve > session.contextSize, messages.count > 1 {
            messages.removeFirst()
            while messages.count > 1, messages.first?.role != "user" { messages.removeFirst() }
            dropped += 1
            prompt = try promptTokens(for: messages, toolUse: toolUse)
        }
        guard prompt.count < session.contextSize else {
            throw LlamaError.contextFull(needed: prompt.count, available: session.contextSize)
        }
        let notice = dropped > 0 ? "the conversation outgrew the context (\(session.contextSize) tokens): dropped the oldest \(dropped) turn\(dropped == 1 ? "" : "s")" : nil
        return (prompt, notice)
    }

    /// The tool loop of `respond`: answer, run the calls, give back the results, answer again.
    private func answerWithTools(_ parameters: GenerationParameters, _ continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation) async {
        let specs = tools.map(\.spec)
        var round = 0
        while true {
            let use = ToolUse(tools: specs, choice: round < maxToolRounds ? .auto : .none, template: template)
            var step = parameters
            let fitted: (prompt: [TokenID], notice: String?)
            do {
                if let grammar = try use.grammar() {
                    step.grammar = grammar.grammar
                    step.grammarTriggers = grammar.triggers
                }
                fitted = try fit(toolUse: use)
            } catch {
                if round == 0 { messages.removeLast() }
                continuation.finish(throwing: error)
                return
            }
            step.keptSpecialTokens = model.specialTokens(ToolUse.formatTags)
            if let notice = fitted.notice { continuation.yield(.notice(notice)) }
            var pieces = ToolCallStream(parser: use.parser(startsInReasoning: step.startsInReasoning))
            var summary: GenerationSummary?
            func forward(_ deltas: [ToolCallStream.Delta]) {
                for delta in deltas {
                    switch delta {
                    case .content(let text): continuation.yield(.text(text))
                    case .reasoning(let text): continuation.yield(.reasoning(text))
                    case .toolCall: break  // whole calls go out below
                    }
                }
            }
            var failure: Error?
            do {
                for try await event in session.generate(prompt: fitted.prompt, parameters: step, startOfAnswer: true) {
                    switch event {
                    case .text(let piece): forward(pieces.add(piece))
                    case .finished(let s): summary = s
                    default: continuation.yield(event)
                    }
                }
            } catch {
                failure = error
            }
            let (deltas, answer) = pieces.finish()
            forward(deltas)
            if summary == nil, answer.content.isEmpty, answer.toolCalls.isEmpty {
                // Cancelled before a word: no empty turn; before any call ran, no exchange at all.
                if round == 0 { record(answer: "", summary: nil) } else { lastSummary = GenerationSummary(finishReason: .cancelled, text: "") }
                if let failure { continuation.finish(throwing: failure) } else { continuation.finish() }
                return
            }
            messages.append(.assistant(answer.content, toolCalls: answer.toolCalls.isEmpty ? nil : answer.toolCalls))
            lastSummary = summary ?? GenerationSummary(finishReason: .cancelled, text: answer.content)
            if let failure {
                continuation.finish(throwing: failure)
                return
            }
            guard let summary, !answer.toolCalls.isEmpty, summary.finishReason == .stop, !Task.isCancelled else {
                if let summary { continuation.yield(.finished(summary)) }
                continuation.finish()
                return
            }
            for call in answer.toolCalls {
                continuation.yield(.toolCall(call))
                let result: ToolResult
                if let tool = tools.first(where: { $0.name == call.name }) {
                    result = await tool.run(call)
                } else {
                    result = ToolResult(callID: call.id, name: call.name, output: "Error: there is no tool named \(call.name)", isError: true)
                }
                continuation.yield(.toolResult(result))
                messages.append(.tool(result.output, callID: call.id, name: call.name))
            }
            round += 1
        }
    }

    /// Ends an exchange: the answer joins the transcript. With no summary (the consumer went
    /// away) and no text, the question is taken back too, so no empty turn is left.
    private func record(answer: String, summary: GenerationSummary?) {
        lastSummary = summary ?? GenerationSummary(finishReason: .cancelled, text: answer)
        if summary == nil && answer.isEmpty {
            // Back to before the question (and any tool rounds of this answer).
            if let question = messages.lastIndex(where: { $0.role == "user" }) { messages.removeSubrange(question...) }
            return
        }
        messages.append(.assistant(answer))
    }

    /// The conversation as JSON (system prompt and messages), for /save and /load.
    public struct Transcript: Codable, Sendable, Equatable {
        public var systemPrompt: String?
        public var messages: [ChatMessage]

        public init(systemPrompt: String? = nil, messages: [ChatMessage] = []) {
            self.systemPrompt = systemPrompt
            self.messages = messages
        }
    }

    public func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(Transcript(systemPrompt: systemPrompt, messages: messages)).write(to: URL(fileURLWithPath: path))
    }

    public func load(from path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw LlamaError.template("cannot read '\(path)'") }
        let transcript: Transcript
        do {
            transcript = try JSONDecoder().decode(Transcript.self, from: data)
        } catch {
            throw LlamaError.template("'\(path)' is not a saved conversation (\(error.localizedDescription))")
        }
        systemPrompt = transcript.systemPrompt
        messages = transcript.messages
    }
}

/// A whole answer: its content (text, or a typed value with `LlamaGenerable`), the text the
/// model wrote, what it thought, the tools it called, and how the generation ended.
public struct Response<Content: Sendable>: Sendable {
    public var content: Content
    /// What the model wrote (for a typed answer, its JSON).
    public var text: String
    /// What a reasoning model thought before it answered.
    public var reasoning = ""
    public var toolCalls: [ToolCall] = []
    public var toolResults: [ToolResult] = []
    public var summary: GenerationSummary

    public init(content: Content, text: String, reasoning: String = "", toolCalls: [ToolCall] = [], toolResults: [ToolResult] = [],
                summary: GenerationSummary) {
        self.content = content
        self.text = text
        self.reasoning = reasoning
        self.toolCalls = toolCalls
        self.toolResults = toolResults
        self.summary = summary
    }
}

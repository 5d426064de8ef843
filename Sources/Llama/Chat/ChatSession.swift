import Foundation
import Tokenizers

/// A conversation with a chat model: the messages so far, the template that turns them into a
/// prompt, and a `Session` whose cache keeps the transcript, so each answer only evaluates the
/// new turn. An actor: calls from many tasks are safe; answers come one at a time.
///
///     let model = try LlamaModel.load(path: path)
///     let chat = ChatSession(model: model, systemPrompt: "You are terse.")
///     for try await event in await chat.respond(to: "Hello!") {
///         if case .text(let piece) = event { print(piece, terminator: "") }
///     }
public actor ChatSession {
    public let session: Session
    public let template: ChatTemplate
    public private(set) var messages: [ChatMessage] = []
    public private(set) var systemPrompt: String?
    public var parameters: GenerationParameters
    /// Tokens kept free for the answer when old turns must be dropped to fit the context.
    public var answerReserve: Int

    public init(model: LlamaModel, systemPrompt: String? = nil, parameters: GenerationParameters = GenerationParameters(),
                template: ChatTemplate? = nil, contextSize: Int? = nil, threads: Int? = nil,
                kvCache: LlamaContext.KVCacheTypes = .f16) {
        session = Session(model: model, contextSize: contextSize, threads: threads, kvCache: kvCache)
        self.template = template ?? model.chatTemplate
        self.systemPrompt = systemPrompt
        self.parameters = parameters
        answerReserve = min(512, session.contextSize / 4)
    }

    public var model: LlamaModel { session.model }

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

    /// The prompt tokens for a transcript, ending where the assistant's answer begins.
    public func promptTokens(for conversation: [ChatMessage]) throws -> [TokenID] {
        let all = (systemPrompt.map { [ChatMessage.system($0)] } ?? []) + conversation
        return try model.chatPromptTokens(all, template: template)
    }

    /// Adds the user's message and streams the answer. When the transcript no longer fits the
    /// context, the oldest turns go first (the system prompt stays) and a `.notice` says so.
    /// The answer joins the transcript when it ends (also when cancelled, with what was said).
    public func respond(to text: String, parameters override: GenerationParameters? = nil) -> AsyncThrowingStream<GenerationEvent, Error> {
        let parameters = override ?? self.parameters
        messages.append(.user(text))
        var dropped = 0
        var prompt: [TokenID] = []
        do {
            prompt = try promptTokens(for: messages)
            while prompt.count + answerReserve > session.contextSize, messages.count > 1 {
                // Drop the oldest exchange: a user message and the answer after it.
                messages.removeFirst(messages.count > 2 && messages[1].role == "assistant" ? 2 : 1)
                dropped += 1
                prompt = try promptTokens(for: messages)
            }
            guard prompt.count < session.contextSize else {
                throw LlamaContext.ContextFull(needed: prompt.count, contextSize: session.contextSize)
            }
        } catch {
            messages.removeLast()  // the user's message, which did not go through
            return AsyncThrowingStream { $0.finish(throwing: error) }
        }
        let notice = dropped > 0 ? "the conversation outgrew the context (\(session.contextSize) tokens): dropped the oldest \(dropped) turn\(dropped == 1 ? "" : "s")" : nil
        let inner = session.generate(prompt: prompt, parameters: parameters, startOfAnswer: true)
        return AsyncThrowingStream { continuation in
            let task = Task {
                if let notice { continuation.yield(.notice(notice)) }
                var answer = ""
                do {
                    for try await event in inner {
                        if case .text(let piece) = event { answer += piece }
                        continuation.yield(event)
                    }
                    self.record(answer: answer)
                    continuation.finish()
                } catch {
                    self.record(answer: answer)
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    private func record(answer: String) {
        messages.append(.assistant(answer))
    }

    /// The conversation as JSON (system prompt and messages), for /save and /load.
    public struct Transcript: Codable, Sendable {
        public var systemPrompt: String?
        public var messages: [ChatMessage]
    }

    public func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(Transcript(systemPrompt: systemPrompt, messages: messages)).write(to: URL(fileURLWithPath: path))
    }

    public func load(from path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw ChatError("cannot read '\(path)'") }
        let transcript: Transcript
        do {
            transcript = try JSONDecoder().decode(Transcript.self, from: data)
        } catch {
            throw ChatError("'\(path)' is not a saved conversation (\(error.localizedDescription))")
        }
        systemPrompt = transcript.systemPrompt
        messages = transcript.messages
    }
}

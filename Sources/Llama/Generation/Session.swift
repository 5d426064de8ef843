import Foundation
import Tokenizers

/// What shapes one generation.
public struct GenerationParameters: Sendable {
    /// Most tokens to generate; negative means until an end token or a full context.
    public var maxTokens: Int = -1
    public var sampler = SamplerSettings()
    /// Texts that end the generation where they appear (they may span tokens); never part of the output.
    public var stop: [String] = []
    /// A GBNF grammar the output must follow (see `Grammar`, `JSONGrammar`).
    public var grammar: String? = nil
    /// With triggers, the grammar waits: the output is free until it contains one of these
    /// texts, and from there on (the trigger included) it must follow the grammar. A tool-call
    /// format's opening tag, so that a model may answer in words or start a call.
    public var grammarTriggers: [String] = []
    /// Special tokens whose text stays in the output (and that a grammar matches by their text):
    /// the tags a tool-call format or thinking is written with.
    public var keptSpecialTokens: Set<TokenID> = []
    /// Most tokens of thinking (between `<think>` and `</think>`); then the block is closed for
    /// the model, which goes on to answer. Nil: no limit.
    public var reasoningBudget: Int? = nil
    /// Whether the prompt opened the thinking block (the template ends with `<think>`).
    public var startsInReasoning = false
    /// Tokens that end the generation; nil means the model's end-of-text and end-of-turn tokens.
    public var stopTokens: Set<TokenID>? = nil
    /// When set, each generated token is reported (`.logprob`) with its log probability under
    /// the model and this many most likely alternatives.
    public var logprobs: Int? = nil

    /// Every parameter by name; the ones left out keep their defaults.
    public init(maxTokens: Int = -1, sampler: SamplerSettings = SamplerSettings(), stop: [String] = [], grammar: String? = nil,
                grammarTriggers: [String] = [], keptSpecialTokens: Set<TokenID> = [], reasoningBudget: Int? = nil,
                startsInReasoning: Bool = false, stopTokens: Set<TokenID>? = nil, logprobs: Int? = nil) {
        self.maxTokens = maxTokens
        self.sampler = sampler
        self.stop = stop
        self.grammar = grammar
        self.grammarTriggers = grammarTriggers
        self.keptSpecialTokens = keptSpecialTokens
        self.reasoningBudget = reasoningBudget
        self.startsInReasoning = startsInReasoning
        self.stopTokens = stopTokens
        self.logprobs = logprobs
    }
}

/// Why a generation ended.
public enum FinishReason: String, Sendable, Codable {
    /// An end token, a stop string, or a grammar that is complete.
    case stop
    /// `maxTokens` reached.
    case length
    /// The context is full.
    case contextFull = "context_full"
    /// The consumer stopped listening or the task was cancelled.
    case cancelled
}

/// The end of a generation: counts, timings, and why it ended.
public struct GenerationSummary: Sendable {
    public var statistics: GenerationStatistics
    public var finishReason: FinishReason
    /// The whole generated text (stop string excluded).
    public var text: String
    /// Prompt tokens that were already in the cache and not evaluated again.
    public var reusedPromptTokens: Int
    /// The stop string that ended the generation, if one did.
    public var stopSequence: String? = nil

    public init(statistics: GenerationStatistics = GenerationStatistics(), finishReason: FinishReason, text: String,
                reusedPromptTokens: Int = 0, stopSequence: String? = nil) {
        self.statistics = statistics
        self.finishReason = finishReason
        self.text = text
        self.reusedPromptTokens = reusedPromptTokens
        self.stopSequence = stopSequence
    }
}

/// A generated token and how likely the model found it (natural log of its probability, from the
/// logits before any sampling setting), with the most likely alternatives.
public struct TokenLogprob: Sendable {
    public struct Alternative: Sendable {
        public var token: TokenID
        /// The token's bytes (a piece of a character stays a piece) and its text.
        public var bytes: [UInt8]
        public var text: String { String(decoding: bytes, as: UTF8.self) }
        public var logprob: Float
    }
    public var chosen: Alternative
    /// Most likely first.
    public var top: [Alternative]
}

/// What a generation stream yields: text as it is produced, notices, and finally a summary.
public enum GenerationEvent: Sendable {
    case text(String)
    /// A token's log probability, before the text it adds (with `GenerationParameters.logprobs`).
    case logprob(TokenLogprob)
    /// Something the user should know, such as old turns dropped to fit the context.
    case notice(String)
    /// What a reasoning model thinks, apart from its answer (a `ChatSession` with tools).
    case reasoning(String)
    /// A call the model made, about to run (a `ChatSession` with tools).
    case toolCall(ToolCall)
    /// What the tool answered; the model reads it next.
    case toolResult(ToolResult)
    case finished(GenerationSummary)
}

/// A sequence being generated: a context (KV cache) on a shared model, and the tokens it holds.
/// A new prompt reuses the longest cached prefix it shares with the last one, so a conversation
/// only evaluates what is new. One generation at a time (callers queue on a lock); make one
/// session per conversation. Many sessions may share one `LlamaModel`.
public final class Session: @unchecked Sendable {
    public let model: LlamaModel
    private let context: LlamaContext
    private let lock = NSLock()
    /// The tokens whose keys and values the cache holds, in order.
    private var cached: [TokenID] = []

    public init(model: LlamaModel, contextSize: Int? = nil, threads: Int? = nil, batchSize: Int = 512,
                kvCache: LlamaContext.KVCacheTypes = .f16) {
        self.model = model
        context = LlamaContext(model: model, contextSize: contextSize, batchSize: batchSize,
                               threads: threads ?? SystemInfo.physicalCores, kvCache: kvCache)
    }

    public var contextSize: Int { context.contextSize }
    /// How the KV cache stores keys and values, and the bytes it takes.
    public var kvCache: LlamaContext.KVCacheTypes { context.kvCache }
    public var kvCacheBytes: Int { context.kvCacheBytes }

    /// The tokens in the cache (prompt and generated so far).
    public var tokens: [TokenID] {
        lock.lock()
        defer { lock.unlock() }
        return cached
    }

    /// Forgets the cache.
    public func reset() {
        lock.lock()
        defer { lock.unlock() }
        cached = []
        context.reset()
    }

    /// Generates after `prompt` (which should include BOS where the model wants it), calling
    /// `onEvent` with text as it comes. Runs on the calling thread; `isCancelled` is asked before
    /// every token. `startOfAnswer` drops the leading space a SentencePiece answer starts with.
    public func run(prompt: [TokenID], parameters: GenerationParameters, startOfAnswer: Bool = false,
                    isCancelled: () -> Bool = { false }, onEvent: (GenerationEvent) -> Void) throws -> GenerationSummary {
        lock.lock()
        defer { lock.unlock() }
        guard !prompt.isEmpty else { throw ModelError("the prompt is empty; give at least one token (such as BOS)") }
        guard prompt.count < context.contextSize else {
            throw LlamaError.contextFull(needed: prompt.count + 1, available: context.contextSize)
        }
        var state = try GenerationState(model: model, parameters: parameters, startOfAnswer: startOfAnswer)
        var stats = GenerationStatistics()
        stats.promptTokens = prompt.count

        // Reuse the cached prefix; at least the last prompt token is evaluated, for its logits.
        let common = reusablePrefix(cached, prompt)
        context.truncate(to: common)
        cached.removeSubrange(common...)
        let promptStart = Date()
        do {
            try context.evaluate(Array(prompt[common...]), logitsFor: .last)
        } catch {
            cached = Array(prompt[..<context.position])
            throw error
        }
        cached = prompt
        stats.promptSeconds = Date().timeIntervalSince(promptStart)

        let generationStart = Date()
        while true {
            if isCancelled() {
                state.end(.cancelled, emit: onEvent)
                break
            }
            guard let token = try state.next(logits: context.logits[...], history: cached, emit: onEvent) else { break }
            if context.position >= context.contextSize {
                state.end(.contextFull, emit: onEvent)
                break
            }
            try context.evaluate([token], logitsFor: .last)
            cached.append(token)
        }
        stats.generatedTokens = state.generated
        stats.generationSeconds = Date().timeIntervalSince(generationStart)
        let summary = GenerationSummary(statistics: stats, finishReason: state.finishReason ?? .length, text: state.text, reusedPromptTokens: common,
                                        stopSequence: state.stopper.matched)
        onEvent(.finished(summary))
        return summary
    }

    /// Generates after `prompt` on a thread of its own, as a stream of events ending with
    /// `.finished`. Cancelling the consuming task (or dropping the stream) stops it within a token.
    public func generate(prompt: [TokenID], parameters: GenerationParameters, startOfAnswer: Bool = false) -> AsyncThrowingStream<GenerationEvent, Error> {
        AsyncThrowingStream { continuation in
            let cancelled = Cancellation()
            continuation.onTermination = { _ in cancelled.cancel() }
            let thread = Thread { [self] in
                do {
                    _ = try run(prompt: prompt, parameters: parameters, startOfAnswer: startOfAnswer, isCancelled: { cancelled.isCancelled }) { event in
                        continuation.yield(event)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// Text prompt: tokenized with BOS as the model wants it and special tokens parsed.
    public func generate(prompt: String, parameters: GenerationParameters) -> AsyncThrowingStream<GenerationEvent, Error> {
        var tokens = model.tokenizer.encode(prompt, addSpecial: true, parseSpecial: true)
        if tokens.isEmpty, let bos = model.tokenizer.bos { tokens = [bos] }
        return generate(prompt: tokens, parameters: parameters, startOfAnswer: prompt.isEmpty)
    }
}

/// Stops a generation from anywhere (another thread, a network callback) before its next token.
public final class Cancellation: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    private var onCancel: [@Sendable () -> Void] = []

    public init() {}

    public func cancel() {
        let actions: [@Sendable () -> Void] = lock.withLock {
            guard !value else { return [] }
            value = true
            defer { onCancel = [] }
            return onCancel
        }
        for action in actions { action() }
    }

    public var isCancelled: Bool { lock.withLock { value } }

    /// Runs `action` once when cancelled (at once if it already is).
    func whenCancelled(_ action: @escaping @Sendable () -> Void) {
        let now: Bool = lock.withLock {
            if value { return true }
            onCancel.append(action)
            return false
        }
        if now { action() }
    }
}

/// Holds back text that might be the start of a stop string, and cuts at the first stop string.
struct StopStringFilter {
    let stops: [String]
    private var held = ""
    private(set) var stopped = false
    /// The stop string found (the earliest in the text).
    private(set) var matched: String? = nil

    init(stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Adds text; returns what may be shown now, and whether a stop string was found.
    mutating func add(_ piece: String) -> (String, Bool) {
        guard !stopped else { return ("", true) }
        guard !stops.isEmpty else { return (piece, false) }
        held += piece
        // The earliest stop string wins.
        var cut: String.Index? = nil
        for stop in stops {
            if let range = held.range(of: stop), cut.map({ range.lowerBound < $0 }) ?? true {
                cut = range.lowerBound
                matched = stop
            }
        }
        if let cut {
            stopped = true
            let visible = String(held[..<cut])
            held = ""
            return (visible, true)
        }
        // Keep the longest end of the text that begins some stop string.
        var keep = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, held.count), to: 0, by: -1) where held.hasSuffix(stop.prefix(length)) {
                keep = max(keep, length)
                break
            }
        }
        let visible = String(held.dropLast(keep))
        held = String(held.suffix(keep))
        return (visible, false)
    }

    /// What is held back, at the end of the generation.
    mutating func flush() -> String {
        defer { held = "" }
        return held
    }
}

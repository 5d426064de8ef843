import Foundation
import Tokenizers

/// Counts and timings of one generation, as `llama generate` reports them.
public struct GenerationStatistics: Sendable, Codable {
    public var promptTokens = 0
    public var generatedTokens = 0
    public var promptSeconds: Double = 0
    public var generationSeconds: Double = 0

    public init(promptTokens: Int = 0, generatedTokens: Int = 0, promptSeconds: Double = 0, generationSeconds: Double = 0) {
        self.promptTokens = promptTokens
        self.generatedTokens = generatedTokens
        self.promptSeconds = promptSeconds
        self.generationSeconds = generationSeconds
    }

    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : 0 }
    public var generationTokensPerSecond: Double { generationSeconds > 0 ? Double(generatedTokens) / generationSeconds : 0 }
}

extension LlamaModel {
    /// Tokens that end a generation: EOS and end-of-turn, and for llama2.c checkpoints BOS too
    /// (run.c stops there: its stories are separated by BOS).
    public var stopTokens: Set<TokenID> {
        var stops: Set<TokenID> = []
        if let eos = tokenizer.eos { stops.insert(eos) }
        for text in ["<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>", "</s>"] {
            if let id = tokenizer.tokenID(text), tokenizer.tokenType(id) == .control { stops.insert(id) }
        }
        if isLlama2cCheckpoint, let bos = tokenizer.bos { stops.insert(bos) }
        return stops
    }
}

/// How many of a new prompt's tokens a cache holding `cached` can keep: their common prefix, but
/// never the whole prompt, whose last token is evaluated again for its logits.
func reusablePrefix(_ cached: [TokenID], _ prompt: [TokenID]) -> Int {
    var common = 0
    while common < min(cached.count, prompt.count - 1), cached[common] == prompt[common] { common += 1 }
    return common
}

/// Why a generation could not go on.
public enum GenerationError: Error, CustomStringConvertible, Sendable {
    /// The model computed NaN or an infinity: its weights or hyperparameters are damaged.
    case nonFiniteLogits(position: Int, token: TokenID, value: Float)
    /// Masking the vocabulary with the grammar needed more steps than one token may take.
    case grammarTooExpensive(budget: Int)

    public var description: String {
        switch self {
        case .nonFiniteLogits(let position, let token, let value):
            return "the model computed \(value) for token \(token) at position \(position); its weights or hyperparameters are damaged (try another copy of the file)"
        case .grammarTooExpensive(let budget):
            return "the grammar needs more than \(budget) matching steps to choose one token; simplify it (fewer alternatives at one point, fewer rules)"
        }
    }
}

/// One generation's choices token by token, apart from where the logits come from: sampler,
/// grammar, stop tokens and strings, token budget, and the text so far. `Session` drives one on
/// its own context; `BatchScheduler` drives one per slot on a shared context.
struct GenerationState {
    let tokenizer: Tokenizer
    let maxTokens: Int
    let stopTokens: Set<TokenID>
    /// The grammar's matcher: from the start, or (with triggers) once a trigger has appeared.
    private(set) var matcher: GrammarMatcher?
    /// A grammar waiting for one of `triggers` in the output.
    let waitingGrammar: Grammar?
    let triggers: [String]
    let kept: Set<TokenID>
    /// All text decoded so far, held-back stop text included (where triggers and thinking are
    /// looked for; kept only when needed).
    private var decoded = ""
    let reasoningBudget: Int?
    let startsInReasoning: Bool
    private var thinkingTokens = 0
    /// Tokens the model is made to write next (the end of thinking, past its budget).
    private var forced: [TokenID] = []
    let logprobs: Int?
    var sampler: Sampler
    var decoder: StreamingDecoder
    var stopper: StopStringFilter
    private(set) var text = ""
    private(set) var generated = 0
    /// Set when the generation has ended.
    private(set) var finishReason: FinishReason?

    /// Throws when the grammar does not parse.
    init(model: LlamaModel, parameters: GenerationParameters, startOfAnswer: Bool) throws {
        tokenizer = model.tokenizer
        maxTokens = parameters.maxTokens
        stopTokens = parameters.stopTokens ?? model.stopTokens
        try parameters.sampler.validate()
        let grammar = try parameters.grammar.map { try Grammar($0) }
        triggers = parameters.grammarTriggers
        waitingGrammar = triggers.isEmpty ? nil : grammar
        matcher = triggers.isEmpty ? grammar.map { GrammarMatcher($0) } : nil
        kept = parameters.keptSpecialTokens
        reasoningBudget = parameters.reasoningBudget.map { max(0, $0) }
        startsInReasoning = parameters.startsInReasoning
        logprobs = parameters.logprobs.map { max(0, $0) }
        sampler = Sampler(parameters.sampler)
        decoder = StreamingDecoder(tokenizer: model.tokenizer, kept: kept, atStartOfText: startOfAnswer)
        stopper = StopStringFilter(stops: parameters.stop)
    }

    /// Picks the next token from the logits after `history`, passing the text that may be shown
    /// (and log probabilities, when asked for) to `emit`. Returns the token to evaluate next, or
    /// nil when the generation has ended (then `finishReason` says why and all text has been emitted).
    /// Throws when the logits are not numbers (a damaged model) or the grammar needs more work for
    /// one token than its budget allows; the text so far has been emitted then.
    mutating func next(logits: ArraySlice<Float>, history: [TokenID], emit: (GenerationEvent) -> Void) throws -> TokenID? {
        guard finishReason == nil else { return nil }
        if maxTokens >= 0, generated >= maxTokens {
            end(.length, emit: emit)
            return nil
        }
        if let bad = logits.firstIndex(where: { !$0.isFinite }) {
            end(.stop, emit: emit)
            throw GenerationError.nonFiniteLogits(position: history.count, token: TokenID(bad - logits.startIndex), value: logits[bad])
        }
        if reasoningBudget == 0, startsInReasoning, generated == 0 { forced = Self.endOfThinking(tokenizer) }
        matcher?.beginToken()
        let allowed: ((TokenID) -> Bool)?
        if let next = forced.first {
            allowed = { $0 == next }
        } else {
            allowed = matcher.map { [tokenizer, stopTokens, kept] m in { m.allows($0, tokenizer: tokenizer, endTokens: stopTokens, kept: kept) } }
        }
        let drawn = sampler.sample(logits, history: history, allowed: allowed)
        if let matcher, matcher.budgetExhausted {
            end(.stop, emit: emit)
            throw GenerationError.grammarTooExpensive(budget: matcher.workBudget)
        }
        // The logit bias banned every token: nothing can follow.
        guard let token = drawn else {
            end(.stop, emit: emit)
            return nil
        }
        let wasForced = forced.first == token
        if wasForced {
            forced.removeFirst()
        } else if stopTokens.contains(token) || matcher.map({ !$0.allows(token, tokenizer: tokenizer, endTokens: stopTokens, kept: kept) }) == true {
            // An end token, or nothing more that the grammar allows.
            end(.stop, emit: emit)
            return nil
        }
        generated += 1
        if let logprobs { emit(.logprob(Self.logprob(of: token, in: logits, top: logprobs, tokenizer: tokenizer))) }
        if !wasForced { matcher?.accept(token, tokenizer: tokenizer, kept: kept) }
        let piece = decoder.append(token)
        if (waitingGrammar != nil && matcher == nil) || reasoningBudget != nil { decoded += piece }
        let (visible, stopped) = stopper.add(piece)
        show(visible, emit)
        if !switchOnGrammar() {
            end(.stop, emit: emit)
            return nil
        }
        limitThinking()
        if stopped || matcher?.isComplete == true {
            end(.stop, emit: emit)
            return nil
        }
        if maxTokens >= 0, generated >= maxTokens {
            end(.length, emit: emit)
            return nil
        }
        return token
    }

    /// With a waiting grammar: when the text now holds a trigger, the grammar starts there and
    /// reads what follows it. False when that text does not follow the grammar (the answer ends).
    private mutating func switchOnGrammar() -> Bool {
        guard let grammar = waitingGrammar, matcher == nil else { return true }
        guard let start = triggers.compactMap({ decoded.range(of: $0)?.lowerBound }).min() else { return true }
        let started = GrammarMatcher(grammar)
        let bytes = Array(decoded.utf8[start...])
        started.beginToken()
        guard started.allows(bytes: bytes, isEndOfText: false) else { return false }
        started.accept(bytes: bytes)
        matcher = started
        return true
    }

    /// Counts the tokens of an open thinking block; past the budget, the next tokens close it.
    private mutating func limitThinking() {
        guard let budget = reasoningBudget, forced.isEmpty else { return }
        let opened = startsInReasoning || decoded.drop { $0.isWhitespace }.hasPrefix("<think>")
        guard opened, !decoded.contains("</think>") else { return }
        thinkingTokens += 1
        if thinkingTokens >= budget { forced = Self.endOfThinking(tokenizer) }
    }

    static func endOfThinking(_ tokenizer: Tokenizer) -> [TokenID] {
        tokenizer.encode("\n</think>\n\n", addSpecial: false, parseSpecial: true)
    }

    /// Ends the generation (if it has not ended) and emits what was held back.
    mutating func end(_ reason: FinishReason, emit: (GenerationEvent) -> Void) {
        guard finishReason == nil else { return }
        finishReason = reason
        if !stopper.stopped {
            let (visible, _) = stopper.add(decoder.finish())
            show(visible + (stopper.stopped ? "" : stopper.flush()), emit)
        }
    }

    private mutating func show(_ piece: String, _ emit: (GenerationEvent) -> Void) {
        guard !piece.isEmpty else { return }
        text += piece
        emit(.text(piece))
    }

    /// `token`'s log probability under the softmax of the raw logits, and the `top` likeliest.
    static func logprob(of token: TokenID, in logits: ArraySlice<Float>, top: Int, tokenizer: Tokenizer) -> TokenLogprob {
        let row = Array(logits)
        let largest = row.max() ?? 0
        var sum: Double = 0
        for value in row { sum += Foundation.exp(Double(value - largest)) }
        let logSum = largest + Float(Foundation.log(sum))
        func alternative(_ id: TokenID) -> TokenLogprob.Alternative {
            .init(token: id, bytes: tokenizer.pieceBytes(id, renderSpecial: true), logprob: row[Int(id)] - logSum)
        }
        let alternatives = top > 0 ? Sampler.largest(top, of: row).map { alternative(TokenID($0)) } : []
        return TokenLogprob(chosen: alternative(token), top: alternatives)
    }
}

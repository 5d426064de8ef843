import Foundation
import Tokenizers

/// Counts and timings of one generation, as `llama generate` reports them.
public struct GenerationStatistics: Sendable, Codable {
    public var promptTokens = 0
    public var generatedTokens = 0
    public var promptSeconds: Double = 0
    public var generationSeconds: Double = 0

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

extension LlamaContext {
    /// Evaluates `prompt`, then samples up to `maxTokens` tokens (negative: until a stop token or
    /// the context is full), calling `onToken` with each; `onToken` returns false to stop early.
    /// The prompt must not be empty (give at least BOS).
    public func generate(prompt: [TokenID], maxTokens: Int, sampler: inout Sampler, stopTokens: Set<TokenID>,
                         onToken: (TokenID) throws -> Bool) throws -> GenerationStatistics {
        var stats = GenerationStatistics()
        stats.promptTokens = prompt.count
        guard !prompt.isEmpty else { return stats }
        let promptStart = Date()
        try evaluate(prompt, logitsFor: .last)
        stats.promptSeconds = Date().timeIntervalSince(promptStart)
        var history = prompt
        let generationStart = Date()
        while maxTokens < 0 || stats.generatedTokens < maxTokens {
            let token = sampler.sample(logits[...], history: history)
            if stopTokens.contains(token) { break }
            stats.generatedTokens += 1
            history.append(token)
            guard try onToken(token) else { break }
            if maxTokens >= 0, stats.generatedTokens >= maxTokens { break }
            if position >= contextSize { break }
            try evaluate([token], logitsFor: .last)
        }
        stats.generationSeconds = Date().timeIntervalSince(generationStart)
        return stats
    }
}

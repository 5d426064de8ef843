import Foundation
import GGUF
import Tokenizers

/// Perplexity as llama.cpp's llama-perplexity measures it: the text is cut into non-overlapping
/// chunks of the context size; each chunk is evaluated from an empty cache (its first token
/// replaced by BOS where the vocabulary adds one); only the second half of each chunk is scored,
/// so every scored token has at least half a context of history.
public struct PerplexityResult: Sendable, Codable {
    public var chunks: Int
    public var scoredTokens: Int
    /// The estimate after each chunk, as llama.cpp prints `[1]x,[2]y,...`.
    public var runningEstimates: [Double]
    public var perplexity: Double
    /// One standard error of the estimate.
    public var error: Double
}

extension LlamaContext {
    /// Measures perplexity of `tokens` (the tokenized text, BOS added where the vocabulary asks)
    /// in chunks of this context's size. `progress` is called after every chunk. With
    /// `saveLogits`, the scored rows' log-probabilities go to that writer (llama.cpp's
    /// `--kl-divergence-base` file).
    public func perplexity(of tokens: [TokenID], maxChunks: Int? = nil, saveLogits: LogitsFileWriter? = nil,
                           progress: (_ chunk: Int, _ of: Int, _ estimate: Double, _ seconds: Double) -> Void = { _, _, _, _ in }) throws -> PerplexityResult {
        let n = contextSize
        let available = tokens.count / n
        let chunks = min(maxChunks ?? available, available)
        guard chunks > 0 else {
            throw ModelError("the text has \(tokens.count) tokens, fewer than one chunk of \(n) (the context size); use a longer text or a smaller -c")
        }
        let vocab = model.configuration.vocabularySize
        try saveLogits?.begin(contextSize: n, vocabularySize: vocab, chunks: chunks, tokens: Array(tokens[0..<(chunks * n)]))
        var nll = 0.0, nll2 = 0.0
        var count = 0
        var running: [Double] = []
        for c in 0..<chunks {
            let start = Date()
            let targets = Array(tokens[(c * n)..<((c + 1) * n)])
            let logits = try chunkLogits(targets)
            for i in (n / 2)..<(n - 1) {
                let row = logits[((i - n / 2) * vocab)..<((i - n / 2 + 1) * vocab)]
                let logProbability = LlamaContext.logSoftmax(row, at: Int(targets[i + 1]))
                nll -= logProbability
                nll2 += logProbability * logProbability
                count += 1
                try saveLogits?.append(row)
            }
            running.append(exp(nll / Double(count)))
            progress(c + 1, chunks, running[c], Date().timeIntervalSince(start))
        }
        try saveLogits?.finish()
        let mean = nll / Double(count)
        let variance = nll2 / Double(count) - mean * mean
        let error = variance > 0 && count > 1 ? (variance / Double(count - 1)).squareRoot() * exp(mean) : 0
        return PerplexityResult(chunks: chunks, scoredTokens: count, runningEstimates: running, perplexity: exp(mean), error: error)
    }

    /// A chunk's logits from its middle on (the rows perplexity scores), evaluated from an empty
    /// cache with the first token replaced by BOS where the vocabulary adds one.
    func chunkLogits(_ chunk: [TokenID]) throws -> [Float] {
        var batch = chunk
        if model.tokenizer.definition.addBOS, let bos = model.tokenizer.bos { batch[0] = bos }
        reset()
        // Rows n/2 ..< n-1 are scored; the last row predicts past the chunk.
        let logits = try evaluate(batch, logitsFor: .from(chunk.count / 2))
        return logits
    }

    /// log softmax(row)[index], in Double.
    static func logSoftmax(_ row: ArraySlice<Float>, at index: Int) -> Double {
        let m = Double(row.max() ?? 0)
        var sum = 0.0
        for v in row { sum += exp(Double(v) - m) }
        return Double(row[row.startIndex + index]) - m - log(sum)
    }
}

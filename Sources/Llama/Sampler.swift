import Foundation
import Kernels
import Tokenizers

/// How the next token is chosen from the logits.
public struct SamplerSettings: Sendable, Codable, Equatable {
    /// 0 picks the most likely token (greedy).
    public var temperature: Float = 0.8
    /// Keep only the k most likely tokens (0 = all).
    public var topK: Int = 40
    /// Keep the smallest set of tokens whose probabilities add up to p (1 = all).
    public var topP: Float = 0.95
    /// Drop tokens less likely than min-p times the most likely one (0 = none).
    public var minP: Float = 0.05
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this (1 = off).
    public var repeatPenalty: Float = 1.0
    /// How many recent tokens the repeat penalty looks at.
    public var repeatLastN: Int = 64
    /// The random seed; the same seed, model and settings give the same text.
    public var seed: UInt64 = UInt64.random(in: 1...UInt64.max)

    public init() {}

    /// Always the most likely token.
    public static var greedy: SamplerSettings {
        var s = SamplerSettings()
        s.temperature = 0
        return s
    }
}

/// Chooses tokens from logits. The order follows llama2.c's run.c: repetition penalty, then
/// temperature; greedy at temperature 0; otherwise softmax, top-k, min-p, top-p, and a draw with
/// run.c's xorshift generator. With top-k 0, min-p 0 and no penalty, a seed gives exactly the
/// tokens run.c gives with that seed.
public struct Sampler: Sendable {
    public let settings: SamplerSettings
    private var state: UInt64

    public init(_ settings: SamplerSettings) {
        self.settings = settings
        state = settings.seed == 0 ? 0x9E37_79B9_7F4A_7C15 : settings.seed  // xorshift must not start at 0
    }

    /// run.c's `random_u32` (xorshift*).
    mutating func nextUInt32() -> UInt32 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return UInt32(truncatingIfNeeded: (state &* 0x2545_F491_4F6C_DD1D) >> 32)
    }

    /// run.c's `random_f32`: uniform in [0, 1).
    mutating func nextFloat() -> Float { Float(nextUInt32() >> 8) / 16_777_216 }

    /// The next number of the generator, for tests that hold it against run.c.
    public mutating func nextFloatForTesting() -> Float { nextFloat() }

    /// The next token. `logits` is one row of vocabulary size; `history` the tokens so far.
    public mutating func sample(_ logits: ArraySlice<Float>, history: [TokenID] = []) -> TokenID {
        var logits = Array(logits)
        if settings.repeatPenalty != 1, settings.repeatLastN != 0 {
            let recent = settings.repeatLastN < 0 ? history[...] : history.suffix(settings.repeatLastN)
            for token in Set(recent) where token >= 0 && Int(token) < logits.count {
                let i = Int(token)
                logits[i] = logits[i] > 0 ? logits[i] / settings.repeatPenalty : logits[i] * settings.repeatPenalty
            }
        }
        if settings.temperature <= 0 { return Sampler.argmax(logits) }
        for i in logits.indices { logits[i] /= settings.temperature }
        logits.withUnsafeMutableBufferPointer { Ops.softmax($0.baseAddress!, count: $0.count) }
        let probabilities = logits

        var candidates: [Int]? = nil  // nil: the whole vocabulary, in id order
        if settings.topK > 0, settings.topK < probabilities.count {
            candidates = Array(probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }.prefix(settings.topK))
        }
        if settings.minP > 0 {
            let best = candidates.map { probabilities[$0[0]] } ?? (probabilities.max() ?? 0)
            let kept = (candidates ?? Array(probabilities.indices)).filter { probabilities[$0] >= settings.minP * best }
            candidates = kept
        }
        let coin = nextFloat()
        if settings.topP > 0, settings.topP < 1 {
            return TokenID(Sampler.sampleTopP(probabilities, candidates: candidates, p: settings.topP, coin: coin))
        }
        guard let candidates else { return TokenID(Sampler.sampleMultinomial(probabilities, coin: coin)) }
        let mass = candidates.reduce(Float(0)) { $0 + probabilities[$1] }
        var cdf: Float = 0
        for i in candidates {
            cdf += probabilities[i]
            if coin * mass < cdf { return TokenID(i) }
        }
        return TokenID(candidates.last ?? 0)
    }

    static func argmax(_ x: [Float]) -> TokenID {
        var best = 0
        for i in x.indices where x[i] > x[best] { best = i }
        return TokenID(best)
    }

    /// run.c's `sample_mult`: walk the distribution until the coin is passed.
    static func sampleMultinomial(_ probabilities: [Float], coin: Float) -> Int {
        var cdf: Float = 0
        for i in probabilities.indices {
            cdf += probabilities[i]
            if coin < cdf { return i }
        }
        return probabilities.count - 1  // rounding
    }

    /// run.c's `sample_topp`: drop tokens that cannot be in the nucleus, sort the rest, cut at
    /// cumulative probability `p`, draw within the kept mass.
    static func sampleTopP(_ probabilities: [Float], candidates: [Int]?, p: Float, coin: Float) -> Int {
        let pool = candidates ?? Array(probabilities.indices)
        let cutoff = (1 - p) / Float(max(probabilities.count - 1, 1))
        var kept = pool.filter { probabilities[$0] >= cutoff }
        if kept.isEmpty { kept = pool }
        kept.sort { probabilities[$0] > probabilities[$1] }
        var cumulative: Float = 0
        var last = kept.count - 1
        for (n, i) in kept.enumerated() {
            cumulative += probabilities[i]
            if cumulative > p {
                last = n
                break
            }
        }
        let r = coin * cumulative
        var cdf: Float = 0
        for n in 0...last {
            cdf += probabilities[kept[n]]
            if r < cdf { return kept[n] }
        }
        return kept[last]
    }
}

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
    /// Subtract this times the number of times a token appeared in the last `repeatLastN` tokens (0 = off).
    public var frequencyPenalty: Float = 0
    /// Subtract this from tokens that appeared at all in the last `repeatLastN` tokens (0 = off).
    public var presencePenalty: Float = 0
    /// Keep the tokens whose surprise is closest to the distribution's entropy, up to mass p (1 = off).
    public var typicalP: Float = 1
    /// Added to a token's logit before anything else; -infinity bans the token.
    public var logitBias: [TokenID: Float] = [:]
    /// 2 turns on Mirostat v2, which replaces top-k, typical-p, min-p and top-p by steering the
    /// surprise of each token towards `mirostatTau` (0 = off).
    public var mirostat: Int = 0
    public var mirostatTau: Float = 5
    public var mirostatEta: Float = 0.1
    /// The random seed; the same seed, model and settings give the same text.
    public var seed: UInt64 = UInt64.random(in: 1...UInt64.max)

    public init() {}

    /// Every setting by name; the ones left out keep their defaults.
    ///
    ///     SamplerSettings(temperature: 0.2, topK: 20, seed: 42)
    public init(temperature: Float = 0.8, topK: Int = 40, topP: Float = 0.95, minP: Float = 0.05, repeatPenalty: Float = 1.0,
                repeatLastN: Int = 64, frequencyPenalty: Float = 0, presencePenalty: Float = 0, typicalP: Float = 1,
                logitBias: [TokenID: Float] = [:], mirostat: Int = 0, mirostatTau: Float = 5, mirostatEta: Float = 0.1,
                seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatLastN = repeatLastN
        self.frequencyPenalty = frequencyPenalty
        self.presencePenalty = presencePenalty
        self.typicalP = typicalP
        self.logitBias = logitBias
        self.mirostat = mirostat
        self.mirostatTau = mirostatTau
        self.mirostatEta = mirostatEta
        if let seed { self.seed = seed }
    }

    /// Refuses settings that would make sampling meaningless or crash it (NaN, infinities,
    /// negative counts), naming the setting.
    public func validate() throws(ModelError) {
        func finite(_ value: Float, _ name: String, in range: ClosedRange<Float>? = nil) throws(ModelError) {
            guard value.isFinite else { throw ModelError("sampler setting \(name) must be a finite number, not \(value)") }
            if let range, !range.contains(value) { throw ModelError("sampler setting \(name) must be between \(range.lowerBound) and \(range.upperBound), not \(value)") }
        }
        try finite(temperature, "temperature", in: 0...1_000)
        try finite(topP, "top_p", in: 0...1)
        try finite(minP, "min_p", in: 0...1)
        try finite(typicalP, "typical_p", in: 0...1)
        try finite(repeatPenalty, "repeat_penalty", in: 0...1_000)
        try finite(frequencyPenalty, "frequency_penalty", in: -1_000...1_000)
        try finite(presencePenalty, "presence_penalty", in: -1_000...1_000)
        try finite(mirostatTau, "mirostat_tau", in: 0...1_000)
        try finite(mirostatEta, "mirostat_eta", in: 0...1_000)
        guard topK >= 0 else { throw ModelError("sampler setting top_k must not be negative, not \(topK)") }
        guard repeatLastN >= -1 else { throw ModelError("sampler setting repeat_last_n must be -1 (all) or more, not \(repeatLastN)") }
        guard mirostat == 0 || mirostat == 2 else { throw ModelError("sampler setting mirostat must be 0 or 2, not \(mirostat)") }
        for (token, bias) in logitBias where bias.isNaN || bias == .infinity {
            throw ModelError("the logit bias of token \(token) must be a finite number or -infinity, not \(bias)")
        }
    }

    /// Always the most likely token.
    public static var greedy: SamplerSettings {
        var s = SamplerSettings()
        s.temperature = 0
        return s
    }
}

/// Chooses tokens from logits. The order follows llama2.c's run.c, with llama.cpp's extra
/// stages in their places: logit bias; repetition, frequency and presence penalties;
/// temperature (greedy at 0); softmax; then either Mirostat v2 or top-k, typical-p, min-p and
/// top-p; and a draw with run.c's xorshift generator. With top-k 0, min-p 0 and the extras off,
/// a seed gives exactly the tokens run.c gives with that seed.
public struct Sampler: Sendable {
    public let settings: SamplerSettings
    private var state: UInt64
    /// Mirostat's running target surprise.
    private var mu: Float
    /// Scratch reused between calls, so sampling does not allocate per token.
    private var scratch: [Float] = []

    public init(_ settings: SamplerSettings) {
        self.settings = settings
        state = settings.seed == 0 ? 0x9E37_79B9_7F4A_7C15 : settings.seed  // xorshift must not start at 0
        mu = 2 * settings.mirostatTau
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
    /// `allowed`, when given, says which tokens a constraint (a grammar) accepts next: the token
    /// is drawn as usual and, only if the constraint rejects it, drawn again among the accepted ones.
    /// Nil when no token can be drawn: the logit bias banned them all, or the logits are not
    /// numbers (NaN, +infinity), which a caller should report (`GenerationState` checks first).
    public mutating func sample(_ logits: ArraySlice<Float>, history: [TokenID] = [], allowed: ((TokenID) -> Bool)? = nil) -> TokenID? {
        var work = scratch
        scratch = []  // so that `work` is the buffer's only owner and is changed in place
        defer { scratch = work }
        work.removeAll(keepingCapacity: true)
        work.append(contentsOf: logits)
        adjust(&work, history: history)
        // Something must be drawable, and NaN or +infinity would poison the softmax.
        var drawable = false
        for value in work {
            if value.isNaN || value == .infinity { return nil }
            if value > -.infinity { drawable = true }
        }
        guard drawable else { return nil }
        guard let allowed else { return draw(&work) }
        let saved = state, savedMu = mu
        var copy = work
        let token = draw(&copy)
        if allowed(token) { return token }
        // Rejected: mask everything the constraint refuses and draw again, from the same coin.
        state = saved
        mu = savedMu
        for i in work.indices where work[i] > -.infinity && !allowed(TokenID(i)) { work[i] = -.infinity }
        if !work.contains(where: { $0 > -.infinity }) { return token }  // nothing allowed: the caller must stop
        return draw(&work)
    }

    /// Logit bias and penalties, in place.
    private func adjust(_ logits: inout [Float], history: [TokenID]) {
        for (token, bias) in settings.logitBias where token >= 0 && Int(token) < logits.count && !bias.isNaN && bias != .infinity {
            logits[Int(token)] += bias
        }
        let penalize = settings.repeatPenalty != 1 || settings.frequencyPenalty != 0 || settings.presencePenalty != 0
        guard penalize, settings.repeatLastN != 0, !history.isEmpty else { return }
        let recent = settings.repeatLastN < 0 ? history[...] : history.suffix(settings.repeatLastN)
        var counts: [TokenID: Int] = [:]
        for token in recent where token >= 0 && Int(token) < logits.count { counts[token, default: 0] += 1 }
        for (token, count) in counts {
            let i = Int(token)
            if settings.repeatPenalty != 1 {
                logits[i] = logits[i] > 0 ? logits[i] / settings.repeatPenalty : logits[i] * settings.repeatPenalty
            }
            logits[i] -= Float(count) * settings.frequencyPenalty + settings.presencePenalty
        }
    }

    /// The indices of the k largest values, largest first (equal values in index order). One pass
    /// that keeps a sorted list of k: most values fall below its last and cost one comparison,
    /// where sorting the whole vocabulary cost milliseconds per token.
    static func largest(_ k: Int, of values: [Float]) -> [Int] {
        var top: [Int] = []
        top.reserveCapacity(k + 1)
        for i in values.indices {
            let v = values[i]
            if top.count == k, v <= values[top[k - 1]] { continue }
            var low = 0, high = top.count
            while low < high {
                let middle = (low + high) / 2
                if values[top[middle]] >= v { low = middle + 1 } else { high = middle }
            }
            top.insert(i, at: low)
            if top.count > k { top.removeLast() }
        }
        return top
    }

    /// Temperature, softmax, truncation and the draw, on adjusted logits (overwritten).
    /// `logits` holds at least one finite value and no NaN or +infinity.
    private mutating func draw(_ logits: inout [Float]) -> TokenID {
        if settings.temperature <= 0 || !settings.temperature.isFinite { return Sampler.argmax(logits) }
        // A temperature so small that a logit divided by it overflows is greedy sampling.
        let largest = logits.max() ?? 0, smallest = logits.lazy.filter { $0 > -.infinity }.min() ?? 0
        guard (largest / settings.temperature).isFinite, (smallest / settings.temperature).isFinite else { return Sampler.argmax(logits) }
        for i in logits.indices { logits[i] /= settings.temperature }
        logits.withUnsafeMutableBufferPointer { Ops.softmax($0.baseAddress!, count: $0.count) }
        let probabilities = logits
        if settings.mirostat == 2 { return mirostatV2(probabilities) }

        var candidates: [Int]? = nil  // nil: the whole vocabulary, in id order
        if settings.topK > 0, settings.topK < probabilities.count {
            candidates = Sampler.largest(settings.topK, of: probabilities)
        }
        if settings.typicalP < 1 {
            candidates = Sampler.typical(probabilities, candidates: candidates ?? probabilities.indices.filter { probabilities[$0] > 0 }, p: settings.typicalP)
        }
        if settings.minP > 0 {
            let best = candidates.map { $0.map { probabilities[$0] }.max() ?? 0 } ?? (probabilities.max() ?? 0)
            let kept = (candidates ?? Array(probabilities.indices)).filter { probabilities[$0] >= settings.minP * best }
            candidates = kept
        }
        let coin = nextFloat()
        if settings.topP > 0, settings.topP < 1 {
            return TokenID(Sampler.sampleTopP(probabilities, candidates: candidates, p: settings.topP, coin: coin))
        }
        guard let candidates else { return TokenID(Sampler.sampleMultinomial(probabilities, coin: coin)) }
        guard !candidates.isEmpty else { return Sampler.argmax(probabilities) }
        let mass = candidates.reduce(Float(0)) { $0 + probabilities[$1] }
        var cdf: Float = 0
        for i in candidates {
            cdf += probabilities[i]
            if coin * mass < cdf { return TokenID(i) }
        }
        return TokenID(candidates.last ?? 0)
    }

    /// Locally typical sampling (Meister et al.): keep the tokens whose surprise -log p is closest
    /// to the entropy, most typical first, until their mass reaches p.
    static func typical(_ probabilities: [Float], candidates: [Int], p: Float) -> [Int] {
        let mass = candidates.reduce(Float(0)) { $0 + probabilities[$1] }
        guard mass > 0 else { return candidates }
        var entropy: Float = 0
        for i in candidates where probabilities[i] > 0 {
            let q = probabilities[i] / mass
            entropy -= q * log(q)
        }
        let ranked = candidates.sorted { a, b in
            abs(-log(probabilities[a] / mass) - entropy) < abs(-log(probabilities[b] / mass) - entropy)
        }
        var kept: [Int] = []
        var cumulative: Float = 0
        for i in ranked {
            kept.append(i)
            cumulative += probabilities[i] / mass
            if cumulative >= p { break }
        }
        return kept
    }

    /// Mirostat v2 (Basu et al.): drop tokens more surprising than mu bits, draw from the rest,
    /// then move mu by eta times the gap between the drawn token's surprise and tau.
    private mutating func mirostatV2(_ probabilities: [Float]) -> TokenID {
        var kept = probabilities.indices.filter { probabilities[$0] > 0 && -log2(probabilities[$0]) <= mu }
        if kept.isEmpty { kept = [Int(Sampler.argmax(probabilities))] }
        kept.sort { probabilities[$0] > probabilities[$1] }
        let mass = kept.reduce(Float(0)) { $0 + probabilities[$1] }
        let coin = nextFloat() * mass
        var cdf: Float = 0
        var chosen = kept[kept.count - 1]
        for i in kept {
            cdf += probabilities[i]
            if coin < cdf {
                chosen = i
                break
            }
        }
        let surprise = -log2(probabilities[chosen] / mass)
        mu -= settings.mirostatEta * (surprise - settings.mirostatTau)
        return TokenID(chosen)
    }

    public static func argmax(_ x: [Float]) -> TokenID {
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
        if kept.isEmpty { return Int(argmax(probabilities)) }
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

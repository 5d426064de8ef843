import Foundation
import CKernels
import Kernels
import Tokenizers

/// Sequences being evaluated: one KV cache per sequence and the scratch buffers of the forward
/// pass. Usually one sequence (a conversation); with `sequences: N`, one batch may mix tokens of
/// N independent sequences, each attending only to its own cache, so every weight matrix is
/// read once for all of them (continuous batching). Buffers are allocated once, for at most
/// `batchSize` tokens per call. Calls from several threads are serialized by a lock.
public final class LlamaContext: @unchecked Sendable {
    private let lock = NSLock()
    public let model: LlamaModel
    public let contextSize: Int
    public let batchSize: Int
    public let threads: Int
    /// The architecture's blocks run in this, with the scratch of one batch.
    private let pass: ForwardPass
    public let kvCache: KVCacheTypes
    /// How many positions of sequence 0's cache are filled.
    public var position: Int { lock.withLock { positions[0] } }
    /// How many positions of each sequence's cache are filled.
    private var positions: [Int]
    private let caches: [KVCache]
    /// Normalized rows for the classifier, and the logits of the last call's selected rows
    /// (reused from call to call, so generating a token allocates nothing).
    private var classifierInput: [Float] = []
    private var lastLogits: [Float] = []
    /// The logits of the last `evaluate` call's selected rows.
    public var logits: [Float] { lock.withLock { lastLogits } }


    /// How cached keys or values are stored, as llama.cpp's `--cache-type-k/-v`.
    public enum KVCacheType: String, Sendable, CaseIterable {
        /// Half precision, llama.cpp's default. Keys and values are widened back to Float for the
        /// products, with Float queries (as llama.cpp's flash attention does for a batch).
        case f16
        /// Full precision.
        case f32
        /// Blocks of 32 8-bit values and a scale: about half of F16's memory.
        case q8_0
        /// Blocks of 32 4-bit values and a scale: about a quarter.
        case q4_0

        /// The ggml type id the kernels know it by.
        var ggmlType: Int32 {
            switch self {
            case .f32: 0
            case .f16: 1
            case .q4_0: 2
            case .q8_0: 8
            }
        }

        /// Bytes of one position's `width` values (whole blocks; see `fits`).
        public func bytes(width: Int) -> Int {
            switch self {
            case .f32: 4 * width
            case .f16: 2 * width
            case .q8_0: (width + 31) / 32 * 34
            case .q4_0: (width + 31) / 32 * 18
            }
        }

        /// Whether values are rounded in blocks (rather than to a float format).
        public var isQuantized: Bool { self == .q8_0 || self == .q4_0 }

        /// Whether heads of `headSize` can be stored: the quantized types need whole blocks of 32.
        public func fits(headSize: Int) -> Bool {
            switch self {
            case .f32, .f16: true
            case .q8_0, .q4_0: headSize % 32 == 0
            }
        }
    }

    /// The types of the keys and of the values in the cache.
    public struct KVCacheTypes: Sendable, Equatable {
        public var keys: KVCacheType
        public var values: KVCacheType
        public init(keys: KVCacheType = .f16, values: KVCacheType = .f16) {
            self.keys = keys
            self.values = values
        }
        /// Keys and values both of one type.
        public init(_ both: KVCacheType) { self.init(keys: both, values: both) }
        public static let f16 = KVCacheTypes()
        public static let f32 = KVCacheTypes(.f32)

        /// Bytes of one position in one layer (keys and values of every KV head).
        public func bytes(kvDimension: Int) -> Int { keys.bytes(width: kvDimension) + values.bytes(width: kvDimension) }

        /// An error for the user when the model's heads cannot be stored so.
        public func check(_ model: LlamaModel) throws(ModelError) {
            let head = model.configuration.headDimension
            for (name, type) in [("keys", keys), ("values", values)] where !type.fits(headSize: head) {
                throw ModelError("a \(type.rawValue) cache stores heads in blocks of 32 values, but this model's heads have \(head) (\(name)); use f16 or f32")
            }
        }

        /// These types, with any the heads cannot be stored in replaced by F16 (callers that
        /// can report an error call `check` first).
        func fitted(headSize: Int) -> KVCacheTypes {
            KVCacheTypes(keys: keys.fits(headSize: headSize) ? keys : .f16, values: values.fits(headSize: headSize) ? values : .f16)
        }

        /// The Walsh-Hadamard rotations llama.cpp applies around a quantized cache (they leave every
        /// score unchanged but spread outlier channels over their block, which rounds far better):
        /// keys and queries in chunks of the largest power of two of at least 64 that divides the
        /// head; values, and the attention output back, in chunks of 64. None for heads that are
        /// not a multiple of 64, or with LLAMA_ATTN_ROT_DISABLE=1 (as llama.cpp).
        public func rotations(headSize: Int) -> (keys: Int?, values: Int?) {
            if let off = ProcessInfo.processInfo.environment["LLAMA_ATTN_ROT_DISABLE"], (Int(off) ?? 0) != 0 { return (nil, nil) }
            guard headSize > 0, headSize % 64 == 0 else { return (nil, nil) }
            var chunk = 64
            while headSize % (2 * chunk) == 0 { chunk *= 2 }
            return (keys.isQuantized ? chunk : nil, values.isQuantized ? 64 : nil)
        }

        /// "q8_0" when both are, else "keys q8_0, values f16".
        public var description: String { keys == values ? keys.rawValue : "keys \(keys.rawValue), values \(values.rawValue)" }
    }

    public init(model: LlamaModel, contextSize: Int? = nil, batchSize: Int = 512, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                kvCache: KVCacheTypes = .f16, sequences: Int = 1) {
        let c = model.configuration
        self.model = model
        let kvCache = kvCache.fitted(headSize: c.headDimension)
        self.kvCache = kvCache
        let limits = Self.contextLimits(model: model, sequences: max(1, sequences), kvCache: kvCache)
        // A file's training context may be anything; what is allocated must fit in memory.
        let contextSize = min(max(1, contextSize ?? limits.default), limits.most)
        self.batchSize = max(1, batchSize)
        self.threads = max(1, threads)
        self.contextSize = contextSize
        let batch = max(1, batchSize)
        let capacities = c.layers.map { KVCache.capacity(contextSize: contextSize, window: $0.slidingWindow, batchSize: batch) }
        caches = (0..<max(1, sequences)).map { _ in
            KVCache(capacities: capacities, kvDimension: c.kvDimension, types: kvCache)
        }
        positions = [Int](repeating: 0, count: max(1, sequences))
        pass = ForwardPass(model: model, contextSize: contextSize, capacity: self.batchSize, caches: caches,
                           kvCache: kvCache, threads: max(1, threads))
    }

    /// Touches every page of the KV caches now, as llama.cpp clears its cache buffers at start.
    /// A server calls this: its memory is then taken at start (where a shortage fails at once,
    /// not under load), stays level as conversations grow, and no step waits on page faults.
    public func commitMemory() {
        lock.withLock { for cache in caches { cache.commit() } }
    }

    /// Bytes the KV caches of this context take.
    public var kvCacheBytes: Int {
        caches.count * model.configuration.kvBytes(contextSize: contextSize, batchSize: batchSize, types: kvCache)
    }

    public var sequenceCount: Int { caches.count }

    /// The context each sequence gets when none is asked for (the model's training context,
    /// capped so that the KV caches take at most half the physical memory), and the most any
    /// request is given (all of the memory).
    public static func contextLimits(model: LlamaModel, sequences: Int = 1, kvCache: KVCacheTypes = .f16) -> (default: Int, most: Int) {
        let perPosition = max(1, model.configuration.kvBytesPerPosition(kvCache))
        let (perAll, overflow) = perPosition.multipliedReportingOverflow(by: max(1, sequences))
        let memory = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        let most = overflow ? 1 : max(1, memory / perAll)
        return (min(model.configuration.contextLength, max(1, most / 2)), most)
    }

    /// A line for the user when the model's training context does not fit and a smaller one is
    /// used by default; nil when it fits.
    public static func defaultContextNotice(model: LlamaModel, sequences: Int = 1, kvCache: KVCacheTypes = .f16) -> String? {
        let limits = contextLimits(model: model, sequences: sequences, kvCache: kvCache)
        guard limits.default < model.configuration.contextLength else { return nil }
        return "note: the model's training context of \(model.configuration.contextLength) tokens does not fit in memory; using \(limits.default) (set -c to choose)"
    }

    /// Forgets everything a sequence (by default the first) holds.
    public func reset(sequence: Int = 0) { lock.withLock { positions[sequence] = 0 } }

    /// Rewinds a sequence to `newPosition` (keeping the cache before it), e.g. to reuse a shared
    /// prompt prefix. Returns the position kept: 0 when a sliding-window layer's ring has
    /// already overwritten what attending from `newPosition` needs.
    @discardableResult
    public func truncate(to newPosition: Int, sequence: Int = 0) -> Int {
        lock.withLock {
            let kept = min(positions[sequence], max(0, newPosition))
            let windows = model.configuration.layers.map(\.slidingWindow)
            positions[sequence] = caches[sequence].canResume(at: kept, filled: positions[sequence], windows: windows) ? kept : 0
            return positions[sequence]
        }
    }

    /// How many positions of a sequence's cache are filled.
    public func position(of sequence: Int) -> Int { lock.withLock { positions[sequence] } }

    /// One token of a mixed batch: which sequence it continues, and whether its logits are wanted.
    public struct BatchEntry: Sendable, Equatable {
        public var sequence: Int
        public var token: TokenID
        public var wantsLogits: Bool
        public init(sequence: Int, token: TokenID, wantsLogits: Bool) {
            self.sequence = sequence
            self.token = token
            self.wantsLogits = wantsLogits
        }
    }

    /// Evaluates tokens of several sequences in one pass: each entry goes at the next position of
    /// its sequence (entries of one sequence in order). Returns the logits of the entries that
    /// want them, one row of `vocabularySize` each, in batch order.
    public func evaluate(batch: [BatchEntry]) throws -> [Float] {
        var out: [Float] = []
        try evaluate(batch: batch, logits: &out)
        return out
    }

    /// `evaluate(batch:)` writing the logits into `out`, whose storage is reused from call to
    /// call (a generation step allocates nothing).
    public func evaluate(batch: [BatchEntry], logits out: inout [Float]) throws {
        lock.lock()
        defer { lock.unlock() }
        let vocab = model.configuration.vocabularySize
        var needed = positions
        for entry in batch {
            guard caches.indices.contains(entry.sequence) else { throw ModelError("sequence \(entry.sequence) is outside the context's \(caches.count)") }
            guard entry.token >= 0, Int(entry.token) < vocab else { throw ModelError("token id \(entry.token) is outside the vocabulary of \(vocab)") }
            needed[entry.sequence] += 1
            guard needed[entry.sequence] <= contextSize else { throw LlamaError.contextFull(needed: needed[entry.sequence], available: contextSize) }
        }
        out.removeAll(keepingCapacity: true)
        var start = 0
        while start < batch.count {
            let end = min(batch.count, start + batchSize)
            var tokens: [TokenID] = []
            var rows: [Int] = []
            for (i, entry) in batch[start..<end].enumerated() {
                pass.sequences[i] = entry.sequence
                pass.positions[i] = positions[entry.sequence]
                positions[entry.sequence] += 1
                tokens.append(entry.token)
                if entry.wantsLogits { rows.append(i) }
            }
            tokens.withUnsafeBufferPointer { forward($0, logitRows: rows) }
            if !rows.isEmpty { out += lastLogits }
            start = end
        }
    }

    /// Evaluates `tokens` after what is already in the cache. Returns the logits of the positions
    /// `logitsFor` selects (rows of `vocabularySize`), in order. Long inputs go through in batches.
    @discardableResult
    public func evaluate(_ tokens: [TokenID], logitsFor: LogitSelection = .last) throws -> [Float] {
        lock.lock()
        defer { lock.unlock() }
        guard positions[0] + tokens.count <= contextSize else {
            throw LlamaError.contextFull(needed: positions[0] + tokens.count, available: contextSize)
        }
        let vocab = model.configuration.vocabularySize
        for token in tokens where token < 0 || Int(token) >= vocab {
            throw ModelError("token id \(token) is outside the vocabulary of \(vocab)")
        }
        var all: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + batchSize)
            let wanted: Range<Int>
            switch logitsFor {
            case .last: wanted = end == tokens.count ? (end - start - 1)..<(end - start) : 0..<0
            case .all: wanted = 0..<(end - start)
            case .from(let first): wanted = min(max(0, first - start), end - start)..<(end - start)
            case .none: wanted = 0..<0
            }
            for t in 0..<(end - start) {
                pass.sequences[t] = 0
                pass.positions[t] = positions[0] + t
            }
            positions[0] += end - start
            tokens.withUnsafeBufferPointer { forward(UnsafeBufferPointer(rebasing: $0[start..<end]), logitRows: Array(wanted)) }
            switch logitsFor {
            case .all, .from: if !wanted.isEmpty { all += lastLogits }
            default: break
            }
            start = end
        }
        switch logitsFor {
        case .last: return lastLogits
        case .all, .from: return all
        case .none: return []
        }
    }

    public enum LogitSelection: Sendable, Equatable {
        case last, all, none
        /// The tokens from this index of the input on (perplexity scores only a chunk's second half).
        case from(Int)
    }

    /// How the hidden states of a text's tokens become one embedding (llama.cpp's `--pooling`).
    public enum Pooling: String, Sendable, CaseIterable {
        /// The average over the tokens.
        case mean
        /// The last token's state (what a causal model has seen the whole text at).
        case last
        /// The first token's state (`cls`).
        case first
    }

    /// The embedding of `tokens`: the hidden states after the final norm (where the classifier
    /// would start), pooled, and scaled to unit length when `normalize`, as llama.cpp's embeddings.
    /// Replaces what `sequence` held.
    public func embedding(of tokens: [TokenID], pooling: Pooling = .mean, normalize: Bool = true, sequence: Int = 0) throws -> [Float] {
        lock.lock()
        defer { lock.unlock() }
        guard !tokens.isEmpty else { throw ModelError("there is nothing to embed; the text has no tokens") }
        guard tokens.count <= contextSize else { throw LlamaError.contextFull(needed: tokens.count, available: contextSize) }
        let c = model.configuration
        for token in tokens where token < 0 || Int(token) >= c.vocabularySize {
            throw ModelError("token id \(token) is outside the vocabulary of \(c.vocabularySize)")
        }
        let dim = c.embeddingLength
        var pooled = [Float](repeating: 0, count: dim)
        var row = [Float](repeating: 0, count: dim)
        positions[sequence] = 0
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + batchSize)
            for t in 0..<(end - start) {
                pass.sequences[t] = sequence
                pass.positions[t] = positions[sequence] + t
            }
            positions[sequence] += end - start
            tokens.withUnsafeBufferPointer { forward(UnsafeBufferPointer(rebasing: $0[start..<end]), logitRows: []) }
            for t in 0..<(end - start) {
                let index = start + t
                switch pooling {
                case .mean: break
                case .last: if index != tokens.count - 1 { continue }
                case .first: if index != 0 { continue }
                }
                model.outputNorm.withUnsafeBufferPointer { w in
                    Ops.rmsNorm(pass.x + t * dim, weight: w.baseAddress!, eps: c.rmsEpsilon, count: dim, into: &row)
                }
                for i in 0..<dim { pooled[i] += row[i] }
            }
            start = end
        }
        if pooling == .mean { for i in 0..<dim { pooled[i] /= Float(tokens.count) } }
        if normalize {
            let norm = pooled.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm > 0 { for i in 0..<dim { pooled[i] /= norm } }
        }
        return pooled
    }

    /// The forward pass over one batch: embeddings, the architecture's blocks, and the
    /// classifier for the rows asked for. Token t goes at position `pass.positions[t]` of
    /// sequence `pass.sequences[t]` (set by the caller).
    private func forward(_ tokens: UnsafeBufferPointer<TokenID>, logitRows: [Int]) {
        let c = model.configuration
        let dim = c.embeddingLength
        pass.count = tokens.count
        for (t, token) in tokens.enumerated() { model.tokenEmbedding.dequantizeRow(Int(token), into: pass.x + t * dim) }
        if c.embeddingScale != 1 {
            for i in 0..<tokens.count * dim { pass.x[i] *= c.embeddingScale }
        }
        let unit = model.architecture
        for (l, block) in model.blocks.enumerated() { unit.block(pass, block, layer: l) }
        guard !logitRows.isEmpty else { return }
        // Final norm and classifier, only for the rows asked for.
        if classifierInput.count != logitRows.count * dim { classifierInput = [Float](repeating: 0, count: logitRows.count * dim) }
        if lastLogits.count != logitRows.count * c.vocabularySize { lastLogits = [Float](repeating: 0, count: logitRows.count * c.vocabularySize) }
        classifierInput.withUnsafeMutableBufferPointer { out in
            model.outputNorm.withUnsafeBufferPointer { w in
                for (i, r) in logitRows.enumerated() {
                    Ops.rmsNorm(pass.x + r * dim, weight: w.baseAddress!, eps: c.rmsEpsilon, count: dim, into: out.baseAddress! + i * dim)
                }
            }
            lastLogits.withUnsafeMutableBufferPointer { logits in
                pass.multiply(model.output, out.baseAddress!, logits.baseAddress!, tokens: logitRows.count)
                if let cap = c.finalLogitSoftCap { Ops.softCap(logits.baseAddress!, count: logits.count, cap: cap) }
            }
        }
    }
}

extension LlamaModel {
    /// How many tokens `text` takes, BOS included where the model adds it.
    public func tokenCount(of text: String) -> Int {
        tokenizer.encode(text, addSpecial: true, parseSpecial: false).count
    }

    /// The embedding of `text` (see `LlamaContext.embedding(of:)`), in a context made for it.
    public func embedding(of text: String, pooling: LlamaContext.Pooling = .mean, normalize: Bool = true) throws -> [Float] {
        try embeddings(of: [text], pooling: pooling, normalize: normalize)[0]
    }

    /// The embeddings of several texts, one context reused for all of them.
    public func embeddings(of texts: [String], pooling: LlamaContext.Pooling = .mean, normalize: Bool = true) throws -> [[Float]] {
        let tokens = texts.map { tokenizer.encode($0, addSpecial: true, parseSpecial: false) }
        let longest = tokens.map(\.count).max() ?? 0
        guard longest <= configuration.contextLength else {
            throw LlamaError.contextFull(needed: longest, available: configuration.contextLength)
        }
        let context = LlamaContext(model: self, contextSize: max(1, longest), batchSize: max(1, min(512, longest)),
                                   threads: SystemInfo.physicalCores)
        return try tokens.map { try context.embedding(of: $0, pooling: pooling, normalize: normalize) }
    }
}

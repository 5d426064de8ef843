import GGUF
import Kernels

/// The shape of a decoder-only transformer: what every architecture shares, plus the
/// particulars an architecture unit sets (soft-caps, sliding windows, per-layer RoPE).
public struct LlamaConfiguration: Codable, Sendable, Equatable {
    /// `general.architecture`: which unit computes the blocks.
    public var architecture: String = "llama"
    public var embeddingLength: Int        // dim
    public var feedForwardLength: Int      // hidden dim of the gated FFN
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int            // < headCount for grouped-query attention
    public var headDimension: Int
    public var vocabularySize: Int
    /// The context length the model was trained with.
    public var contextLength: Int
    public var ropeBase: Float
    public var ropeDimensions: Int
    public var ropeStyle: Ops.RoPEStyle
    public var rmsEpsilon: Float
    /// RoPE scaling of the layers that attend to the whole context (linear, YaRN).
    public var ropeScaling: Ops.RoPEScaling = .none
    /// The name of that scaling, for `llama info` ("none", "linear", "yarn", "longrope").
    public var ropeScalingType: String = "none"
    /// Multiplies query·key; 1/√head unless the architecture says otherwise.
    public var attentionScale: Float
    /// Gemma multiplies the queries before the product (so F16 rounding sees scaled queries).
    public var scalesQueries = false
    /// Scores and final logits pass through `cap * tanh(x / cap)` when set (Gemma 2).
    public var attentionSoftCap: Float?
    public var finalLogitSoftCap: Float?
    /// Token embeddings are multiplied by this before the first block (Gemma: √width).
    public var embeddingScale: Float = 1
    /// Per-layer attention settings, `layerCount` of them.
    public var layers: [LayerSettings]

    /// How one layer attends.
    public struct LayerSettings: Codable, Sendable, Equatable {
        /// Attends only to the last `slidingWindow` positions (its own included); nil: all of them.
        public var slidingWindow: Int?
        public var ropeBase: Float
        public var ropeScaling: Ops.RoPEScaling
        /// False for layers without positional rotation (SmolLM3's every 4th).
        public var rotates = true
    }

    public var qDimension: Int { headCount * headDimension }
    public var kvDimension: Int { kvHeadCount * headDimension }
    /// The widest sliding window, nil when every layer attends to the whole context.
    public var slidingWindow: Int? { layers.compactMap(\.slidingWindow).max() }

    public init(embeddingLength: Int, feedForwardLength: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
                headDimension: Int? = nil, vocabularySize: Int, contextLength: Int, ropeBase: Float = 10_000,
                ropeDimensions: Int? = nil, ropeStyle: Ops.RoPEStyle = .normal, rmsEpsilon: Float = 1e-5) {
        self.embeddingLength = embeddingLength
        self.feedForwardLength = feedForwardLength
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        let head = headDimension ?? embeddingLength / max(headCount, 1)
        self.headDimension = head
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.ropeBase = ropeBase
        self.ropeDimensions = ropeDimensions ?? head
        self.ropeStyle = ropeStyle
        self.rmsEpsilon = rmsEpsilon
        self.attentionScale = 1 / Float(max(head, 1)).squareRoot()
        self.layers = Array(repeating: LayerSettings(slidingWindow: nil, ropeBase: ropeBase, ropeScaling: .none), count: layerCount)
    }

    /// Reads the hyperparameters every architecture shares, then lets the file's architecture
    /// unit read its own keys.
    public init(gguf file: GGUFFile) throws(ModelError) {
        let unit = try Architectures.unit(for: file)
        let keys = MetadataReader(file: file, prefix: unit.name + ".")
        let p = keys.prefix
        let dim = try keys.integer("embedding_length")
        let heads = try keys.integer("attention.head_count")
        let kvHeads = try keys.integer("attention.head_count_kv", default: heads)
        guard heads % kvHeads == 0 else {
            throw ModelError("\(file.path): \(heads) attention heads cannot be grouped over \(kvHeads) KV heads")
        }
        let headDim = try keys.integer("attention.key_length", default: dim / heads)
        guard headDim > 0 else { throw ModelError("\(file.path): embedding_length \(dim) is smaller than the \(heads) attention heads") }
        let valueDim = try keys.integer("attention.value_length", default: headDim)
        guard valueDim == headDim else {
            throw ModelError("\(file.path): metadata \(p)attention.value_length (\(valueDim)) differs from key_length (\(headDim)); swift-llama needs them equal")
        }
        let tokens = file.array("tokenizer.ggml.tokens")?.count
        let vocab = try keys.integer("vocab_size", default: tokens ?? 0, in: 0...Self.maxDimension)
        if let tokens, vocab != tokens {
            throw ModelError("\(file.path): metadata \(p)vocab_size (\(vocab)) disagrees with the \(tokens) tokens of the vocabulary")
        }
        let ropeDimensions = try keys.integer("rope.dimension_count", default: headDim)
        guard ropeDimensions <= headDim, ropeDimensions % 2 == 0 else {
            throw ModelError("\(file.path): metadata \(p)rope.dimension_count (\(ropeDimensions)) must be even and at most the head size (\(headDim))")
        }
        let (qDim, qOverflow) = heads.multipliedReportingOverflow(by: headDim)
        guard !qOverflow, qDim <= Self.maxDimension else { throw ModelError("\(file.path): \(heads) heads of \(headDim) are too large") }
        let contextLength = try keys.integer("context_length", default: 2048, in: 1...(1 << 40))
        let base = try keys.real("rope.freq_base", default: 10_000)
        self.init(embeddingLength: dim, feedForwardLength: try keys.integer("feed_forward_length"),
                  layerCount: try keys.integer("block_count", in: 1...100_000), headCount: heads, kvHeadCount: kvHeads,
                  headDimension: headDim, vocabularySize: vocab, contextLength: contextLength, ropeBase: base,
                  ropeDimensions: ropeDimensions, ropeStyle: unit.ropeStyle,
                  rmsEpsilon: try keys.real("attention.layer_norm_rms_epsilon", default: 1e-5))
        architecture = unit.name
        try readRoPEScaling(keys)
        for l in layers.indices { layers[l].ropeScaling = ropeScaling }
        try unit.configure(&self, keys)
    }

    /// `rope.scaling.*`, as llama.cpp reads them for every architecture.
    private mutating func readRoPEScaling(_ keys: MetadataReader) throws(ModelError) {
        let type = try keys.string("rope.scaling.type", default: "linear", allowed: ["none", "linear", "yarn", "longrope"])
        var factor = try keys.real("rope.scaling.factor", default: 0, positive: false)
        if keys.has("rope.scaling.factor") == false { factor = try keys.real("rope.scale_linear", default: 0, positive: false) }
        guard factor >= 0 else { throw ModelError("\(keys.file.path): metadata \(keys.prefix)rope.scaling.factor must not be negative") }
        let attentionFactor = try keys.real("rope.scaling.attn_factor", default: 1)
        let original = try keys.integer("rope.scaling.original_context_length", default: contextLength, in: 1...(1 << 40))
        switch type {
        case "none":
            ropeScalingType = "none"
        case "yarn" where factor > 1:
            ropeScalingType = "yarn"
            ropeScaling = .yarn(factor: factor, dimensions: ropeDimensions, originalContext: original, base: ropeBase,
                                betaFast: try keys.real("rope.scaling.yarn_beta_fast", default: 32),
                                betaSlow: try keys.real("rope.scaling.yarn_beta_slow", default: 1),
                                attentionFactor: attentionFactor)
        case "longrope":
            ropeScalingType = "longrope"
            ropeScaling = Ops.RoPEScaling(magnitude: attentionFactor)
        default:
            if factor > 0, factor != 1 {
                ropeScalingType = type == "yarn" ? "yarn" : "linear"
                ropeScaling = Ops.RoPEScaling(scale: 1 / factor, magnitude: attentionFactor)
            } else if attentionFactor != 1 {
                ropeScaling = Ops.RoPEScaling(magnitude: attentionFactor)
            }
        }
        scalingOriginalContext = original
    }

    /// The context the RoPE scaling was fitted to (`rope.scaling.original_context_length`).
    public var scalingOriginalContext: Int = 0

    /// The largest width, head count or vocabulary a file may declare (far above any model's).
    public static let maxDimension = 1 << 24

    /// Bytes of KV cache one position of one sequence takes in the layers that keep every
    /// position (sliding-window layers keep a fixed ring; see `kvBytes`).
    public func kvBytesPerPosition(_ types: LlamaContext.KVCacheTypes) -> Int {
        max(1, layers.filter { $0.slidingWindow == nil }.count) * types.bytes(kvDimension: kvDimension)
    }

    /// Bytes of KV cache for one sequence of `contextSize` positions with batches of `batchSize`.
    public func kvBytes(contextSize: Int, batchSize: Int, types: LlamaContext.KVCacheTypes) -> Int {
        layers.reduce(0) { $0 + KVCache.capacity(contextSize: contextSize, window: $1.slidingWindow, batchSize: batchSize) }
            * types.bytes(kvDimension: kvDimension)
    }
}

/// Reads `{arch}.*` keys strictly: present with the wrong type or out of range is an error
/// naming the key, never a silent default (a model file is untrusted input).
public struct MetadataReader {
    public let file: GGUFFile
    public let prefix: String

    public func has(_ key: String) -> Bool { file[prefix + key] != nil }

    public func integer(_ key: String, default fallback: Int? = nil, in range: ClosedRange<Int> = 1...LlamaConfiguration.maxDimension) throws(ModelError) -> Int {
        guard let value = file[prefix + key] else {
            guard let fallback else { throw ModelError("\(file.path): metadata \(prefix + key) is missing") }
            return fallback
        }
        guard let v = value.intValue, range.contains(v) else {
            throw ModelError("\(file.path): metadata \(prefix + key) must be an integer from \(range.lowerBound) to \(range.upperBound), not \(value)")
        }
        return v
    }

    public func real(_ key: String, default fallback: Double, positive: Bool = true) throws(ModelError) -> Float {
        guard let value = file[prefix + key] else { return Float(fallback) }
        guard let v = value.doubleValue, v.isFinite, Float(v).isFinite, !positive || v > 0 else {
            throw ModelError("\(file.path): metadata \(prefix + key) must be a finite\(positive ? " positive" : "") number, not \(value)")
        }
        return Float(v)
    }

    public func string(_ key: String, default fallback: String, allowed: [String]) throws(ModelError) -> String {
        guard let value = file[prefix + key] else { return fallback }
        guard let s = value.stringValue, allowed.contains(s) else {
            throw ModelError("\(file.path): metadata \(prefix + key) must be one of \(allowed.joined(separator: ", ")), not \(value)")
        }
        return s
    }

    /// A per-layer boolean array (such as `attention.sliding_window_pattern`), nil when absent.
    public func flags(_ key: String, count: Int) throws(ModelError) -> [Bool]? {
        guard let value = file[prefix + key] else { return nil }
        guard let array = value.arrayValue, array.count == count else {
            throw ModelError("\(file.path): metadata \(prefix + key) must be an array of \(count) booleans, one per block")
        }
        if case .bool(let flags) = array { return flags }
        guard let ints = array.intValues else {
            throw ModelError("\(file.path): metadata \(prefix + key) must be an array of booleans")
        }
        return ints.map { $0 != 0 }
    }
}


import GGUF
import Kernels

/// The shape of a Llama-architecture model.
public struct LlamaConfiguration: Codable, Sendable, Equatable {
    public var embeddingLength: Int        // dim
    public var feedForwardLength: Int      // hidden dim of the SwiGLU block
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

    public var qDimension: Int { headCount * headDimension }
    public var kvDimension: Int { kvHeadCount * headDimension }

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
    }

    /// Architectures this loader reads, and the rotation each uses. (Mistral, TinyLlama, SmolLM2
    /// and Llama 3 GGUF files all say "llama".)
    static let ropeStyles: [String: Ops.RoPEStyle] = ["llama": .normal]

    /// Reads `{arch}.*` hyperparameters from GGUF metadata.
    public init(gguf file: GGUFFile) throws(ModelError) {
        let arch = file.string("general.architecture") ?? "llama"
        guard let style = LlamaConfiguration.ropeStyles[arch] else {
            throw ModelError("\(file.path): architecture '\(arch)' is not supported (supported: \(LlamaConfiguration.ropeStyles.keys.sorted().joined(separator: ", ")))")
        }
        let p = arch + "."
        // Every key is read strictly: present with the wrong type or out of range is an error
        // naming the key, never a silent default (a model file is untrusted input).
        func integer(_ key: String, default fallback: Int? = nil, in range: ClosedRange<Int> = 1...Self.maxDimension) throws(ModelError) -> Int {
            guard let value = file[p + key] else {
                guard let fallback else { throw ModelError("\(file.path): metadata \(p + key) is missing") }
                return fallback
            }
            guard let v = value.intValue, range.contains(v) else {
                throw ModelError("\(file.path): metadata \(p + key) must be an integer from \(range.lowerBound) to \(range.upperBound), not \(value)")
            }
            return v
        }
        func real(_ key: String, default fallback: Double, positive: Bool = true) throws(ModelError) -> Float {
            guard let value = file[p + key] else { return Float(fallback) }
            guard let v = value.doubleValue, v.isFinite, Float(v).isFinite, !positive || v > 0 else {
                throw ModelError("\(file.path): metadata \(p + key) must be a finite\(positive ? " positive" : "") number, not \(value)")
            }
            return Float(v)
        }
        let dim = try integer("embedding_length")
        let heads = try integer("attention.head_count")
        let kvHeads = try integer("attention.head_count_kv", default: heads)
        guard heads % kvHeads == 0 else {
            throw ModelError("\(file.path): \(heads) attention heads cannot be grouped over \(kvHeads) KV heads")
        }
        let headDim = try integer("attention.key_length", default: dim / heads)
        guard headDim > 0 else { throw ModelError("\(file.path): embedding_length \(dim) is smaller than the \(heads) attention heads") }
        let tokens = file.array("tokenizer.ggml.tokens")?.count
        let vocab = try integer("vocab_size", default: tokens ?? 0, in: 0...Self.maxDimension)
        if let tokens, vocab != tokens {
            throw ModelError("\(file.path): metadata \(p)vocab_size (\(vocab)) disagrees with the \(tokens) tokens of the vocabulary")
        }
        let ropeDimensions = try integer("rope.dimension_count", default: headDim)
        guard ropeDimensions <= headDim, ropeDimensions % 2 == 0 else {
            throw ModelError("\(file.path): metadata \(p)rope.dimension_count (\(ropeDimensions)) must be even and at most the head size (\(headDim))")
        }
        let (qDim, qOverflow) = heads.multipliedReportingOverflow(by: headDim)
        guard !qOverflow, qDim <= Self.maxDimension else { throw ModelError("\(file.path): \(heads) heads of \(headDim) are too large") }
        self.init(embeddingLength: dim, feedForwardLength: try integer("feed_forward_length"),
                  layerCount: try integer("block_count", in: 1...100_000), headCount: heads, kvHeadCount: kvHeads,
                  headDimension: headDim, vocabularySize: vocab,
                  contextLength: try integer("context_length", default: 2048, in: 1...(1 << 40)),
                  ropeBase: try real("rope.freq_base", default: 10_000),
                  ropeDimensions: ropeDimensions, ropeStyle: style,
                  rmsEpsilon: try real("attention.layer_norm_rms_epsilon", default: 1e-5))
    }

    /// The largest width, head count or vocabulary a file may declare (far above any model's).
    static let maxDimension = 1 << 24

    /// Bytes of KV cache one position of one sequence takes.
    public func kvBytesPerPosition(_ type: LlamaContext.KVCacheType) -> Int {
        layerCount * kvDimension * 2 * (type == .f16 ? 2 : 4)
    }
}

public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

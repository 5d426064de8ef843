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
        func required(_ key: String) throws(ModelError) -> Int {
            guard let v = file.int(p + key), v > 0 else { throw ModelError("\(file.path): metadata \(p + key) is missing or not a positive integer") }
            return v
        }
        let dim = try required("embedding_length")
        let heads = try required("attention.head_count")
        let kvHeads = file.int(p + "attention.head_count_kv") ?? heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw ModelError("\(file.path): \(heads) attention heads cannot be grouped over \(kvHeads) KV heads")
        }
        let headDim = file.int(p + "attention.key_length") ?? dim / heads
        let vocab = file.int(p + "vocab_size") ?? file.array("tokenizer.ggml.tokens")?.count ?? 0
        self.init(embeddingLength: dim, feedForwardLength: try required("feed_forward_length"),
                  layerCount: try required("block_count"), headCount: heads, kvHeadCount: kvHeads,
                  headDimension: headDim, vocabularySize: vocab, contextLength: file.int(p + "context_length") ?? 2048,
                  ropeBase: Float(file.double(p + "rope.freq_base") ?? 10_000),
                  ropeDimensions: file.int(p + "rope.dimension_count") ?? headDim, ropeStyle: style,
                  rmsEpsilon: Float(file.double(p + "attention.layer_norm_rms_epsilon") ?? 1e-5))
    }
}

public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

import GGUF
import Tokenizers

/// What a model file is: architecture, hyperparameters, tokenizer and tensors, as `llama info` shows it.
public struct ModelInfo: Codable, Sendable {
    public struct Hyperparameters: Codable, Sendable {
        public var contextLength: Int?
        public var embeddingLength: Int?
        public var blockCount: Int?
        public var feedForwardLength: Int?
        public var headCount: Int?
        public var headCountKV: Int?
        public var ropeFreqBase: Double?
        public var ropeDimensionCount: Int?
        public var rmsEpsilon: Double?
        public var vocabularySize: Int?
    }

    public struct TokenizerSummary: Codable, Sendable {
        public var kind: String
        public var model: String
        public var preTokenizer: String?
        public var size: Int
        public var bos: Int?
        public var eos: Int?
        public var addBOS: Bool
        public var chatTemplate: Bool
    }

    /// What the architecture unit makes of the file: nil when swift-llama cannot run it
    /// (`unsupported` then says why).
    public struct Particulars: Codable, Sendable {
        public var headSize: Int
        public var ropeBase: Double
        public var ropeStyle: String
        public var ropeScaling: String
        public var ropeScalingFactor: Double?
        /// Llama 3.1's `rope_freqs` or Phi-3's LongRoPE factors.
        public var ropeFactors: String?
        public var slidingWindow: Int?
        public var slidingLayers: Int
        public var slidingRopeBase: Double?
        public var layersWithoutRoPE: Int
        public var attentionSoftCap: Double?
        public var finalLogitSoftCap: Double?
        public var embeddingScale: Double?
        /// Bytes of KV cache one token takes, by cache type (f16, q8_0, ...; those the heads allow).
        public var kvBytesPerToken: [String: Int]
    }

    public var particulars: Particulars?
    public var unsupported: String?
    public var path: String
    public var fileSize: Int
    public var ggufVersion: Int
    public var architecture: String?
    public var name: String?
    public var fileType: String?
    public var hyperparameters: Hyperparameters
    public var tokenizer: TokenizerSummary?
    public var tensorCount: Int
    /// Tensor counts by ggml type name.
    public var tensorTypes: [String: Int]
    public var parameterCount: Int

    public init(file: GGUFFile) {
        path = file.path
        fileSize = file.fileSize
        ggufVersion = Int(file.version)
        let arch = file.string("general.architecture")
        architecture = arch
        name = file.string("general.name")
        fileType = file.int("general.file_type").map(ModelInfo.fileTypeName)
        let p = (arch ?? "llama") + "."
        hyperparameters = Hyperparameters(
            contextLength: file.int(p + "context_length"),
            embeddingLength: file.int(p + "embedding_length"),
            blockCount: file.int(p + "block_count"),
            feedForwardLength: file.int(p + "feed_forward_length"),
            headCount: file.int(p + "attention.head_count"),
            headCountKV: file.int(p + "attention.head_count_kv"),
            ropeFreqBase: file.double(p + "rope.freq_base"),
            ropeDimensionCount: file.int(p + "rope.dimension_count"),
            rmsEpsilon: file.double(p + "attention.layer_norm_rms_epsilon"),
            vocabularySize: file.int(p + "vocab_size") ?? file.array("tokenizer.ggml.tokens")?.count)
        if let definition = try? TokenizerDefinition(gguf: file) {
            var pre: String?
            if case .byteLevelBPE(_, let p) = definition.model { pre = file.string("tokenizer.ggml.pre") ?? p.rawValue }
            tokenizer = TokenizerSummary(
                kind: definition.kindDescription, model: file.string("tokenizer.ggml.model") ?? "",
                preTokenizer: pre, size: definition.tokens.count,
                bos: definition.bos.map(Int.init), eos: definition.eos.map(Int.init),
                addBOS: definition.addBOS, chatTemplate: file.string("tokenizer.chat_template") != nil)
        }
        do {
            let c = try LlamaConfiguration(gguf: file)
            let sliding = c.layers.filter { $0.slidingWindow != nil }
            let factors = file.tensor(named: "rope_freqs.weight") != nil ? "rope_freqs (Llama 3.1)"
                : file.tensor(named: "rope_factors_long.weight") != nil ? "LongRoPE short/long" : nil
            particulars = Particulars(
                headSize: c.headDimension, ropeBase: Double(c.ropeBase), ropeStyle: c.ropeStyle.rawValue, ropeScaling: c.ropeScalingType,
                ropeScalingFactor: c.ropeScaling.scale != 1 ? Double(1 / c.ropeScaling.scale) : nil, ropeFactors: factors,
                slidingWindow: c.slidingWindow, slidingLayers: sliding.count,
                slidingRopeBase: sliding.first.flatMap { $0.ropeBase != c.ropeBase ? Double($0.ropeBase) : nil },
                layersWithoutRoPE: c.layers.filter { !$0.rotates }.count,
                attentionSoftCap: c.attentionSoftCap.map(Double.init), finalLogitSoftCap: c.finalLogitSoftCap.map(Double.init),
                embeddingScale: c.embeddingScale != 1 ? Double(c.embeddingScale) : nil,
                kvBytesPerToken: Dictionary(uniqueKeysWithValues: LlamaContext.KVCacheType.allCases.filter { $0.fits(headSize: c.headDimension) }
                    .map { ($0.rawValue, c.kvBytesPerPosition(LlamaContext.KVCacheTypes($0))) }))
        } catch {
            if file.tensors.isEmpty { unsupported = nil } else { unsupported = error.description }
        }
        tensorCount = file.tensors.count
        tensorTypes = file.tensors.reduce(into: [:]) { $0[$1.type.name, default: 0] += 1 }
        parameterCount = file.tensors.reduce(0) { $0 + $1.elementCount }
    }

    /// llama.cpp's `general.file_type` (llama_ftype) names.
    static func fileTypeName(_ value: Int) -> String {
        let names: [Int: String] = [
            0: "all F32", 1: "mostly F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
            10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
            16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
            22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
            28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
            38: "MXFP4_MOE",
        ]
        return names[value] ?? "type \(value)"
    }
}

import Foundation
import GGUF
import Kernels

/// GGUF models of real shapes with random weights, for benchmarks and for checking every
/// architecture against llama.cpp without downloads. The tensors are the architecture unit's own
/// tensor table (required rows, plus the optional ones the shape names), in the types
/// llama-quantize gives each tensor for the target.
public enum RandomModel {
    public struct Shape: Sendable {
        public var architecture: String
        public var dim, hidden, layers, heads, kvHeads, context: Int
        /// `attention.key_length` when it is not dim / heads.
        public var headSize: Int?
        public var ropeBase: Float = 10_000
        /// Optional tensors of the unit's table to write (e.g. `rope_freqs.weight`, `output.weight`).
        public var optional: Set<String> = ["output.weight"]
        /// More `{arch}.*` keys (sliding windows, soft-caps).
        public var extra: [(String, GGUFValue)] = []

        public init(architecture: String, dim: Int, hidden: Int, layers: Int, heads: Int, kvHeads: Int, context: Int,
                    headSize: Int? = nil, ropeBase: Float = 10_000, optional: Set<String> = ["output.weight"],
                    extra: [(String, GGUFValue)] = []) {
            (self.architecture, self.dim, self.hidden, self.layers, self.heads, self.kvHeads, self.context) =
                (architecture, dim, hidden, layers, heads, kvHeads, context)
            (self.headSize, self.ropeBase, self.optional, self.extra) = (headSize, ropeBase, optional, extra)
        }
    }

    /// The shapes of the models people run, from their published configurations.
    public static let shapes: [String: Shape] = [
        "stories110M": Shape(architecture: "llama", dim: 768, hidden: 2048, layers: 12, heads: 12, kvHeads: 12, context: 1024),
        "tinyllama-1.1b": Shape(architecture: "llama", dim: 2048, hidden: 5632, layers: 22, heads: 32, kvHeads: 4, context: 2048),
        "llama2-7b": Shape(architecture: "llama", dim: 4096, hidden: 11008, layers: 32, heads: 32, kvHeads: 32, context: 4096),
        "llama3.2-1b": Shape(architecture: "llama", dim: 2048, hidden: 8192, layers: 16, heads: 32, kvHeads: 8, context: 131_072,
                             ropeBase: 500_000, optional: ["rope_freqs.weight"]),
        "mistral-nemo-12b": Shape(architecture: "llama", dim: 5120, hidden: 14336, layers: 40, heads: 32, kvHeads: 8, context: 131_072,
                                  headSize: 128, ropeBase: 1_000_000),
        "qwen2.5-0.5b": Shape(architecture: "qwen2", dim: 896, hidden: 4864, layers: 24, heads: 14, kvHeads: 2, context: 32768,
                              ropeBase: 1_000_000, optional: []),
        "qwen3-0.6b": Shape(architecture: "qwen3", dim: 1024, hidden: 3072, layers: 28, heads: 16, kvHeads: 8, context: 40960,
                            headSize: 128, ropeBase: 1_000_000, optional: []),
        "gemma2-2b": Shape(architecture: "gemma2", dim: 2304, hidden: 9216, layers: 26, heads: 8, kvHeads: 4, context: 8192,
                           headSize: 256, optional: [],
                           extra: [("attention.sliding_window", .uint32(4096)), ("attn_logit_softcapping", .float32(50)),
                                   ("final_logit_softcapping", .float32(30))]),
        "gemma3-1b": Shape(architecture: "gemma3", dim: 1152, hidden: 6912, layers: 26, heads: 4, kvHeads: 1, context: 32768,
                           headSize: 256, ropeBase: 1_000_000, optional: [], extra: [("attention.sliding_window", .uint32(512))]),
        "phi3-mini": Shape(architecture: "phi3", dim: 3072, hidden: 8192, layers: 32, heads: 32, kvHeads: 32, context: 4096,
                           optional: ["output.weight", "attn_qkv.weight"]),
        "smollm3-3b": Shape(architecture: "smollm3", dim: 2048, hidden: 11008, layers: 36, heads: 16, kvHeads: 4, context: 65536,
                            ropeBase: 5_000_000, optional: []),
    ]

    /// Writes `shape` quantized for `target` to `path`, with the tokenizer keys given (or a
    /// made-up SentencePiece vocabulary of 32000 pieces). `progress` hears each tensor's name.
    public static func write(shape s: Shape, name: String, target: QuantizationPlan.Target, tokenizer: [(key: String, value: GGUFValue)]?,
                             to path: String, progress: (String) -> Void = { _ in }) throws {
        guard let unit = Architectures.unit(named: s.architecture) else { throw ModelError("unknown architecture \(s.architecture)") }
        let tokenizer = tokenizer ?? madeUpVocabulary(size: 32000)
        guard case .array(let tokens)? = tokenizer.first(where: { $0.key == "tokenizer.ggml.tokens" })?.value else {
            throw ModelError("the tokenizer has no token list")
        }
        let head = s.headSize ?? s.dim / s.heads
        var config = LlamaConfiguration(embeddingLength: s.dim, feedForwardLength: s.hidden, layerCount: s.layers, headCount: s.heads,
                                        kvHeadCount: s.kvHeads, headDimension: head, vocabularySize: tokens.count, contextLength: s.context)
        config.architecture = s.architecture
        var writer = GGUFWriter()
        let p = s.architecture + "."
        writer.set("general.architecture", .string(s.architecture))
        writer.set("general.name", .string("random \(name)"))
        writer.set("general.file_type", .uint32(target.fileType))
        writer.set("general.quantization_version", .uint32(2))
        for (key, value) in [("context_length", s.context), ("embedding_length", s.dim), ("feed_forward_length", s.hidden),
                             ("block_count", s.layers), ("attention.head_count", s.heads), ("attention.head_count_kv", s.kvHeads),
                             ("rope.dimension_count", head), ("vocab_size", tokens.count)] {
            writer.set(p + key, .uint32(UInt32(value)))
        }
        if s.headSize != nil {
            writer.set(p + "attention.key_length", .uint32(UInt32(head)))
            writer.set(p + "attention.value_length", .uint32(UInt32(head)))
        }
        writer.set(p + "attention.layer_norm_rms_epsilon", .float32(1e-5))
        writer.set(p + "rope.freq_base", .float32(s.ropeBase))
        for (key, value) in s.extra { writer.set(p + key, value) }
        for (key, value) in tokenizer { writer.set(key, value) }

        // The unit's table: every required tensor, and the optional ones the shape asks for.
        var layout: [(name: String, shape: [Int], vector: Bool)] = []
        func add<Root>(_ specs: [TensorSpec<Root>], prefix: String) {
            for spec in specs where spec.required || s.optional.contains(spec.name) {
                let shape = spec.shape.map { $0.value(config) }
                if case .vector = spec.slot { layout.append((prefix + spec.name, shape, true)) } else { layout.append((prefix + spec.name, shape, false)) }
            }
        }
        add(unit.modelTensors, prefix: "")
        for l in 0..<s.layers { add(unit.blockTensors, prefix: "blk.\(l).") }
        let plan = QuantizationPlan(target: target, tensors: layout.map { ($0.name, $0.shape) }, layers: s.layers)

        // SplitMix64: gigabytes of random bytes without a system call per word.
        var random = SplitMix64(seed: 0x5EED)
        func matrix(rows: Int, columns: Int, type: GGMLType) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: rows * type.rowBytes(elements: columns)!)
            bytes.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for i in words.indices { words[i] = random.next() }
                // Small scales (and offsets) in every block keep activations in range.
                // (K types: the super-block scale is divided by the largest sub-block scale.)
                let unit = 0.5 / Float(columns).squareRoot()
                let (scaleAt, scale): (Int, Float) = switch type {
                case .q6_K: (208, unit / 256)
                case .q4_K, .q5_K: (0, unit / 63)
                default: (0, unit)
                }
                for b in 0..<(raw.count / type.bytesPerBlock) {
                    let block = b * type.bytesPerBlock
                    raw.storeBytes(of: HalfFloat.fromFloat(scale), toByteOffset: block + scaleAt, as: UInt16.self)
                    switch type {
                    case .q4_1, .q5_1: raw.storeBytes(of: HalfFloat.fromFloat(-7.5 * unit), toByteOffset: block + 2, as: UInt16.self)
                    case .q4_K, .q5_K: raw.storeBytes(of: HalfFloat.fromFloat(7.5 * unit / 63), toByteOffset: block + 2, as: UInt16.self)
                    default: break
                    }
                }
            }
            return bytes
        }
        func floats(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
        for (index, tensor) in layout.enumerated() {
            try writer.declareTensor(name: tensor.name, shape: tensor.shape, type: tensor.vector ? .f32 : plan.types[index] ?? .f32)
        }
        try writer.write(to: path) { index in
            let (name, shape, vector) = layout[index]
            if vector {
                if name == "rope_freqs.weight" { return floats(llama31Factors(dimensions: head, base: s.ropeBase)) }
                if name.hasSuffix(".bias") { return floats((0..<shape[0]).map { 0.02 * sinf(Float($0) * 0.37) }) }
                return floats([Float](repeating: 1, count: shape[0]))
            }
            if name.hasSuffix("ffn_down.weight") { progress("layer \(Int(name.split(separator: ".")[1])! + 1)/\(s.layers)") }
            return matrix(rows: shape[1], columns: shape[0], type: plan.types[index] ?? .f32)
        }
    }

    /// Llama 3.1's RoPE frequency divisors (factor 8, low 1, high 4, original context 8192), as
    /// Meta's reference computes them and converters store them in `rope_freqs`.
    public static func llama31Factors(dimensions: Int, base: Float) -> [Float] {
        let factor: Float = 8, low: Float = 1, high: Float = 4, original: Float = 8192
        return stride(from: 0, to: dimensions, by: 2).map { i in
            let wavelength = 2 * Float.pi * powf(base, Float(i) / Float(dimensions))
            if wavelength < original / high { return 1 }
            if wavelength > original / low { return factor }
            let smooth = (original / wavelength - low) / (high - low)
            return 1 / ((1 - smooth) / factor + smooth)
        }
    }

    /// A SentencePiece-style vocabulary shaped like Llama 2's: <unk>, <s>, </s>, the 256 byte
    /// tokens, the space piece, then distinct word pieces with falling scores. Enough for either
    /// runtime to load the model and tokenize text; the pieces mean nothing.
    public static func madeUpVocabulary(size: Int) -> [(key: String, value: GGUFValue)] {
        var tokens = ["<unk>", "<s>", "</s>"] + (0..<256).map { String(format: "<0x%02X>", $0) } + ["\u{2581}"]
        var types: [Int32] = [2, 3, 3] + Array(repeating: 6, count: 256) + [1]  // unknown, control, byte; the space piece
        let letters = Array("etaoinshrdlcumwfgypbvkjxqz")
        var n = 0
        while tokens.count < size {
            var piece = "", k = n
            repeat { piece.append(letters[k % letters.count]); k /= letters.count } while k > 0
            tokens.append((n % 3 == 0 ? "\u{2581}" : "") + piece)
            types.append(1)
            n += 1
        }
        return [("tokenizer.ggml.model", .string("llama")),
                ("tokenizer.ggml.tokens", .array(.string(tokens))),
                ("tokenizer.ggml.scores", .array(.float32(tokens.indices.map { $0 < 259 ? 0 : -Float($0 - 259) }))),
                ("tokenizer.ggml.token_type", .array(.int32(types))),
                ("tokenizer.ggml.bos_token_id", .uint32(1)), ("tokenizer.ggml.eos_token_id", .uint32(2)),
                ("tokenizer.ggml.unknown_token_id", .uint32(0))]
    }
}

/// Steele, Lea and Flood's SplitMix64: a fast, seedable generator for bulk random bytes (and
/// for repeatable random cases in tests).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1330_11EB
        return z ^ (z >> 31)
    }
}

import ArgumentParser
import Foundation
import Llama

/// Writes a Llama-shaped GGUF with random weights, for benchmarks: real shapes without downloads.
struct RandomModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random-model",
        abstract: "Write a GGUF model of a real shape with random weights (for benchmarks).",
        discussion: """
            Shapes: stories110M, tinyllama-1.1b, llama2-7b. Weight matrices are random blocks of the types \
            llama-quantize gives each tensor for TYPE (the output matrix Q6_K, the mixes' extra bits), with \
            scales chosen to keep activations in range; norms are 1. The tokenizer is copied from --vocab \
            (a GGUF with a tokenizer, e.g. the Llama 2 vocabulary); without it, a made-up SentencePiece \
            vocabulary of 32000 pieces (Llama 2's size, with its special and byte tokens) is written.
            """,
        shouldDisplay: false)

    @Argument(help: "stories110M, tinyllama-1.1b or llama2-7b.") var shape: String
    @Argument(help: "A `llama quantize` target: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K_M, Q5_K_M, Q6_K, ...") var type: String
    @Argument(help: "Where to write the model.") var output: String
    @Option(help: "A GGUF file whose tokenizer to copy. Default: a made-up 32000-piece vocabulary.") var vocab: String?

    struct Shape { let dim, hidden, layers, heads, kvHeads, context: Int }
    static let shapes: [String: Shape] = [
        "stories110M": Shape(dim: 768, hidden: 2048, layers: 12, heads: 12, kvHeads: 12, context: 1024),
        "tinyllama-1.1b": Shape(dim: 2048, hidden: 5632, layers: 22, heads: 32, kvHeads: 4, context: 2048),
        "llama2-7b": Shape(dim: 4096, hidden: 11008, layers: 32, heads: 32, kvHeads: 32, context: 4096),
    ]

    func run() throws {
        guard let s = Self.shapes[shape] else { throw ValidationError("unknown shape '\(shape)'") }
        guard let target = QuantizationPlan.target(named: type) else {
            throw ValidationError("type must be one of \(QuantizationPlan.targets.map(\.name).joined(separator: ", "))")
        }
        let tokenizer = try vocab.map { path in
            let source = try GGUFFile(path: path)
            guard source.array("tokenizer.ggml.tokens") != nil else { throw CLIError("\(path) has no tokenizer") }
            return source.metadata.filter { $0.key.hasPrefix("tokenizer.") }
        } ?? Self.madeUpVocabulary(size: 32000)
        guard case .array(let tokens)? = tokenizer.first(where: { $0.key == "tokenizer.ggml.tokens" })?.value else {
            throw CLIError("the tokenizer has no token list")
        }
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("llama"))
        writer.set("general.name", .string("random \(shape)"))
        writer.set("general.file_type", .uint32(target.fileType))
        writer.set("general.quantization_version", .uint32(2))
        for (key, value) in [("context_length", s.context), ("embedding_length", s.dim), ("feed_forward_length", s.hidden),
                             ("block_count", s.layers), ("attention.head_count", s.heads), ("attention.head_count_kv", s.kvHeads),
                             ("rope.dimension_count", s.dim / s.heads), ("vocab_size", tokens.count)] {
            writer.set("llama." + key, .uint32(UInt32(value)))
        }
        writer.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        writer.set("llama.rope.freq_base", .float32(10_000))
        for (key, value) in tokenizer { writer.set(key, value) }

        // SplitMix64: gigabytes of random bytes without a system call per word.
        var random = SplitMix64(seed: 0x5EED)
        // Tensor names and shapes first, so the types follow llama-quantize's rules for the target.
        let kvDim = s.dim / s.heads * s.kvHeads
        var layout: [(name: String, shape: [Int])] = [("token_embd.weight", [s.dim, tokens.count])]
        for l in 0..<s.layers {
            let p = "blk.\(l)."
            layout += [(p + "attn_norm.weight", [s.dim]), (p + "attn_q.weight", [s.dim, s.dim]), (p + "attn_k.weight", [s.dim, kvDim]),
                       (p + "attn_v.weight", [s.dim, kvDim]), (p + "attn_output.weight", [s.dim, s.dim]), (p + "ffn_norm.weight", [s.dim]),
                       (p + "ffn_gate.weight", [s.dim, s.hidden]), (p + "ffn_up.weight", [s.dim, s.hidden]), (p + "ffn_down.weight", [s.hidden, s.dim])]
        }
        layout += [("output_norm.weight", [s.dim]), ("output.weight", [s.dim, tokens.count])]
        let plan = QuantizationPlan(target: target, tensors: layout, layers: s.layers)

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
        // Declare every tensor (norms F32, matrices in the planned types), then write them one at a time.
        for (index, tensor) in layout.enumerated() {
            try writer.declareTensor(name: tensor.name, shape: tensor.shape, type: plan.types[index] ?? .f32)
        }
        let one = Array(withUnsafeBytes(of: Float(1).bitPattern.littleEndian, Array.init))
        try writer.write(to: output) { index in
            let (name, shape) = layout[index]
            guard let type = plan.types[index] else { return Array((0..<shape[0]).map { _ in one }.joined()) }
            if name.hasSuffix("ffn_down.weight") { Console.error("layer \(Int(name.split(separator: ".")[1])! + 1)/\(s.layers)") }
            return matrix(rows: shape[1], columns: shape[0], type: type)
        }
        Console.error("wrote \(output)")
    }
}

extension RandomModelCommand {
    /// A SentencePiece-style vocabulary shaped like Llama 2's: <unk>, <s>, </s>, the 256 byte
    /// tokens, the space piece, then distinct word pieces with falling scores. Enough for either runtime to load
    /// the model and tokenize text; the pieces mean nothing.
    static func madeUpVocabulary(size: Int) -> [(key: String, value: GGUFValue)] {
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

/// Steele, Lea and Flood's SplitMix64: a fast, seedable generator for bulk random bytes.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1330_11EB
        return z ^ (z >> 31)
    }
}

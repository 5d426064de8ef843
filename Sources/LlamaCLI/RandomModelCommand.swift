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
            scales chosen to keep activations in range; norms are 1. The vocabulary is \
            copied from --vocab (a GGUF with a tokenizer, e.g. the Llama 2 vocabulary).
            """,
        shouldDisplay: false)

    @Argument(help: "stories110M, tinyllama-1.1b or llama2-7b.") var shape: String
    @Argument(help: "A `llama quantize` target: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K_M, Q5_K_M, Q6_K, ...") var type: String
    @Argument(help: "Where to write the model.") var output: String
    @Option(help: "A GGUF file whose tokenizer to copy.") var vocab: String

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
        let source = try GGUFFile(path: vocab)
        guard let tokens = source.array("tokenizer.ggml.tokens") else { throw CLIError("\(vocab) has no tokenizer") }
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
        for (key, value) in source.metadata where key.hasPrefix("tokenizer.") { writer.set(key, value) }

        var random = SystemRandomNumberGenerator()
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

        func matrix(_ name: String, rows: Int, columns: Int, type: GGMLType) throws {
            var bytes = [UInt8](repeating: 0, count: rows * type.rowBytes(elements: columns)!)
            bytes.withUnsafeMutableBytes { raw in
                var i = 0
                while i + 8 <= raw.count {
                    raw.storeBytes(of: random.next(), toByteOffset: i, as: UInt64.self)
                    i += 8
                }
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
            try writer.addTensor(name: name, shape: [columns, rows], type: type, data: bytes)
        }
        func norm(_ name: String) throws {
            let one = Array(withUnsafeBytes(of: Float(1).bitPattern.littleEndian, Array.init))
            try writer.addTensor(name: name, shape: [s.dim], type: .f32, data: Array((0..<s.dim).map { _ in one }.joined()))
        }
        var next = 0
        func planned() -> GGMLType {
            defer { next += 1 }
            while plan.types[next] == nil { next += 1 }
            return plan.types[next]!
        }
        try matrix("token_embd.weight", rows: tokens.count, columns: s.dim, type: planned())
        for l in 0..<s.layers {
            let p = "blk.\(l)."
            try norm(p + "attn_norm.weight")
            try matrix(p + "attn_q.weight", rows: s.dim, columns: s.dim, type: planned())
            try matrix(p + "attn_k.weight", rows: kvDim, columns: s.dim, type: planned())
            try matrix(p + "attn_v.weight", rows: kvDim, columns: s.dim, type: planned())
            try matrix(p + "attn_output.weight", rows: s.dim, columns: s.dim, type: planned())
            try norm(p + "ffn_norm.weight")
            try matrix(p + "ffn_gate.weight", rows: s.hidden, columns: s.dim, type: planned())
            try matrix(p + "ffn_up.weight", rows: s.hidden, columns: s.dim, type: planned())
            try matrix(p + "ffn_down.weight", rows: s.dim, columns: s.hidden, type: planned())
            Console.error("layer \(l + 1)/\(s.layers)")
        }
        try norm("output_norm.weight")
        try matrix("output.weight", rows: tokens.count, columns: s.dim, type: planned())
        try writer.write(to: output)
        Console.error("wrote \(output)")
    }
}

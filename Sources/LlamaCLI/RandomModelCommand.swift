import ArgumentParser
import Foundation
import Llama

/// Writes a Llama-shaped GGUF with random weights, for benchmarks: real shapes without downloads.
struct RandomModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random-model",
        abstract: "Write a GGUF model of a real shape with random weights (for benchmarks).",
        discussion: """
            Shapes: stories110M, tinyllama-1.1b, llama2-7b. Weight matrices are random blocks of TYPE (scales \
            chosen to keep activations in range); the output matrix is Q8_0; norms are 1. The vocabulary is \
            copied from --vocab (a GGUF with a tokenizer, e.g. the Llama 2 vocabulary).
            """,
        shouldDisplay: false)

    @Argument(help: "stories110M, tinyllama-1.1b or llama2-7b.") var shape: String
    @Argument(help: "Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0.") var type: String
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
        guard let target = GGMLType(name: type), QuantizeBlocks.supported.contains(target) else {
            throw ValidationError("type must be one of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0")
        }
        let source = try GGUFFile(path: vocab)
        guard let tokens = source.array("tokenizer.ggml.tokens") else { throw CLIError("\(vocab) has no tokenizer") }
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("llama"))
        writer.set("general.name", .string("random \(shape)"))
        writer.set("general.file_type", .uint32(QuantizeCommand.fileTypes[target.name]!))
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
        func matrix(_ name: String, rows: Int, columns: Int, type: GGMLType) throws {
            var bytes = [UInt8](repeating: 0, count: rows * type.rowBytes(elements: columns)!)
            bytes.withUnsafeMutableBytes { raw in
                var i = 0
                while i + 8 <= raw.count {
                    raw.storeBytes(of: random.next(), toByteOffset: i, as: UInt64.self)
                    i += 8
                }
                // Small scales (and offsets) in every block keep activations in range.
                let scale = HalfFloat.fromFloat(0.5 / Float(columns).squareRoot())
                let offset = HalfFloat.fromFloat(-7.5 * 0.5 / Float(columns).squareRoot())
                for b in 0..<(raw.count / type.bytesPerBlock) {
                    raw.storeBytes(of: scale, toByteOffset: b * type.bytesPerBlock, as: UInt16.self)
                    if type == .q4_1 || type == .q5_1 { raw.storeBytes(of: offset, toByteOffset: b * type.bytesPerBlock + 2, as: UInt16.self) }
                }
            }
            try writer.addTensor(name: name, shape: [columns, rows], type: type, data: bytes)
        }
        func norm(_ name: String) throws {
            let one = Array(withUnsafeBytes(of: Float(1).bitPattern.littleEndian, Array.init))
            try writer.addTensor(name: name, shape: [s.dim], type: .f32, data: Array((0..<s.dim).map { _ in one }.joined()))
        }
        let kvDim = s.dim / s.heads * s.kvHeads
        try matrix("token_embd.weight", rows: tokens.count, columns: s.dim, type: target)
        for l in 0..<s.layers {
            let p = "blk.\(l)."
            try norm(p + "attn_norm.weight")
            try matrix(p + "attn_q.weight", rows: s.dim, columns: s.dim, type: target)
            try matrix(p + "attn_k.weight", rows: kvDim, columns: s.dim, type: target)
            try matrix(p + "attn_v.weight", rows: kvDim, columns: s.dim, type: target)
            try matrix(p + "attn_output.weight", rows: s.dim, columns: s.dim, type: target)
            try norm(p + "ffn_norm.weight")
            try matrix(p + "ffn_gate.weight", rows: s.hidden, columns: s.dim, type: target)
            try matrix(p + "ffn_up.weight", rows: s.hidden, columns: s.dim, type: target)
            try matrix(p + "ffn_down.weight", rows: s.dim, columns: s.hidden, type: target)
            Console.error("layer \(l + 1)/\(s.layers)")
        }
        try norm("output_norm.weight")
        try matrix("output.weight", rows: tokens.count, columns: s.dim, type: .q8_0)
        try writer.write(to: output)
        Console.error("wrote \(output)")
    }
}

import ArgumentParser
import Foundation
import Llama

/// Writes a GGUF of a real shape with random weights, for benchmarks: real shapes without downloads.
struct RandomModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random-model",
        abstract: "Write a GGUF model of a real shape with random weights (for benchmarks).",
        discussion: """
            Shapes: \(RandomModel.shapes.keys.sorted().joined(separator: ", ")). The tensors are the \
            architecture's own tensor table; weight matrices are random blocks of the types llama-quantize \
            gives each tensor for TYPE (the output matrix Q6_K, the mixes' extra bits), with scales chosen \
            to keep activations in range; norms are 1, biases small, Llama 3.2's rope_freqs Llama 3.1's \
            factors. The tokenizer is copied from --vocab (a GGUF with a tokenizer); without it, a made-up \
            SentencePiece vocabulary of 32000 pieces (Llama 2's size, with its special and byte tokens).
            """,
        shouldDisplay: false)

    @Argument(help: "A shape, such as tinyllama-1.1b, llama3.2-1b, qwen2.5-0.5b or gemma2-2b.") var shape: String
    @Argument(help: "A `llama quantize` target: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K_M, Q5_K_M, Q6_K, ...") var type: String
    @Argument(help: "Where to write the model.") var output: String
    @Option(help: "A GGUF file whose tokenizer to copy. Default: a made-up 32000-piece vocabulary.") var vocab: String?

    func run() throws {
        guard let s = RandomModel.shapes[shape] else {
            throw ValidationError("unknown shape '\(shape)'; use one of \(RandomModel.shapes.keys.sorted().joined(separator: ", "))")
        }
        guard let target = QuantizationPlan.target(named: type) else {
            throw ValidationError("type must be one of \(QuantizationPlan.targets.map(\.name).joined(separator: ", "))")
        }
        let tokenizer = try vocab.map { path in
            let source = try GGUFFile(path: path)
            guard source.array("tokenizer.ggml.tokens") != nil else { throw CLIError("\(path) has no tokenizer") }
            return source.metadata.filter { $0.key.hasPrefix("tokenizer.") }
        }
        do {
            try RandomModel.write(shape: s, name: shape, target: target, tokenizer: tokenizer, to: output) { Console.error($0) }
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
        Console.error("wrote \(output)")
    }
}

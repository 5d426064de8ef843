import ArgumentParser
import Foundation
import Llama

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize an F32/F16/BF16 GGUF model to a smaller type, as llama.cpp's llama-quantize does.",
        discussion: """
            TYPE is one of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_S, Q4_K_M (or Q4_K), Q5_K_S, Q5_K_M (or Q5_K), \
            Q6_K. Tensor types follow llama.cpp's llama-quantize (without an importance matrix): \
            two-dimensional weight matrices are quantized, norms stay as they are; the output matrix gets \
            Q6_K (Q8_0 when its rows do not split into 256-value blocks); the _M mixes give some \
            attention-value and feed-forward-down matrices Q6_K; K types fall back to Q5_0/Q5_1/Q8_0 for \
            rows that are not a multiple of 256 values. The blocks are the same bytes llama.cpp writes.
            """)

    @Argument(help: ArgumentHelp("The model to quantize (GGUF, F32/F16/BF16 weights).", valueName: "input"))
    var input: String

    @Argument(help: ArgumentHelp("Where to write the quantized model.", valueName: "output"))
    var output: String

    @Argument(help: ArgumentHelp("Target: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M or Q6_K.", valueName: "type"))
    var type: String

    func run() throws {
        guard let target = QuantizationPlan.target(named: type) else {
            let names = QuantizationPlan.targets.map(\.name).joined(separator: ", ")
            throw ValidationError("unknown or unsupported type '\(type)'; use one of \(names)")
        }
        Console.error("writing \(output)")
        do {
            let (before, after) = try Quantizer.quantize(input: input, output: output, target: target) { step in
                Console.error(String(format: "[%4d/%4d] %-32@ %-18@ %@ -> %@, %.2f MiB -> %.2f MiB",
                                     step.index + 1, step.count, step.name, "\(step.shape)", step.from.name, step.to.name,
                                     Double(step.bytesBefore) / 1_048_576, Double(step.bytesAfter) / 1_048_576))
            }
            Console.error(String(format: "model size: %.2f MiB -> %.2f MiB", Double(before) / 1_048_576, Double(after) / 1_048_576))
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
    }
}

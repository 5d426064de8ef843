import ArgumentParser
import Foundation
import Llama

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize an F32/F16/BF16 GGUF model to a smaller type, as llama.cpp's llama-quantize does.",
        discussion: """
            TYPE is one of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1. Two-dimensional weight matrices are quantized; \
            norms and other vectors stay as they are. The output matrix (or the token embedding, when it \
            doubles as the output) is kept at Q8_0 for the 4- and 5-bit types, where llama.cpp uses Q6_K \
            (not available here yet). K-quant types and the Q4_K_M / Q5_K_M mixes are not available yet.
            """)

    @Argument(help: ArgumentHelp("The model to quantize (GGUF, F32/F16/BF16 weights).", valueName: "input"))
    var input: String

    @Argument(help: ArgumentHelp("Where to write the quantized model.", valueName: "output"))
    var output: String

    @Argument(help: ArgumentHelp("Target type: Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1.", valueName: "type"))
    var type: String

    /// llama.cpp's `general.file_type` numbers for the targets.
    static let fileTypes: [String: UInt32] = ["Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9]

    func run() throws {
        guard let target = GGMLType(name: type), let fileType = Self.fileTypes[target.name] else {
            throw ValidationError("unknown or unsupported type '\(type)'; use one of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1")
        }
        guard FileManager.default.fileExists(atPath: input) else { throw CLIError("model file '\(input)' does not exist") }
        let file = try GGUFFile(path: input)
        var writer = GGUFWriter()
        for (key, value) in file.metadata { writer.set(key, value) }
        writer.set("general.file_type", .uint32(fileType))
        writer.set("general.quantization_version", .uint32(2))
        let tiedOutput = file.tensor(named: "output.weight") == nil
        var before = 0, after = 0
        for (index, tensor) in file.tensors.enumerated() {
            let data = file.data(of: tensor)
            var newType = tensor.type
            let quantizable = tensor.name.hasSuffix(".weight") && tensor.shape.count >= 2 && tensor.shape[0] % 32 == 0
            if quantizable {
                guard [GGMLType.f32, .f16, .bf16].contains(tensor.type) else {
                    throw CLIError("tensor '\(tensor.name)' is already \(tensor.type.name); quantize from an F32, F16 or BF16 model")
                }
                let isOutput = tensor.name == "output.weight" || (tiedOutput && tensor.name == "token_embd.weight")
                newType = isOutput && target != .q8_0 ? .q8_0 : target
            }
            var bytes = Array(data)
            if newType != tensor.type {
                var floats = [Float](repeating: 0, count: tensor.elementCount)
                try floats.withUnsafeMutableBufferPointer { try Dequantize.row(tensor.type, data.baseAddress!, $0.baseAddress!, count: tensor.elementCount) }
                bytes = try floats.withUnsafeBufferPointer { try QuantizeBlocks.row($0, to: newType) }
            }
            try writer.addTensor(name: tensor.name, shape: tensor.shape, type: newType, data: bytes)
            before += data.count
            after += bytes.count
            Console.error(String(format: "[%4d/%4d] %-32@ %-18@ %@ -> %@, %.2f MiB -> %.2f MiB",
                                 index + 1, file.tensors.count, tensor.name, "\(tensor.shape)", tensor.type.name, newType.name,
                                 Double(data.count) / 1_048_576, Double(bytes.count) / 1_048_576))
        }
        Console.error("writing \(output)...")
        try writer.write(to: output)
        Console.error(String(format: "model size: %.2f MiB -> %.2f MiB", Double(before) / 1_048_576, Double(after) / 1_048_576))
    }
}

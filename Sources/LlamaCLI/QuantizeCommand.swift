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
        guard FileManager.default.fileExists(atPath: input) else { throw CLIError("model file '\(input)' does not exist") }
        let file = try GGUFFile(path: input)
        var writer = GGUFWriter()
        for (key, value) in file.metadata { writer.set(key, value) }
        writer.set("general.file_type", .uint32(target.fileType))
        writer.set("general.quantization_version", .uint32(2))
        let layers = file.metadata.first { $0.key.hasSuffix(".block_count") }?.value.intValue ?? 0
        let plan = QuantizationPlan(target: target, tensors: file.tensors.map { ($0.name, $0.shape) }, layers: layers)
        // Types first (the index precedes the data), then each tensor is converted as the writer
        // reaches it, so at most one tensor is held in memory.
        var types: [GGMLType] = []
        for (index, tensor) in file.tensors.enumerated() {
            var newType = tensor.type
            if let planned = plan.types[index] {
                guard [GGMLType.f32, .f16, .bf16].contains(tensor.type) else {
                    throw CLIError("tensor '\(tensor.name)' is already \(tensor.type.name); quantize from an F32, F16 or BF16 model")
                }
                newType = planned
            }
            types.append(newType)
            try writer.declareTensor(name: tensor.name, shape: tensor.shape, type: newType)
        }
        var before = 0, after = 0
        Console.error("writing \(output)")
        try writer.write(to: output) { index in
            let tensor = file.tensors[index], newType = types[index]
            let data = file.data(of: tensor)
            var bytes = Array(data)
            if newType != tensor.type {
                var floats = [Float](repeating: 0, count: tensor.elementCount)
                try floats.withUnsafeMutableBufferPointer { try Dequantize.row(tensor.type, data.baseAddress!, $0.baseAddress!, count: tensor.elementCount) }
                if newType == .f16 {
                    bytes = [UInt8](repeating: 0, count: 2 * floats.count)
                    bytes.withUnsafeMutableBytes { raw in
                        for (i, x) in floats.enumerated() { raw.storeBytes(of: HalfFloat.fromFloat(x).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
                    }
                } else {
                    bytes = try floats.withUnsafeBufferPointer { try QuantizeBlocks.row($0, to: newType) }
                }
            }
            before += data.count
            after += bytes.count
            Console.error(String(format: "[%4d/%4d] %-32@ %-18@ %@ -> %@, %.2f MiB -> %.2f MiB",
                                 index + 1, file.tensors.count, tensor.name, "\(tensor.shape)", tensor.type.name, newType.name,
                                 Double(data.count) / 1_048_576, Double(bytes.count) / 1_048_576))
            return bytes
        }
        Console.error(String(format: "model size: %.2f MiB -> %.2f MiB", Double(before) / 1_048_576, Double(after) / 1_048_576))
    }
}

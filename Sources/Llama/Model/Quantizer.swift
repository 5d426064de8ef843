import Foundation
import GGUF
import Kernels

/// llama-quantize without an importance matrix: F32/F16/BF16 weights to a target type, tensor
/// types chosen by `QuantizationPlan`, blocks byte-identical to llama.cpp's. One tensor is held
/// in memory at a time.
public enum Quantizer {
    /// One tensor written: its place, name, shape, types and sizes in bytes.
    public struct Step: Sendable {
        public var index: Int, count: Int
        public var name: String, shape: [Int]
        public var from: GGMLType, to: GGMLType
        public var bytesBefore: Int, bytesAfter: Int
    }

    /// Quantizes `input` into `output`; returns the total bytes of tensor data before and after.
    @discardableResult
    public static func quantize(input: String, output: String, target: QuantizationPlan.Target,
                                progress: (Step) -> Void = { _ in }) throws -> (before: Int, after: Int) {
        guard FileManager.default.fileExists(atPath: input) else { throw ModelError("model file '\(input)' does not exist") }
        let file = try GGUFFile(path: input)
        var writer = GGUFWriter()
        for (key, value) in file.metadata { writer.set(key, value) }
        writer.set("general.file_type", .uint32(target.fileType))
        writer.set("general.quantization_version", .uint32(2))
        let layers = file.metadata.first { $0.key.hasSuffix(".block_count") }?.value.intValue ?? 0
        let plan = QuantizationPlan(target: target, tensors: file.tensors.map { ($0.name, $0.shape) }, layers: layers)
        // Types first (the index precedes the data), then each tensor is converted as the writer
        // reaches it.
        var types: [GGMLType] = []
        for (index, tensor) in file.tensors.enumerated() {
            var newType = tensor.type
            if let planned = plan.types[index] {
                guard [GGMLType.f32, .f16, .bf16].contains(tensor.type) else {
                    throw ModelError("tensor '\(tensor.name)' is already \(tensor.type.name); quantize from an F32, F16 or BF16 model")
                }
                newType = planned
            }
            types.append(newType)
            try writer.declareTensor(name: tensor.name, shape: tensor.shape, type: newType)
        }
        var before = 0, after = 0
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
            progress(Step(index: index, count: file.tensors.count, name: tensor.name, shape: tensor.shape, from: tensor.type, to: newType,
                          bytesBefore: data.count, bytesAfter: bytes.count))
            return bytes
        }
        return (before, after)
    }
}

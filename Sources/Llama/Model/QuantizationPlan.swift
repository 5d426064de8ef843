import GGUF

/// Which type each tensor of a model gets when quantizing to a target, by llama.cpp's rules
/// (`llama-quantize` without an importance matrix) for Llama-shaped models: the output matrix
/// gets Q6_K; the mixes give some attention-value and feed-forward-down matrices more bits;
/// rows that do not split into 256-value blocks fall back to a 32-value type.
public struct QuantizationPlan: Sendable {
    /// A target as `llama quantize` accepts it.
    public struct Target: Sendable, Equatable {
        public let name: String
        /// The type most matrices get.
        public let baseType: GGMLType
        /// llama.cpp's `general.file_type` number.
        public let fileType: UInt32
    }

    public static let targets: [Target] = [
        Target(name: "Q4_0", baseType: .q4_0, fileType: 2), Target(name: "Q4_1", baseType: .q4_1, fileType: 3),
        Target(name: "Q8_0", baseType: .q8_0, fileType: 7), Target(name: "Q5_0", baseType: .q5_0, fileType: 8),
        Target(name: "Q5_1", baseType: .q5_1, fileType: 9), Target(name: "Q4_K_S", baseType: .q4_K, fileType: 14),
        Target(name: "Q4_K_M", baseType: .q4_K, fileType: 15), Target(name: "Q5_K_S", baseType: .q5_K, fileType: 16),
        Target(name: "Q5_K_M", baseType: .q5_K, fileType: 17), Target(name: "Q6_K", baseType: .q6_K, fileType: 18),
    ]

    /// The target named `name`; Q4_K and Q5_K mean the _M mixes, as in llama-quantize.
    public static func target(named name: String) -> Target? {
        let upper = name.uppercased()
        let canonical = upper == "Q4_K" ? "Q4_K_M" : upper == "Q5_K" ? "Q5_K_M" : upper
        return targets.first { $0.name == canonical }
    }

    public let target: Target
    /// The new type of every tensor, in file order (nil: kept as it is).
    public let types: [GGMLType?]

    /// Plans `tensors` (name and shape, in file order) of a model with `layers` blocks.
    public init(target: Target, tensors: [(name: String, shape: [Int])], layers: Int) {
        self.target = target
        let tiedOutput = !tensors.contains { $0.name == "output.weight" }
        let valueCount = tensors.filter { $0.name.hasSuffix("attn_v.weight") }.count
        var valueIndex = 0, downIndex = 0
        let downCount = tensors.filter { $0.name.hasSuffix("ffn_down.weight") }.count
        func moreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }

        types = tensors.map { tensor -> GGMLType? in
            guard tensor.name.hasSuffix(".weight"), tensor.shape.count >= 2 else { return nil }
            let columns = tensor.shape[0]
            var type = target.baseType
            let name = tensor.name
            if name == "output.weight" || (tiedOutput && name == "token_embd.weight") {
                if columns % 256 != 0 { type = .q8_0 } else if type != .q8_0 { type = .q6_K }
            } else if name == "token_embd.weight" {
                // Keeps the base type.
            } else if name.hasSuffix("attn_v.weight") {
                if ["Q4_K_M", "Q5_K_M"].contains(target.name) && moreBits(valueIndex, valueCount) {
                    type = .q6_K
                } else if target.name == "Q4_K_S" && valueIndex < 4 {
                    type = .q5_K
                }
                // Llama 2 70B (80 layers) shares each value matrix among 8 heads: worth more bits.
                if layers == 80 && type == .q4_K { type = .q5_K }
                valueIndex += 1
            } else if name.hasSuffix("ffn_down.weight") {
                if ["Q4_K_M", "Q5_K_M"].contains(target.name) && moreBits(downIndex, downCount) {
                    type = .q6_K
                } else if target.name == "Q4_K_S" && downIndex < downCount / 8 {
                    type = .q5_K
                }
                downIndex += 1
            }
            return Self.fallback(type, columns: columns)
        }
    }

    /// A type whose blocks divide rows of `columns` values: 256-value types fall back to 32-value
    /// ones, and F16 when even 32 does not divide.
    static func fallback(_ type: GGMLType, columns: Int) -> GGMLType {
        var type = type
        if columns % type.blockSize != 0 {
            switch type {
            case .q4_K: type = .q5_0
            case .q5_K: type = .q5_1
            case .q6_K: type = .q8_0
            default: break
            }
        }
        return columns % type.blockSize == 0 ? type : .f16
    }
}

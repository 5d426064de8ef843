/// A ggml tensor element type: how many elements one block holds and how many bytes it takes.
/// Every id that llama.cpp has assigned is known here by name, whether or not the kernels can
/// compute with it yet; those that cannot are reported when a model tries to use them.
public struct GGMLType: Hashable, Sendable, CustomStringConvertible {
    public let id: UInt32
    public let name: String
    /// Elements per block (1 for plain float and integer types).
    public let blockSize: Int
    /// Bytes per block.
    public let bytesPerBlock: Int

    public var description: String { name }
    public var isQuantized: Bool { blockSize > 1 }

    /// Bytes taken by a row of `elements` values, or nil when `elements` is not a whole number of blocks.
    public func rowBytes(elements: Int) -> Int? {
        guard elements % blockSize == 0 else { return nil }
        return elements / blockSize * bytesPerBlock
    }

    private init(_ id: UInt32, _ name: String, _ blockSize: Int, _ bytesPerBlock: Int) {
        self.id = id
        self.name = name
        self.blockSize = blockSize
        self.bytesPerBlock = bytesPerBlock
    }

    public static let f32 = GGMLType(0, "F32", 1, 4)
    public static let f16 = GGMLType(1, "F16", 1, 2)
    public static let q4_0 = GGMLType(2, "Q4_0", 32, 18)
    public static let q4_1 = GGMLType(3, "Q4_1", 32, 20)
    public static let q5_0 = GGMLType(6, "Q5_0", 32, 22)
    public static let q5_1 = GGMLType(7, "Q5_1", 32, 24)
    public static let q8_0 = GGMLType(8, "Q8_0", 32, 34)
    public static let q8_1 = GGMLType(9, "Q8_1", 32, 40)
    public static let q2_K = GGMLType(10, "Q2_K", 256, 84)
    public static let q3_K = GGMLType(11, "Q3_K", 256, 110)
    public static let q4_K = GGMLType(12, "Q4_K", 256, 144)
    public static let q5_K = GGMLType(13, "Q5_K", 256, 176)
    public static let q6_K = GGMLType(14, "Q6_K", 256, 210)
    public static let q8_K = GGMLType(15, "Q8_K", 256, 292)
    public static let bf16 = GGMLType(30, "BF16", 1, 2)

    /// Every type id llama.cpp has assigned (ids 4, 5 and 31-33, 36-38 were retired upstream).
    public static let all: [GGMLType] = [
        f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, q2_K, q3_K, q4_K, q5_K, q6_K, q8_K,
        GGMLType(16, "IQ2_XXS", 256, 66),
        GGMLType(17, "IQ2_XS", 256, 74),
        GGMLType(18, "IQ3_XXS", 256, 98),
        GGMLType(19, "IQ1_S", 256, 50),
        GGMLType(20, "IQ4_NL", 32, 18),
        GGMLType(21, "IQ3_S", 256, 110),
        GGMLType(22, "IQ2_S", 256, 82),
        GGMLType(23, "IQ4_XS", 256, 136),
        GGMLType(24, "I8", 1, 1),
        GGMLType(25, "I16", 1, 2),
        GGMLType(26, "I32", 1, 4),
        GGMLType(27, "I64", 1, 8),
        GGMLType(28, "F64", 1, 8),
        GGMLType(29, "IQ1_M", 256, 56),
        bf16,
        GGMLType(34, "TQ1_0", 256, 54),
        GGMLType(35, "TQ2_0", 256, 66),
        GGMLType(39, "MXFP4", 32, 17),
        GGMLType(40, "NVFP4", 64, 36),
        GGMLType(41, "Q1_0", 128, 18),
    ]

    private static let byID: [UInt32: GGMLType] = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) })
    private static let byName: [String: GGMLType] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    public init?(id: UInt32) {
        guard let known = GGMLType.byID[id] else { return nil }
        self = known
    }

    public init?(name: String) {
        guard let known = GGMLType.byName[name.uppercased()] else { return nil }
        self = known
    }
}

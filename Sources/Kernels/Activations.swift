/// How activations enter a product with each weight type. llama.cpp does not multiply quantized
/// weights with float activations: it first rounds the activations to a partner format (8-bit
/// blocks for the quantized types, half precision for F16), and so do we, so that logits agree.
public enum ActivationFormat: Sendable {
    case f32, f16, bf16
    /// 32 int8 values and a half scale (partner of Q4_0, Q5_0, Q8_0).
    case q8_0
    /// As Q8_0 plus a half holding scale x sum (partner of Q4_1, Q5_1, whose blocks have an offset).
    case q8_1
    /// 256 int8 values and a float scale (partner of the K-quants).
    case q8_K

    public init?(weight: GGMLType) {
        switch weight {
        case .f32: self = .f32
        case .f16: self = .f16
        case .bf16: self = .bf16
        case .q4_0, .q5_0, .q8_0: self = .q8_0
        case .q4_1, .q5_1: self = .q8_1
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: self = .q8_K
        default: return nil
        }
    }

    /// Bytes per block in our in-memory layout, and values per block.
    var block: (values: Int, bytes: Int) {
        switch self {
        case .f32, .f16, .bf16: (1, 4)
        case .q8_0: (32, 34)      // half d, int8 q[32]
        case .q8_1: (32, 36)      // half d, half s, int8 q[32]
        case .q8_K: (256, 260)    // float d, int8 q[256]
        }
    }

    /// Whether products use integer block dot products (otherwise the rounded values are kept as floats).
    var isBlockQuantized: Bool { self == .q8_0 || self == .q8_1 }
}

public enum Quantize {
    /// Rounds to nearest, ties to even (ggml's `nearest_int`).
    @inline(__always) static func roundEven(_ x: Float) -> Int32 { Int32(x.rounded(.toNearestOrEven)) }

    /// One Q8_0 (or, with `withSum`, Q8_1) block from 32 floats, as llama.cpp's x86 quantizer
    /// makes it (scale 127/amax, ties to even).
    static func q8Block(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer, withSum: Bool) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = amax != 0 ? 127 / amax : 0
        let header = withSum ? 4 : 2
        var sum: Int32 = 0
        for j in 0..<32 {
            let q = roundEven(x[j] * id)
            sum += q
            out.storeBytes(of: Int8(truncatingIfNeeded: q), toByteOffset: header + j, as: Int8.self)
        }
        out.storeBytes(of: HalfFloat.fromFloat(d), toByteOffset: 0, as: UInt16.self)
        if withSum { out.storeBytes(of: HalfFloat.fromFloat(Float(sum) * d), toByteOffset: 2, as: UInt16.self) }
    }

    /// 256 floats rounded through a Q8_K block (float scale chosen so the largest magnitude maps to 127), written back as floats.
    static func q8KRound(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        var amax: Float = 0, maxValue: Float = 0
        for j in 0..<256 where abs(x[j]) > amax {
            amax = abs(x[j])
            maxValue = x[j]
        }
        guard amax != 0 else {
            out.update(repeating: 0, count: 256)
            return
        }
        let iscale = -127 / maxValue
        let d = 1 / iscale
        for j in 0..<256 { out[j] = Float(min(127, roundEven(iscale * x[j]))) * d }
    }

    /// Prepares `count` activations (a whole number of blocks) in `format` into `out`:
    /// 8-bit block bytes for Q8_0/Q8_1, rounded floats for the other formats.
    public static func activations(_ x: UnsafePointer<Float>, count: Int, format: ActivationFormat, into out: UnsafeMutableRawPointer) {
        switch format {
        case .f32:
            out.assumingMemoryBound(to: Float.self).update(from: x, count: count)
        case .f16:
            let y = out.assumingMemoryBound(to: Float.self)
            for i in 0..<count { y[i] = HalfFloat.toFloat(HalfFloat.fromFloat(x[i])) }
        case .bf16:
            let y = out.assumingMemoryBound(to: Float.self)
            for i in 0..<count { y[i] = BFloat16.toFloat(BFloat16.fromFloat(x[i])) }
        case .q8_0, .q8_1:
            let bytes = format.block.bytes
            for b in 0..<count / 32 { q8Block(x + 32 * b, out + bytes * b, withSum: format == .q8_1) }
        case .q8_K:
            let y = out.assumingMemoryBound(to: Float.self)
            for b in 0..<count / 256 { q8KRound(x + 256 * b, y + 256 * b) }
        }
    }

    /// Bytes `activations` writes for `count` values.
    public static func preparedBytes(count: Int, format: ActivationFormat) -> Int {
        format.isBlockQuantized ? count / 32 * format.block.bytes : count * 4
    }
}

import CKernels

/// Reference quantizers, as ggml's `quantize_row_*_ref` compute them: the 32-value block types
/// here (tested against the `gguf` package), the K types in C (tested against llama.cpp).
public enum QuantizeBlocks {
    public struct Unsupported: Error, CustomStringConvertible {
        public let type: GGMLType
        public var description: String { "quantizing to \(type.name) is not supported yet (supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)" }
    }

    public static let supported: [GGMLType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// Quantizes `x` (a whole number of `type` blocks) into `type` blocks.
    public static func row(_ x: UnsafeBufferPointer<Float>, to type: GGMLType) throws(Unsupported) -> [UInt8] {
        guard supported.contains(type) else { throw Unsupported(type: type) }
        if type.blockSize == 256 {
            var out = [UInt8](repeating: 0, count: x.count / 256 * type.bytesPerBlock)
            out.withUnsafeMutableBytes { _ = llk_qk_quantize(Int32(type.id), x.baseAddress!, Int64(x.count / 256), $0.baseAddress!) }
            return out
        }
        var out = [UInt8](repeating: 0, count: x.count / 32 * type.bytesPerBlock)
        out.withUnsafeMutableBytes { raw in
            for b in 0..<(x.count / 32) {
                let block = UnsafeBufferPointer(rebasing: x[(32 * b)..<(32 * b + 32)])
                let dst = raw.baseAddress! + b * type.bytesPerBlock
                switch type {
                case .q8_0: q8_0(block, dst)
                case .q4_0: q4_0(block, dst)
                case .q4_1: q4_1(block, dst)
                case .q5_0: q5_0(block, dst)
                default: q5_1(block, dst)
                }
            }
        }
        return out
    }

    static func storeHalf(_ value: Float, _ dst: UnsafeMutableRawPointer, _ offset: Int) {
        dst.storeBytes(of: HalfFloat.fromFloat(value).littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// The value of largest magnitude, with its sign.
    static func signedMax(_ x: UnsafeBufferPointer<Float>) -> Float {
        var best: Float = 0, amax: Float = 0
        for v in x where abs(v) > amax {
            amax = abs(v)
            best = v
        }
        return best
    }

    static func q8_0(_ x: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for v in x { amax = max(amax, abs(v)) }
        let d = amax / 127, id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, dst, 0)
        for j in 0..<32 {
            dst.storeBytes(of: Int8(truncatingIfNeeded: Int32((x[j] * id).rounded(.toNearestOrAwayFromZero))), toByteOffset: 2 + j, as: Int8.self)
        }
    }

    static func q4_0(_ x: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableRawPointer) {
        let d = signedMax(x) / -8, id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, dst, 0)
        for j in 0..<16 {
            let lo = min(15, Int8(truncatingIfNeeded: Int32(x[j] * id + 8.5)))
            let hi = min(15, Int8(truncatingIfNeeded: Int32(x[j + 16] * id + 8.5)))
            dst.storeBytes(of: UInt8(lo) | UInt8(hi) << 4, toByteOffset: 2 + j, as: UInt8.self)
        }
    }

    static func q4_1(_ x: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableRawPointer) {
        var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
        for v in x { lo = min(lo, v); hi = max(hi, v) }
        let d = (hi - lo) / 15, id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, dst, 0)
        storeHalf(lo, dst, 2)
        for j in 0..<16 {
            let a = min(15, Int8(truncatingIfNeeded: Int32((x[j] - lo) * id + 0.5)))
            let b = min(15, Int8(truncatingIfNeeded: Int32((x[j + 16] - lo) * id + 0.5)))
            dst.storeBytes(of: UInt8(a) | UInt8(b) << 4, toByteOffset: 4 + j, as: UInt8.self)
        }
    }

    static func q5_0(_ x: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableRawPointer) {
        let d = signedMax(x) / -16, id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, dst, 0)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let a = UInt8(min(31, Int8(truncatingIfNeeded: Int32(x[j] * id + 16.5))))
            let b = UInt8(min(31, Int8(truncatingIfNeeded: Int32(x[j + 16] * id + 16.5))))
            dst.storeBytes(of: (a & 0xF) | (b & 0xF) << 4, toByteOffset: 6 + j, as: UInt8.self)
            qh |= UInt32(a >> 4) << UInt32(j) | UInt32(b >> 4) << UInt32(j + 16)
        }
        dst.storeBytes(of: qh.littleEndian, toByteOffset: 2, as: UInt32.self)
    }

    static func q5_1(_ x: UnsafeBufferPointer<Float>, _ dst: UnsafeMutableRawPointer) {
        var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
        for v in x { lo = min(lo, v); hi = max(hi, v) }
        let d = (hi - lo) / 31, id: Float = d != 0 ? 1 / d : 0
        storeHalf(d, dst, 0)
        storeHalf(lo, dst, 2)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let a = UInt8(truncatingIfNeeded: Int32((x[j] - lo) * id + 0.5))
            let b = UInt8(truncatingIfNeeded: Int32((x[j + 16] - lo) * id + 0.5))
            dst.storeBytes(of: (a & 0xF) | (b & 0xF) << 4, toByteOffset: 8 + j, as: UInt8.self)
            qh |= UInt32((a >> 4) & 1) << UInt32(j) | UInt32((b >> 4) & 1) << UInt32(j + 16)
        }
        dst.storeBytes(of: qh.littleEndian, toByteOffset: 4, as: UInt32.self)
    }
}

import CKernels
/// Dot products of one weight row with one prepared activation row.
public enum Dot {
    /// Float dot product (vectorized for the running CPU).
    @inline(__always)
    public static func f32(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        llk_dot_f32(a, b, Int64(n))
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        HalfFloat.toFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// Where a 4/5-bit block keeps its parts: `bytes` per block, the half scale at 0, an
    /// optional half minimum at 2, optional fifth bits, the 16 nibble bytes, and the zero point
    /// subtracted from each value (8 for Q4_0, 16 for Q5_0, none for the types with a minimum).
    struct NibbleLayout {
        let bytes: Int
        let nibbles: Int
        let fifthBits: Int?
        let hasMinimum: Bool
        let zero: Int32

        static let q4_0 = NibbleLayout(bytes: 18, nibbles: 2, fifthBits: nil, hasMinimum: false, zero: 8)
        static let q4_1 = NibbleLayout(bytes: 20, nibbles: 4, fifthBits: nil, hasMinimum: true, zero: 0)
        static let q5_0 = NibbleLayout(bytes: 22, nibbles: 6, fifthBits: 2, hasMinimum: false, zero: 16)
        static let q5_1 = NibbleLayout(bytes: 24, nibbles: 8, fifthBits: 4, hasMinimum: true, zero: 0)
    }

    /// 4/5-bit weights x 8-bit activations (Q8_1 blocks, with their half sum, for the types with a
    /// minimum; Q8_0 otherwise): per block, the integer sum of products times both scales, plus
    /// minimum x activation sum.
    static func nibbles(_ layout: NibbleLayout, _ w: UnsafeRawPointer, _ x: UnsafeRawPointer, blocks: Int) -> Float {
        let xBytes = layout.hasMinimum ? 36 : 34, xq = layout.hasMinimum ? 4 : 2
        var sum: Float = 0
        for b in 0..<blocks {
            let wb = w + layout.bytes * b, xb = x + xBytes * b
            let qh = layout.fifthBits.map { wb.loadUnaligned(fromByteOffset: $0, as: UInt32.self).littleEndian } ?? 0
            var sumi: Int32 = 0
            for j in 0..<16 {
                let q = wb.load(fromByteOffset: layout.nibbles + j, as: UInt8.self)
                let h0 = Int32((qh >> UInt32(j)) & 1) << 4, h1 = Int32((qh >> UInt32(j + 16)) & 1) << 4
                sumi += ((Int32(q & 0xF) | h0) - layout.zero) * Int32(xb.load(fromByteOffset: xq + j, as: Int8.self))
                sumi += ((Int32(q >> 4) | h1) - layout.zero) * Int32(xb.load(fromByteOffset: xq + 16 + j, as: Int8.self))
            }
            sum += (half(wb, 0) * half(xb, 0)) * Float(sumi)
            if layout.hasMinimum { sum += half(wb, 2) * half(xb, 2) }
        }
        return sum
    }

    /// Q8_0 weights x Q8_0 activations.
    static func q8_0(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let wb = w + 34 * b, xb = x + 34 * b
            var sumi: Int32 = 0
            for j in 0..<32 {
                sumi += Int32(wb.load(fromByteOffset: 2 + j, as: Int8.self)) * Int32(xb.load(fromByteOffset: 2 + j, as: Int8.self))
            }
            sum += Float(sumi) * (half(wb, 0) * half(xb, 0))
        }
        return sum
    }
}

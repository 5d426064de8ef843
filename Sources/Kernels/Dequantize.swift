/// Scalar reference dequantizers: ggml block formats to Float. Faster kernels are held against these.
///
/// Block layouts (bytes, little-endian, `half` = IEEE binary16):
/// - Q4_0 (32 values, 18 B): half d, 16 B of 4-bit q; x = (q - 8) d. Low nibbles are values 0-15, high 16-31.
/// - Q4_1 (32, 20 B): half d, half m, 16 B of 4-bit q; x = q d + m.
/// - Q5_0 (32, 22 B): half d, 4 B of fifth bits, 16 B of nibbles; x = (q - 16) d.
/// - Q5_1 (32, 24 B): half d, half m, 4 B of fifth bits, 16 B of nibbles; x = q d + m.
/// - Q8_0 (32, 34 B): half d, 32 int8 q; x = q d.
/// - Q2_K (256, 84 B): 16 B of 4-bit scale|min pairs, 64 B of 2-bit q, half d, half dmin.
/// - Q3_K (256, 110 B): 32 B high-bit mask, 64 B of 2-bit q, 12 B of 6-bit scales, half d.
/// - Q4_K (256, 144 B): half d, half dmin, 12 B of 6-bit scales and mins, 128 B of nibbles.
/// - Q5_K (256, 176 B): as Q4_K plus 32 B of fifth bits before the nibbles.
/// - Q6_K (256, 210 B): 128 B low nibbles, 64 B high 2 bits, 16 int8 scales, half d.
public enum Dequantize {
    public struct UnsupportedType: Error, CustomStringConvertible {
        public let type: GGMLType
        public var description: String { "tensor type \(type.name) is not supported yet" }
    }

    /// Whether `row(_:_:_:count:)` can handle this type.
    public static func supports(_ type: GGMLType) -> Bool {
        [GGMLType.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K].contains(type)
    }

    /// Dequantizes `count` values (a whole number of blocks) from `src` into `dst`.
    public static func row(_ type: GGMLType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) throws(UnsupportedType) {
        let blocks = count / type.blockSize
        switch type {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16: for i in 0..<count { dst[i] = HalfFloat.toFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bf16: for i in 0..<count { dst[i] = BFloat16.toFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .q4_0: for b in 0..<blocks { q4_0(src + b * 18, dst + b * 32) }
        case .q4_1: for b in 0..<blocks { q4_1(src + b * 20, dst + b * 32) }
        case .q5_0: for b in 0..<blocks { q5_0(src + b * 22, dst + b * 32) }
        case .q5_1: for b in 0..<blocks { q5_1(src + b * 24, dst + b * 32) }
        case .q8_0: for b in 0..<blocks { q8_0(src + b * 34, dst + b * 32) }
        case .q2_K: for b in 0..<blocks { q2_K(src + b * 84, dst + b * 256) }
        case .q3_K: for b in 0..<blocks { q3_K(src + b * 110, dst + b * 256) }
        case .q4_K: for b in 0..<blocks { q4_K(src + b * 144, dst + b * 256) }
        case .q5_K: for b in 0..<blocks { q5_K(src + b * 176, dst + b * 256) }
        case .q6_K: for b in 0..<blocks { q6_K(src + b * 210, dst + b * 256) }
        default: throw UnsupportedType(type: type)
        }
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        HalfFloat.toFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always) static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
        p.load(fromByteOffset: offset, as: UInt8.self)
    }

    static func q4_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 0)
        for j in 0..<16 {
            let q = byte(b, 2 + j)
            y[j] = Float(Int(q & 0xF) - 8) * d
            y[j + 16] = Float(Int(q >> 4) - 8) * d
        }
    }

    static func q4_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 0), m = half(b, 2)
        for j in 0..<16 {
            let q = byte(b, 4 + j)
            y[j] = Float(q & 0xF) * d + m
            y[j + 16] = Float(q >> 4) * d + m
        }
    }

    static func q5_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 0)
        let qh = b.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
        for j in 0..<16 {
            let q = byte(b, 6 + j)
            let h0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
            let h1 = UInt8(truncatingIfNeeded: qh >> UInt32(j + 12)) & 0x10
            y[j] = Float(Int((q & 0xF) | h0) - 16) * d
            y[j + 16] = Float(Int((q >> 4) | h1) - 16) * d
        }
    }

    static func q5_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 0), m = half(b, 2)
        let qh = b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        for j in 0..<16 {
            let q = byte(b, 8 + j)
            let h0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
            let h1 = UInt8(truncatingIfNeeded: qh >> UInt32(j + 12)) & 0x10
            y[j] = Float((q & 0xF) | h0) * d + m
            y[j + 16] = Float((q >> 4) | h1) * d + m
        }
    }

    static func q8_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 0)
        for j in 0..<32 { y[j] = Float(b.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
    }

    static func q2_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 80), dmin = half(b, 82)
        var out = y, scale = 0
        for half128 in 0..<2 {
            let q = 16 + half128 * 32
            for shift in stride(from: 0, to: 8, by: 2) {
                for group in 0..<2 {
                    let sc = byte(b, scale)
                    scale += 1
                    let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                    for l in 0..<16 {
                        out[l] = dl * Float((byte(b, q + group * 16 + l) >> UInt8(shift)) & 3) - ml
                    }
                    out += 16
                }
            }
        }
    }

    /// The sixteen 6-bit scales of a Q3_K block, unpacked from 12 bytes (a value, so dequantizing
    /// a row allocates nothing).
    static func q3_KScales(_ b: UnsafeRawPointer) -> SIMD16<Int8> {
        let a0 = b.loadUnaligned(fromByteOffset: 96, as: UInt32.self).littleEndian
        let a1 = b.loadUnaligned(fromByteOffset: 100, as: UInt32.self).littleEndian
        let tmp = b.loadUnaligned(fromByteOffset: 104, as: UInt32.self).littleEndian
        let low4: UInt32 = 0x0F0F_0F0F, low2: UInt32 = 0x0303_0303
        let words = SIMD4<UInt32>(
            (a0 & low4) | (((tmp >> 0) & low2) << 4),
            (a1 & low4) | (((tmp >> 2) & low2) << 4),
            ((a0 >> 4) & low4) | (((tmp >> 4) & low2) << 4),
            ((a1 >> 4) & low4) | (((tmp >> 6) & low2) << 4))
        var scales = SIMD16<Int8>()
        for i in 0..<16 { scales[i] = Int8(truncatingIfNeeded: Int(words[i / 4] >> UInt32(8 * (i % 4))) & 0xFF) - 32 }
        return scales
    }

    static func q3_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 108)
        let scales = q3_KScales(b)
        var out = y, scale = 0, mask: UInt8 = 1
        for half128 in 0..<2 {
            let q = 32 + half128 * 32
            for shift in stride(from: 0, to: 8, by: 2) {
                for group in 0..<2 {
                    let dl = d * Float(scales[scale])
                    scale += 1
                    for l in 0..<16 {
                        let low = Int((byte(b, q + group * 16 + l) >> UInt8(shift)) & 3)
                        let high = byte(b, group * 16 + l) & mask != 0 ? 0 : 4
                        out[l] = dl * Float(low - high)
                    }
                    out += 16
                }
                mask <<= 1
            }
        }
    }

    /// Scale and min number `j` (0-7) of a Q4_K/Q5_K block's 12 packed bytes at `s`.
    @inline(__always) static func scaleMinK4(_ j: Int, _ b: UnsafeRawPointer, _ s: Int) -> (Float, Float) {
        if j < 4 {
            return (Float(byte(b, s + j) & 63), Float(byte(b, s + j + 4) & 63))
        }
        let sc = (byte(b, s + j + 4) & 0xF) | ((byte(b, s + j - 4) >> 6) << 4)
        let m = (byte(b, s + j + 4) >> 4) | ((byte(b, s + j) >> 6) << 4)
        return (Float(sc), Float(m))
    }

    static func q4_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 0), dmin = half(b, 2)
        var out = y
        for group in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 * group, b, 4), (sc2, m2) = scaleMinK4(2 * group + 1, b, 4)
            let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
            let q = 16 + group * 32
            for l in 0..<32 { out[l] = d1 * Float(byte(b, q + l) & 0xF) - min1 }
            for l in 0..<32 { out[32 + l] = d2 * Float(byte(b, q + l) >> 4) - min2 }
            out += 64
        }
    }

    static func q5_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 0), dmin = half(b, 2)
        var out = y
        var bit1: UInt8 = 1, bit2: UInt8 = 2
        for group in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 * group, b, 4), (sc2, m2) = scaleMinK4(2 * group + 1, b, 4)
            let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
            let ql = 48 + group * 32
            for l in 0..<32 {
                let high: UInt8 = byte(b, 16 + l) & bit1 != 0 ? 16 : 0
                out[l] = d1 * Float((byte(b, ql + l) & 0xF) + high) - min1
            }
            for l in 0..<32 {
                let high: UInt8 = byte(b, 16 + l) & bit2 != 0 ? 16 : 0
                out[32 + l] = d2 * Float((byte(b, ql + l) >> 4) + high) - min2
            }
            out += 64
            bit1 <<= 2
            bit2 <<= 2
        }
    }

    static func q6_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(b, 208)
        for half128 in 0..<2 {
            let ql = half128 * 64, qh = 128 + half128 * 32, sc = 192 + half128 * 8
            let out = y + half128 * 128
            for l in 0..<32 {
                let s = l / 16
                let h = byte(b, qh + l)
                let q1 = Int((byte(b, ql + l) & 0xF) | ((h & 3) << 4)) - 32
                let q2 = Int((byte(b, ql + l + 32) & 0xF) | (((h >> 2) & 3) << 4)) - 32
                let q3 = Int((byte(b, ql + l) >> 4) | (((h >> 4) & 3) << 4)) - 32
                let q4 = Int((byte(b, ql + l + 32) >> 4) | (((h >> 6) & 3) << 4)) - 32
                out[l] = d * Float(b.load(fromByteOffset: sc + s, as: Int8.self)) * Float(q1)
                out[l + 32] = d * Float(b.load(fromByteOffset: sc + s + 2, as: Int8.self)) * Float(q2)
                out[l + 64] = d * Float(b.load(fromByteOffset: sc + s + 4, as: Int8.self)) * Float(q3)
                out[l + 96] = d * Float(b.load(fromByteOffset: sc + s + 6, as: Int8.self)) * Float(q4)
            }
        }
    }
}

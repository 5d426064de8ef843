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

    /// Q4_0 weights x Q8_0 activations, `blocks` blocks of 32.
    static func q4_0(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let wb = w + 18 * b, xb = x + 34 * b
            var sumi: Int32 = 0
            for j in 0..<16 {
                let q = wb.load(fromByteOffset: 2 + j, as: UInt8.self)
                sumi += (Int32(q & 0xF) - 8) * Int32(xb.load(fromByteOffset: 2 + j, as: Int8.self))
                sumi += (Int32(q >> 4) - 8) * Int32(xb.load(fromByteOffset: 18 + j, as: Int8.self))
            }
            sum += Float(sumi) * (half(wb, 0) * half(xb, 0))
        }
        return sum
    }

    /// Q4_1 weights x Q8_1 activations.
    static func q4_1(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let wb = w + 20 * b, xb = x + 36 * b
            var sumi: Int32 = 0
            for j in 0..<16 {
                let q = wb.load(fromByteOffset: 4 + j, as: UInt8.self)
                sumi += Int32(q & 0xF) * Int32(xb.load(fromByteOffset: 4 + j, as: Int8.self))
                sumi += Int32(q >> 4) * Int32(xb.load(fromByteOffset: 20 + j, as: Int8.self))
            }
            sum += (half(wb, 0) * half(xb, 0)) * Float(sumi) + half(wb, 2) * half(xb, 2)
        }
        return sum
    }

    /// Q5_0 weights x Q8_0 activations.
    static func q5_0(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let wb = w + 22 * b, xb = x + 34 * b
            let qh = wb.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian
            var sumi: Int32 = 0
            for j in 0..<16 {
                let q = wb.load(fromByteOffset: 6 + j, as: UInt8.self)
                let h0 = Int32((qh >> UInt32(j)) & 1) << 4, h1 = Int32((qh >> UInt32(j + 16)) & 1) << 4
                sumi += ((Int32(q & 0xF) | h0) - 16) * Int32(xb.load(fromByteOffset: 2 + j, as: Int8.self))
                sumi += ((Int32(q >> 4) | h1) - 16) * Int32(xb.load(fromByteOffset: 18 + j, as: Int8.self))
            }
            sum += (half(wb, 0) * half(xb, 0)) * Float(sumi)
        }
        return sum
    }

    /// Q5_1 weights x Q8_1 activations.
    static func q5_1(_ w: UnsafeRawPointer, _ x: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let wb = w + 24 * b, xb = x + 36 * b
            let qh = wb.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
            var sumi: Int32 = 0
            for j in 0..<16 {
                let q = wb.load(fromByteOffset: 8 + j, as: UInt8.self)
                let h0 = Int32((qh >> UInt32(j)) & 1) << 4, h1 = Int32((qh >> UInt32(j + 16)) & 1) << 4
                sumi += (Int32(q & 0xF) | h0) * Int32(xb.load(fromByteOffset: 4 + j, as: Int8.self))
                sumi += (Int32(q >> 4) | h1) * Int32(xb.load(fromByteOffset: 20 + j, as: Int8.self))
            }
            sum += (half(wb, 0) * half(xb, 0)) * Float(sumi) + half(wb, 2) * half(xb, 2)
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

/// Conversions between the 16-bit float formats stored in model files and Float.
/// Scalar reference versions; vectorized kernels are held against these.
public enum HalfFloat {
    /// IEEE 754 binary16 bits to Float (exact: every half value is representable).
    @inlinable
    public static func toFloat(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0x1F {  // infinity or NaN
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {  // zero or subnormal: mantissa * 2^-24
            let magnitude = Float(mantissa) * (1.0 / 16_777_216.0)
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// Float to binary16 bits, rounding to nearest even (what ggml and numpy do). Done on the
    /// bits: without F16C the standard library converts through a slow library call.
    @inlinable
    public static func fromFloat(_ value: Float) -> UInt16 {
        let x = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
        let exponent = Int((x >> 23) & 0xFF)
        let mantissa = x & 0x7F_FFFF
        if exponent == 0xFF {  // infinity, or NaN (kept quiet and non-zero)
            return sign | 0x7C00 | (mantissa != 0 ? 0x200 | UInt16(truncatingIfNeeded: mantissa >> 13) : 0)
        }
        let e = exponent - 127 + 15
        if e >= 31 { return sign | 0x7C00 }  // overflow
        if e <= 0 {  // subnormal half, or zero
            if e < -10 { return sign }
            let m = mantissa | 0x80_0000
            let shift = UInt32(14 - e)
            var half = m >> shift
            let rest = m & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rest > halfway || (rest == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(truncatingIfNeeded: half)
        }
        var half = UInt32(e) << 10 | mantissa >> 13
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) { half += 1 }  // a carry may reach infinity, as it should
        return sign | UInt16(truncatingIfNeeded: half)
    }
}

public enum BFloat16 {
    /// bfloat16 bits are the top half of a Float.
    @inlinable
    public static func toFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float to bfloat16 bits, rounding to nearest even; NaN stays a (quiet) NaN.
    @inlinable
    public static func fromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(rounded >> 16)
    }
}

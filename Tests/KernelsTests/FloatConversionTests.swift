import Kernels
import Testing

@Suite struct FloatConversionTests {
    @Test func halfToFloatMatchesTheStandardLibraryForEveryBitPattern() {
        for bits in UInt16.min...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let got = HalfFloat.toFloat(bits)
            if expected.isNaN {
                #expect(got.isNaN, "bits \(bits)")
            } else {
                #expect(got.bitPattern == expected.bitPattern, "bits \(bits)")
            }
        }
    }

    @Test func halfRoundTrip() {
        for bits in UInt16.min...UInt16.max where !Float16(bitPattern: bits).isNaN {
            #expect(HalfFloat.fromFloat(HalfFloat.toFloat(bits)) == bits)
        }
    }

    /// Float to half on the bits agrees with the standard library's conversion, on every half
    /// value, every midpoint between neighbours, and random floats across the whole range.
    @Test func floatToHalfMatchesTheStandardLibrary() {
        var inputs: [Float] = [0, -0, 65504, 65519.996, 65520, 1e-8, -1e-8, 5.96e-8, 2.98e-8, 2.99e-8, .infinity, -.infinity, 1e10]
        for bits in UInt16.min...UInt16.max where !Float16(bitPattern: bits).isNaN {
            let f = Float(Float16(bitPattern: bits))
            inputs.append(f)
            inputs.append(f.nextUp)
            inputs.append(f.nextDown)
            let up = Float(Float16(bitPattern: bits &+ 1))
            if !up.isNaN, up.isFinite, f.isFinite { inputs.append((f + up) / 2) }
        }
        var state: UInt32 = 12345
        for _ in 0..<200_000 {
            state = state &* 1_664_525 &+ 1_013_904_223
            inputs.append(Float(bitPattern: state))
        }
        for x in inputs where !x.isNaN {
            #expect(HalfFloat.fromFloat(x) == Float16(x).bitPattern, "\(x)")
        }
        #expect(Float16(bitPattern: HalfFloat.fromFloat(.nan)).isNaN)
    }

    @Test func bfloat16RoundsToNearestEven() {
        #expect(BFloat16.fromFloat(1.0) == 0x3F80)
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
        #expect(BFloat16.fromFloat(1.0 + 1.0 / 256) == 0x3F80)
        // 1 + 3 * 2^-8 is halfway as well: the even neighbour is 1 + 2^-6.
        #expect(BFloat16.fromFloat(1.0 + 3.0 / 256) == 0x3F82)
        #expect(BFloat16.toFloat(0xC040) == -3.0)
        #expect(BFloat16.fromFloat(.nan) & 0x7FC0 == 0x7FC0)
        for bits in stride(from: 0, through: 0xFFFF, by: 7) where !BFloat16.toFloat(UInt16(bits)).isNaN {
            #expect(BFloat16.fromFloat(BFloat16.toFloat(UInt16(bits))) == UInt16(bits))
        }
    }
}

import CKernels
import Foundation
import Kernels
import Testing

/// Every vectorized C kernel against its scalar twin (the same library, forced to the scalar
/// path), on random data with ragged sizes.
@Suite struct VectorKernelTests {
    static func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
        var g = MatMulTests.Generator(state: seed)
        return (0..<n).map { _ in g.float() }
    }

    /// Runs `body` once on the best path for this CPU and once on the scalar path.
    static func bothPaths<T>(_ body: () -> T) -> (fast: T, scalar: T) {
        let fast = body()
        llk_force_scalar(1)
        defer { llk_force_scalar(0) }
        return (fast, body())
    }

    static func close(_ a: Float, _ b: Float, _ scale: Float) -> Bool { abs(a - b) <= 1e-4 * max(1, scale) }

    @Test func reportsItsPath() {
        let isa = String(cString: llk_isa())
        #expect(["avx512", "avx2", "neon", "scalar"].contains(isa))
        print("vector kernels use: \(isa)")
    }

    @Test(arguments: [1, 7, 16, 33, 100, 577])
    func dot(n: Int) {
        let a = Self.randomFloats(n, seed: 1), b = Self.randomFloats(n, seed: 2)
        let dots = Self.bothPaths { llk_dot_f32(a, b, Int64(n)) }
        #expect(Self.close(dots.fast, dots.scalar, Float(n)))
    }

    @Test(arguments: [(1, 1, 16), (5, 3, 40), (16, 7, 96), (9, 4, 577)])
    func gemm(rows: Int, tokens: Int, k: Int) {
        let w = Self.randomFloats(rows * k, seed: 3), x = Self.randomFloats(tokens * k, seed: 4)
        let out = Self.bothPaths { () -> [Float] in
            var y = [Float](repeating: .nan, count: rows * tokens)
            llk_gemm_f32(w, Int64(rows), x, Int64(tokens), Int64(k), &y, Int64(rows))
            return y
        }
        #expect(!out.fast.contains { $0.isNaN })
        #expect(zip(out.fast, out.scalar).allSatisfy { Self.close($0, $1, Float(k)) })
        // And against the definition.
        for r in 0..<rows {
            for t in 0..<tokens {
                var s: Float = 0
                for c in 0..<k { s += w[r * k + c] * x[t * k + c] }
                #expect(Self.close(out.fast[t * rows + r], s, Float(k)))
            }
        }
    }

    /// SwiGLU against its scalar twin and against the definition in Double, to a few ulp, over
    /// gates from -120 to 120 (where e^-g overflows a float on one side and vanishes on the other).
    /// Below -87 the vector exponential stops at e^-87, so results there are off by up to 1e-36:
    /// nothing beside the residual stream they are added to.
    @Test(arguments: [1, 8, 15, 64, 1001])
    func swiGLU(n: Int) {
        let gates = Self.randomFloats(n, seed: 11).enumerated().map { i, x in i % 5 == 0 ? x * 120 : x * 8 }
        let up = Self.randomFloats(n, seed: 12)
        let out = Self.bothPaths { () -> [Float] in
            var g = gates
            llk_swiglu(&g, up, Int64(n))
            return g
        }
        for i in 0..<n {
            let g = Double(gates[i]), exact = g / (1 + Foundation.exp(-g)) * Double(up[i])
            let tolerance = 4 * Double(Float.ulpOfOne) * abs(exact) + 1e-35
            #expect(abs(Double(out.fast[i]) - exact) <= tolerance, "gate \(gates[i]) up \(up[i])")
            #expect(abs(Double(out.scalar[i]) - exact) <= tolerance, "gate \(gates[i]) up \(up[i])")
        }
    }

    @Test(arguments: ["Q4_0", "Q4_1", "Q8_0"])
    func quantizedRows(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        var g = MatMulTests.Generator(state: UInt64(type.id))
        let columns = 32 * 7
        let row = MatMulTests.weights(type, rows: 1, columns: columns, &g)
        let dequantized = Self.bothPaths { () -> [Float] in
            var out = [Float](repeating: .nan, count: columns)
            _ = llk_dequantize(Int32(type.id), row, &out, 7)
            return out
        }
        #expect(dequantized.fast == dequantized.scalar)
        var swift = [Float](repeating: 0, count: columns)
        try row.withUnsafeBytes { try Dequantize.row(type, $0.baseAddress!, &swift, count: columns) }
        #expect(dequantized.fast == swift)
    }

    /// The integer kernels: 8-bit activation blocks identical on both paths, products equal up to
    /// float summation order. Odd block counts, row counts across the 64-row repacking groups and
    /// the 4-row tiles, token counts across the 4-token tiles, and one token (the row-by-row path).
    @Test(arguments: ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
    func integerProducts(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        var g = MatMulTests.Generator(state: UInt64(type.id) + 40)
        for (rows, blocks, tokens) in [(70, 7, 6), (5, 2, 1), (13, 9, 3), (1, 1, 2)] {
            let columns = 32 * blocks
            let w = MatMulTests.weights(type, rows: rows, columns: columns, &g)
            let x = Self.randomFloats(columns * tokens, seed: UInt64(rows))
            let tokenBytes = Int(llk_q8_token_bytes(Int64(blocks)))
            let prepared = Self.bothPaths { () -> [UInt8] in
                var out = [UInt8](repeating: 0xAA, count: tokenBytes * tokens)
                for t in 0..<tokens {
                    out.withUnsafeMutableBytes { llk_q8_prepare(Int32(type.id), x.withUnsafeBufferPointer { $0.baseAddress! + t * columns }, Int64(blocks), $0.baseAddress! + t * tokenBytes) }
                }
                return out
            }
            #expect(prepared.fast == prepared.scalar)
            var scratch = [UInt8](repeating: 0, count: Int(llk_q8_scratch_bytes(Int64(blocks))))
            let products = Self.bothPaths { () -> [Float] in
                var y = [Float](repeating: .nan, count: rows * tokens)
                llk_q8_matmul(Int32(type.id), w, Int64(w.count / rows), Int64(rows), prepared.fast, Int64(tokens), Int64(blocks), &y, Int64(rows), &scratch)
                return y
            }
            #expect(!products.fast.contains { $0.isNaN })
            let worst = zip(products.fast, products.scalar).map { abs($0 - $1) / max(1, abs($1)) }.max()!
            #expect(worst < 1e-5, "\(typeName) \(rows)x\(blocks) blocks x \(tokens) tokens: relative difference \(worst)")
        }
    }
}

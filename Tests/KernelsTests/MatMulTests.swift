import Foundation
import Kernels
import Testing

/// The fast product (dequantize each weight row once, multiply in float) against llama.cpp's
/// arithmetic (integer block products), and the small ops against their definitions.
@Suite struct MatMulTests {
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        mutating func float() -> Float { Float(next() % 20_000) / 10_000 - 1 }
        mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    }

    /// Random weights of `type`: random bytes, with sane half-precision scales.
    static func weights(_ type: GGMLType, rows: Int, columns: Int, _ g: inout Generator) -> [UInt8] {
        var bytes = (0..<(rows * type.rowBytes(elements: columns)!)).map { _ in g.byte() }
        let scaleOffsets: [Int]
        switch type {
        case .f32: return (0..<(rows * columns)).flatMap { _ in withUnsafeBytes(of: g.float().bitPattern, Array.init) }
        case .f16: return (0..<(rows * columns)).flatMap { _ in withUnsafeBytes(of: HalfFloat.fromFloat(g.float()), Array.init) }
        case .bf16: return (0..<(rows * columns)).flatMap { _ in withUnsafeBytes(of: BFloat16.fromFloat(g.float()), Array.init) }
        case .q4_1, .q5_1, .q4_K, .q5_K: scaleOffsets = [0, 2]
        case .q2_K: scaleOffsets = [80, 82]
        case .q3_K: scaleOffsets = [108]
        case .q6_K: scaleOffsets = [208]
        default: scaleOffsets = [0]
        }
        for block in 0..<(bytes.count / type.bytesPerBlock) {
            for offset in scaleOffsets {
                let half = HalfFloat.fromFloat(g.float() * 0.05)
                bytes[block * type.bytesPerBlock + offset] = UInt8(half & 0xFF)
                bytes[block * type.bytesPerBlock + offset + 1] = UInt8(half >> 8)
            }
        }
        return bytes
    }

    @Test(arguments: ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
    func productMatchesReference(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        var g = Generator(state: UInt64(type.id) + 1)
        // Ragged row counts (not a multiple of the thread split); one token, a few (the few-token
        // kernel) and many (the repacking one).
        for tokens in [1, 3, 6, 9] { try check(type, tokens: tokens, &g) }
    }

    func check(_ type: GGMLType, tokens: Int, _ g: inout Generator) throws {
        let typeName = type.name
        let columns = type.blockSize == 256 ? 512 : 96, rows = 75
        let w = Self.weights(type, rows: rows, columns: columns, &g)
        let x = (0..<(tokens * columns)).map { _ in g.float() }
        var y = [Float](repeating: .nan, count: tokens * rows)
        try w.withUnsafeBytes { raw in
            let matrix = try WeightMatrix(type: type, rows: rows, columns: columns, data: raw.baseAddress!)
            x.withUnsafeBufferPointer { xs in
                y.withUnsafeMutableBufferPointer { MatMul.multiply(matrix, xs.baseAddress!, $0.baseAddress!, tokens: tokens, pool: ThreadPool(threads: 3), workspace: MatMulWorkspace(threads: 3)) }
                for t in 0..<tokens {
                    for r in 0..<rows {
                        let reference = MatMul.multiplyReference(matrix, row: r, xs.baseAddress! + t * columns)
                        let got = y[t * rows + r]
                        #expect(abs(got - reference) <= 2e-4 * max(1, abs(reference)), "\(typeName) \(tokens) tokens, row \(r) token \(t): \(got) vs \(reference)")
                    }
                }
            }
        }
    }

    @Test func ropeModesRotateTheRightPairs() {
        var table = [Float](repeating: 0, count: 8)
        Ops.ropeTable(position: 3, dimensions: 8, base: 10_000, into: &table)
        let x: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        var normal = x, neox = x
        Ops.rope(&normal, heads: 1, headSize: 8, dimensions: 8, table: table, style: .normal)
        Ops.rope(&neox, heads: 1, headSize: 8, dimensions: 8, table: table, style: .neox)
        for i in 0..<4 {
            let theta = 3 * pow(10_000, -2 * Double(i) / 8)
            let (c, s) = (Float(cos(theta)), Float(sin(theta)))
            // normal: pairs (2i, 2i+1); neox: pairs (i, i+4)
            #expect(abs(normal[2 * i] - (x[2 * i] * c - x[2 * i + 1] * s)) < 1e-5)
            #expect(abs(normal[2 * i + 1] - (x[2 * i] * s + x[2 * i + 1] * c)) < 1e-5)
            #expect(abs(neox[i] - (x[i] * c - x[i + 4] * s)) < 1e-5)
            #expect(abs(neox[i + 4] - (x[i] * s + x[i + 4] * c)) < 1e-5)
        }
    }

    @Test func rmsNormAndSoftmax() {
        let x: [Float] = [1, -2, 3, -4]
        var out = [Float](repeating: 0, count: 4)
        Ops.rmsNorm(x, weight: [1, 1, 2, 2], eps: 0, count: 4, into: &out)
        let rms = Float((30.0 / 4).squareRoot())
        #expect(zip(out, [1 / rms, -2 / rms, 6 / rms, -8 / rms]).allSatisfy { abs($0 - $1) < 1e-6 })
        var p: [Float] = [1000, 1001, 999]
        Ops.softmax(&p, count: 3)
        #expect(abs(p.reduce(0, +) - 1) < 1e-6)
        #expect(p[1] > p[0] && p[0] > p[2])
    }
}

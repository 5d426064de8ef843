import CKernels
import Foundation
import Kernels
import Testing

/// The K types: quantizers byte for byte against llama.cpp's own `ggml_quantize_chunk` (golden
/// file from Scripts/make_golden_kquants.py), and the integer products on both code paths.
@Suite struct KQuantTests {
    struct Golden: Decodable {
        let rows: Int
        let columns: Int
        let input: String
        let blocks: [String: String]
    }

    static let golden: Golden = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/kquants.json")
        return try! JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }()

    static var input: [Float] {
        let raw = [UInt8](Data(base64Encoded: golden.input)!)
        return stride(from: 0, to: raw.count, by: 4).map { i in
            Float(bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
        }
    }

    static func blocks(_ typeName: String) throws -> [UInt8] {
        let text = try #require(golden.blocks[typeName])
        return [UInt8](try #require(Data(base64Encoded: text)))
    }

    @Test(arguments: ["Q4_K", "Q5_K", "Q6_K"])
    func bytesMatchLlamaCpp(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let expected = try Self.blocks(typeName)
        let got = try Self.input.withUnsafeBufferPointer { try QuantizeBlocks.row($0, to: type) }
        #expect(got.count == expected.count)
        let rowBytes = expected.count / Self.golden.rows
        for r in 0..<Self.golden.rows {
            let differing = (0..<rowBytes).filter { got[r * rowBytes + $0] != expected[r * rowBytes + $0] }.count
            #expect(differing == 0, "\(typeName) row \(r): \(differing) of \(rowBytes) bytes differ from llama.cpp")
        }
    }

    /// The vector Q8_K rounding writes the scalar loop's bytes: ties to even, a negative or a
    /// positive largest value, two values of equal magnitude and opposite sign (the first sets the
    /// scale), an all-zero block, large and tiny magnitudes.
    @Test func q8KRoundingOnBothPaths() {
        var x = VectorKernelTests.randomFloats(256 * 6, seed: 31)
        for j in 0..<256 { x[j] = Float(j - 127) / 2 }
        x[0] = -127                                              // scale 1: every odd j a tie
        x[256 + 7] = 90; x[256 + 200] = -90                      // equal magnitudes, the positive first
        x[512 + 3] = -90; x[512 + 9] = 90                        // the negative first
        for j in 768..<1024 { x[j] = 0 }                         // a zero block
        for j in 1024..<1280 { x[j] *= 1e30 }
        for j in 1280..<1536 { x[j] *= 1e-30 }
        let bytes = VectorKernelTests.bothPaths { () -> [UInt8] in
            var out = [UInt8](repeating: 0xEE, count: Int(llk_qk_token_bytes(6)))
            llk_qk_prepare(x, 6, &out)
            return out
        }
        #expect(bytes.fast == bytes.scalar)
    }

    /// Q8_K activations in C equal the Swift reference rounding, and the vector products equal
    /// the scalar ones (exact integer sums, so only float rounding of the block totals differs).
    @Test(arguments: ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
    func integerProductsOnBothPaths(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let columns = Self.golden.columns, rows = Self.golden.rows, blocks = columns / 256
        // llama.cpp's blocks where the golden file has them, random ones (sane scales) otherwise.
        var g = MatMulTests.Generator(state: 5)
        let weights = Self.golden.blocks[typeName] != nil ? try Self.blocks(typeName) : MatMulTests.weights(type, rows: rows, columns: columns, &g)
        let tokens = 3
        let x = VectorKernelTests.randomFloats(columns * tokens, seed: 77)
        let tokenBytes = Int(llk_qk_token_bytes(Int64(blocks)))
        var prepared = [UInt8](repeating: 0, count: tokenBytes * tokens)
        prepared.withUnsafeMutableBytes { out in
            x.withUnsafeBufferPointer { for t in 0..<tokens { llk_qk_prepare($0.baseAddress! + t * columns, Int64(blocks), out.baseAddress! + t * tokenBytes) } }
        }
        // The prepared values (scale x int8) are the Swift reference's rounded activations.
        var reference = [Float](repeating: 0, count: columns)
        x.withUnsafeBufferPointer { Quantize.activations($0.baseAddress!, count: columns, format: .q8_K, into: &reference) }
        prepared.withUnsafeBytes { raw in
            for b in 0..<blocks {
                let base = b * 292
                let d = raw.load(fromByteOffset: base, as: Float.self)
                for j in 0..<256 {
                    let q = Float(raw.load(fromByteOffset: base + 36 + j, as: Int8.self))
                    #expect(q * d == reference[256 * b + j])
                }
            }
        }
        let products = VectorKernelTests.bothPaths { () -> [Float] in
            var y = [Float](repeating: .nan, count: rows * tokens)
            llk_qk_matmul(Int32(type.id), weights, Int64(weights.count / rows), Int64(rows), prepared, Int64(tokens), Int64(blocks), &y, Int64(rows))
            return y
        }
        #expect(!products.fast.contains { $0.isNaN })
        let worst = zip(products.fast, products.scalar).map { abs($0 - $1) / max(1, abs($1)) }.max()!
        #expect(worst < 1e-5, "\(typeName): relative difference \(worst)")
    }
}

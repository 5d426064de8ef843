import CKernels
import Foundation
import Kernels
import Testing

/// Rows regrouped 8 at a time (packed.c): the layout converts back byte for byte, and the
/// regrouped products equal the scalar row kernels' on ragged sizes (the same integer sums; only
/// float rounding may differ), for prompts and for the few-token generation path.
@Suite struct RegroupedTests {
    static let types = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
    static let kTypes = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

    /// `rows` rows quantized by the project's quantizer (llama.cpp's reference algorithms), with
    /// a few large values so that scales and offsets vary from block to block; random blocks with
    /// sane scales for the types it does not write (Q2_K, Q3_K: every value and scale bit pattern).
    static func weights(_ type: GGMLType, rows: Int, columns: Int, seed: UInt64) throws -> [UInt8] {
        guard QuantizeBlocks.supported.contains(type) else {
            var g = MatMulTests.Generator(state: seed)
            return MatMulTests.weights(type, rows: rows, columns: columns, &g)
        }
        var x = VectorKernelTests.randomFloats(rows * columns, seed: seed)
        for i in stride(from: 0, to: x.count, by: 37) { x[i] *= 12 }
        var out: [UInt8] = []
        for r in 0..<rows {
            out += try x.withUnsafeBufferPointer { try QuantizeBlocks.row(UnsafeBufferPointer(rebasing: $0[r * columns..<(r + 1) * columns]), to: type) }
        }
        return out
    }

    static func prepare(_ type: GGMLType, _ x: [Float], tokens: Int, blocks: Int) -> (bytes: [UInt8], tokenBytes: Int) {
        let kTypes = type.blockSize == 256, columns = x.count / tokens
        let tokenBytes = Int(kTypes ? llk_qk_token_bytes(Int64(blocks)) : llk_q8_token_bytes(Int64(blocks)))
        var prepared = [UInt8](repeating: 0, count: tokenBytes * tokens)
        prepared.withUnsafeMutableBytes { out in
            x.withUnsafeBufferPointer { x in
                for t in 0..<tokens {
                    let token = x.baseAddress! + t * columns, into = out.baseAddress! + t * tokenBytes
                    if kTypes { llk_qk_prepare(token, Int64(blocks), into) } else { llk_q8_prepare(Int32(type.id), token, Int64(blocks), into) }
                }
            }
        }
        return (prepared, tokenBytes)
    }

    /// `rows` (a multiple of 8) regrouped into groups of 8, back to back.
    static func regroup(_ id: Int32, _ weights: [UInt8], rows: Int, blocks: Int) -> [UInt8] {
        let rowBytes = weights.count / rows, groupBytes = Int(llk_x8_group_bytes(id, Int64(blocks)))
        var packed = [UInt8](repeating: 0, count: groupBytes * rows / 8)
        weights.withUnsafeBytes { w in
            packed.withUnsafeMutableBytes { out in
                for g in 0..<rows / 8 {
                    llk_x8_pack(id, w.baseAddress! + 8 * g * rowBytes, Int64(rowBytes), Int64(blocks), out.baseAddress! + g * groupBytes)
                }
            }
        }
        return packed
    }

    @Test(arguments: types)
    func layoutConvertsBack(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let blocks = 3, columns = blocks * type.blockSize
        let rows = try Self.weights(type, rows: 8, columns: columns, seed: 5)
        let rowBytes = rows.count / 8
        var group = [UInt8](repeating: 0, count: Int(llk_x8_group_bytes(Int32(type.id), Int64(blocks))))
        llk_x8_pack(Int32(type.id), rows, Int64(rowBytes), Int64(blocks), &group)
        var back = [UInt8](repeating: 0, count: rows.count)
        llk_x8_unpack(Int32(type.id), group, Int64(blocks), &back, Int64(rowBytes))
        #expect(back == rows)
        #expect(group.count >= rows.count && group.count <= rows.count + 32 * blocks)
    }

    @Test(arguments: types)
    func productsEqualTheScalarRowKernels(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let id = Int32(type.id)
        // Ragged: odd block counts (the 32-value types pair their blocks), 1..7 tokens (generation
        // with several sequences) and 67 and 130 (prompts, past the 64-token blocks).
        for (blocks, tokens) in [(1, 1), (3, 2), (5, 3), (7, 4), (2, 7), (9, 67), (4, 130)] {
            let columns = blocks * type.blockSize, rows = 24
            let weights = try Self.weights(type, rows: rows, columns: columns, seed: UInt64(blocks * 100 + tokens))
            let rowBytes = weights.count / rows
            var x = VectorKernelTests.randomFloats(columns * tokens, seed: UInt64(tokens))
            for i in stride(from: 0, to: x.count, by: 53) { x[i] *= 20 }
            let (prepared, _) = Self.prepare(type, x, tokens: tokens, blocks: blocks)
            let packed = Self.regroup(id, weights, rows: rows, blocks: blocks)
            var regrouped = [Float](repeating: .nan, count: rows * tokens)
            llk_x8_matmul(id, packed, Int64(rows / 8), prepared, Int64(tokens), Int64(blocks), &regrouped, Int64(rows))
            // The scalar twin: the row kernels on the original rows.
            llk_force_scalar(1)
            var scalar = [Float](repeating: .nan, count: rows * tokens)
            var scratch = [UInt8](repeating: 0, count: Int(llk_q8_scratch_bytes(Int64(blocks))))
            if type.blockSize == 256 {
                llk_qk_matmul(id, weights, Int64(rowBytes), Int64(rows), prepared, Int64(tokens), Int64(blocks), &scalar, Int64(rows))
            } else {
                llk_q8_matmul(id, weights, Int64(rowBytes), Int64(rows), prepared, Int64(tokens), Int64(blocks), &scalar, Int64(rows), &scratch)
            }
            llk_force_scalar(0)
            #expect(!regrouped.contains { $0.isNaN })
            // Relative to the sum of the terms' magnitudes, which bounds the rounding of any order.
            let magnitude = scalar.map(abs).max()!
            let worst = zip(regrouped, scalar).map { abs($0 - $1) }.max()!
            #expect(worst <= 2e-5 * max(1, magnitude), "\(typeName) blocks \(blocks) tokens \(tokens): differs by \(worst) (largest output \(magnitude))")
        }
    }

    /// Regrouped weights and prepared tokens for one product, some activations 30 times larger
    /// than the rest (so that block scales differ).
    static func regroupedProduct(_ type: GGMLType, rows: Int, blocks: Int, tokens: Int, seed: UInt64) throws -> (packed: [UInt8], prepared: [UInt8]) {
        let columns = blocks * type.blockSize
        let weights = try weights(type, rows: rows, columns: columns, seed: seed)
        var x = VectorKernelTests.randomFloats(columns * tokens, seed: seed + 1)
        for i in stride(from: 0, to: x.count, by: 41) { x[i] *= 30 }
        return (regroup(Int32(type.id), weights, rows: rows, blocks: blocks), prepare(type, x, tokens: tokens, blocks: blocks).bytes)
    }

    /// The AVX-512 VNNI prompt tiles (8 or more tokens) give the very numbers of the x8 products:
    /// the same integer sums, the same float steps. Ragged token counts (a partly
    /// filled tile of 16, more than one stack chunk of 256) and block counts.
    @Test(.enabled(if: llk_x8_tiled(12, 8) != 0, "needs AVX-512 VNNI"), arguments: types)
    func vnniTilesEqualTheRegroupedProducts(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let id = Int32(type.id)
        for (blocks, tokens) in [(1, 8), (3, 15), (2, 16), (5, 33), (2, 300)] {
            let rows = 24
            let (packed, prepared) = try Self.regroupedProduct(type, rows: rows, blocks: blocks, tokens: tokens, seed: UInt64(blocks * 10 + tokens))
            #expect(llk_x8_tiled(id, Int64(tokens)) != 0)
            var tiles = [UInt8](repeating: 0xAB, count: Int(llk_x8_tiles_bytes(id, Int64(blocks), Int64(tokens))))
            let count = Int64((tokens + 15) / 16)
            // In two parts, as two threads would.
            llk_x8_interleave(id, prepared, Int64(tokens), Int64(blocks), 0, count / 2, &tiles)
            llk_x8_interleave(id, prepared, Int64(tokens), Int64(blocks), count / 2, count, &tiles)
            var tiled = [Float](repeating: .nan, count: rows * tokens), regrouped = tiled
            llk_x8_matmul_tiled(id, packed, Int64(rows / 8), tiles, Int64(tokens), Int64(blocks), &tiled, Int64(rows))
            llk_x8_matmul(id, packed, Int64(rows / 8), prepared, Int64(tokens), Int64(blocks), &regrouped, Int64(rows))
            #expect(!tiled.contains { $0.isNaN })
            #expect(tiled == regrouped, "\(typeName) blocks \(blocks) tokens \(tokens)")
        }
    }

    /// On AVX-512 VNNI the K types' generation kernel (1 to 4 tokens, two runs per zmm) gives the
    /// very numbers of the AVX2 kernel: the same integer sums, the same float steps.
    @Test(.enabled(if: llk_x8_tiled(12, 8) != 0, "needs AVX-512 VNNI"), arguments: kTypes)
    func vnniGenerationEqualsTheAVX2Products(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let id = Int32(type.id)
        for (blocks, tokens) in [(1, 1), (3, 2), (2, 3), (5, 4), (8, 1)] {
            let rows = 24
            let (packed, prepared) = try Self.regroupedProduct(type, rows: rows, blocks: blocks, tokens: tokens, seed: UInt64(blocks * 7 + tokens + 500))
            var vnni = [Float](repeating: .nan, count: rows * tokens), avx2 = vnni
            llk_x8_matmul(id, packed, Int64(rows / 8), prepared, Int64(tokens), Int64(blocks), &vnni, Int64(rows))
            llk_force_path("avx2")
            llk_x8_matmul(id, packed, Int64(rows / 8), prepared, Int64(tokens), Int64(blocks), &avx2, Int64(rows))
            llk_force_path(nil)
            #expect(!vnni.contains { $0.isNaN })
            #expect(vnni == avx2, "\(typeName) blocks \(blocks) tokens \(tokens)")
        }
    }

    /// On AVX-512 VNNI the row kernels for 2 to 7 tokens (one per sequence in a server's step) give
    /// each token exactly what the one-token kernel gives, so batching never changes a sequence.
    @Test(.enabled(if: llk_x8_tiled(12, 8) != 0, "needs AVX-512 VNNI"), arguments: ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
    func fewTokensEqualOneAtATime(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let id = Int32(type.id)
        for (blocks, tokens) in [(1, 2), (5, 3), (8, 7)] {
            let columns = blocks * type.blockSize, rows = 9
            let weights = try Self.weights(type, rows: rows, columns: columns, seed: UInt64(blocks + tokens))
            let x = VectorKernelTests.randomFloats(columns * tokens, seed: UInt64(blocks * tokens))
            let (prepared, tokenBytes) = Self.prepare(type, x, tokens: tokens, blocks: blocks)
            var scratch = [UInt8](repeating: 0, count: Int(llk_q8_scratch_bytes(Int64(blocks))))
            var together = [Float](repeating: .nan, count: rows * tokens)
            llk_q8_matmul(id, weights, Int64(weights.count / rows), Int64(rows), prepared, Int64(tokens), Int64(blocks), &together, Int64(rows), &scratch)
            for t in 0..<tokens {
                var alone = [Float](repeating: .nan, count: rows)
                prepared.withUnsafeBytes { p in
                    llk_q8_matmul(id, weights, Int64(weights.count / rows), Int64(rows), p.baseAddress! + t * tokenBytes, 1, Int64(blocks), &alone, Int64(rows), &scratch)
                }
                #expect(Array(together[t * rows..<(t + 1) * rows]) == alone, "\(typeName) blocks \(blocks) token \(t) of \(tokens)")
            }
        }
    }

    /// The model-level path: a matrix regrouped (where this CPU path prefers it) multiplies as the
    /// mapped one, with rows past the last group (here 3) computed from the original rows.
    @Test(arguments: types, [5, 20])
    func regroupedMatrixMultipliesAsTheOriginal(typeName: String, tokens: Int) throws {
        let type = try #require(GGMLType(name: typeName))
        let rows = 27, columns = 2 * type.blockSize
        let weights = try Self.weights(type, rows: rows, columns: columns, seed: 9)
        let x = VectorKernelTests.randomFloats(columns * tokens, seed: 10)
        let pool = ThreadPool(threads: 2)
        try weights.withUnsafeBytes { raw in
            let matrix = try WeightMatrix(type: type, rows: rows, columns: columns, data: raw.baseAddress!)
            let regrouped = matrix.regrouped(releasingMappedPages: false)
            #expect((regrouped.groups != nil) == (llk_x8_preferred(Int32(type.id)) != 0))
            var a = [Float](repeating: 0, count: rows * tokens), b = a
            MatMul.multiply(matrix, x, &a, tokens: tokens, pool: pool, workspace: MatMulWorkspace(threads: 2))
            MatMul.multiply(regrouped, x, &b, tokens: tokens, pool: pool, workspace: MatMulWorkspace(threads: 2))
            let magnitude = a.map(abs).max()!
            #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 2e-5 * max(1, magnitude) })
            // Rows looked up in a regrouped matrix (a tied classifier's embeddings) are the rows.
            var original = [Float](repeating: 0, count: columns), lookedUp = original
            for r in 0..<rows {
                matrix.dequantizeRow(r, into: &original)
                regrouped.dequantizeRow(r, into: &lookedUp)
                #expect(original == lookedUp, "row \(r)")
            }
        }
    }
}

import CKernels
import Foundation
import Kernels
import Testing

/// The grouped attention kernel (attention.c) against attention written out plainly: per head,
/// scaled dot products with the widened F16 keys, a softmax, weights rounded to F16, the weighted
/// sum of the values. Ragged head sizes and lengths, and a ring cache (positions past the
/// capacity wrap around, as a sliding-window layer stores them).
@Suite struct AttentionKernelTests {
    @Test(arguments: [(1, 64, 1, 100, 0), (3, 64, 37, 100, 0), (8, 128, 300, 1000, 5), (4, 256, 70, 64, 130), (2, 8, 9, 16, 20)])
    func groupedAttentionMatchesThePlainOne(heads: Int, headSize: Int, length: Int, capacity: Int, first: Int) throws {
        guard llk_attention_f16_supported(Int32(headSize)) != 0 else { return }  // only vector paths have it
        let stride = 3 * headSize  // two other KV heads between this one's rows
        let keys = VectorKernelTests.randomFloats(capacity * stride, seed: 1).map { HalfFloat.fromFloat($0 * 3) }
        let values = VectorKernelTests.randomFloats(capacity * stride, seed: 2).map { HalfFloat.fromFloat($0) }
        let q = VectorKernelTests.randomFloats(heads * headSize, seed: 3)
        let scale = 1 / Float(headSize).squareRoot()
        var scores = [Float](repeating: 0, count: heads * length), out = [Float](repeating: .nan, count: heads * headSize)
        let offset = headSize  // the middle KV head
        let done = keys.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                llk_attention_f16(q, Int32(heads), Int32(headSize), k.baseAddress! + offset, v.baseAddress! + offset, Int64(stride),
                                  Int64(capacity), Int64(first), Int64(length), scale, &scores, &out)
            }
        }
        #expect(done == 1)
        for h in 0..<heads {
            var s = (0..<length).map { i -> Float in
                let slot = (first + i) % capacity
                return (0..<headSize).reduce(Float(0)) { $0 + HalfFloat.toFloat(keys[slot * stride + offset + $1]) * q[h * headSize + $1] } * scale
            }
            let top = s.max()!
            s = s.map { expf($0 - top) }
            let sum = s.reduce(0, +)
            s = s.map { HalfFloat.toFloat(HalfFloat.fromFloat($0 / sum)) }
            for j in 0..<headSize {
                let expected = (0..<length).reduce(Float(0)) { $0 + s[$1] * HalfFloat.toFloat(values[((first + $1) % capacity) * stride + offset + j]) }
                #expect(abs(out[h * headSize + j] - expected) <= 1e-3 * max(1, abs(expected)), "head \(h) [\(j)]: \(out[h * headSize + j]) vs \(expected)")
            }
        }
    }

    /// Several tokens of a prompt in one call (token t attending to one more position than t - 1)
    /// give exactly what one call per token gives.
    @Test func tokensTogetherEqualTokensAlone() throws {
        let heads = 4, headSize = 64, tokens = 5, capacity = 200, first = 3
        guard llk_attention_f16_supported(Int32(headSize)) != 0 else { return }
        let stride = headSize
        let keys = VectorKernelTests.randomFloats(capacity * stride, seed: 4).map { HalfFloat.fromFloat($0 * 2) }
        let values = VectorKernelTests.randomFloats(capacity * stride, seed: 5).map { HalfFloat.fromFloat($0) }
        let qStride = heads * headSize + 16  // other KV heads' queries between tokens
        let q = VectorKernelTests.randomFloats(tokens * qStride, seed: 6)
        let lengths: [Int64] = (0..<tokens).map { Int64(150 + $0) }
        var scores = [Float](repeating: 0, count: tokens * heads * 160)
        var together = [Float](repeating: .nan, count: tokens * qStride), alone = together
        #expect(llk_attention_f16_tokens(q, Int64(qStride), Int32(tokens), lengths, Int32(heads), Int32(headSize), keys, values,
                                         Int64(stride), Int64(capacity), Int64(first), 0.125, &scores, &together, Int64(qStride)) == 1)
        for t in 0..<tokens {
            q.withUnsafeBufferPointer { q in
                alone.withUnsafeMutableBufferPointer { out in
                    _ = llk_attention_f16(q.baseAddress! + t * qStride, Int32(heads), Int32(headSize), keys, values, Int64(stride),
                                          Int64(capacity), Int64(first), lengths[t], 0.125, &scores, out.baseAddress! + t * qStride)
                }
            }
        }
        for t in 0..<tokens {
            let range = t * qStride..<(t * qStride + heads * headSize)
            #expect(Array(together[range]) == Array(alone[range]), "token \(t)")
        }
    }
}

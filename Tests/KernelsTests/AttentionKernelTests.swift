import CKernels
import Foundation
import Kernels
import Testing

/// The attention kernel (attention.c) against attention written out plainly in double precision:
/// per head, scaled dot products with the cached keys (as the scalar dequantizers read them), an
/// optional soft-cap, a softmax, the weighted sum of the values. Every cache type, on the fast
/// path and the scalar one; ragged head sizes and lengths, lengths over several spans, and a ring
/// cache (positions past the capacity wrap around, as a sliding-window layer stores them).
@Suite struct AttentionKernelTests {
    enum CacheType: Int32, CaseIterable {
        case f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8
        var ggml: GGMLType { [.f32, .f16, .q4_0, .q8_0][Self.allCases.firstIndex(of: self)!] }
    }

    /// A cache of `capacity` slots holding three KV heads per row; the middle one is attended to.
    struct Cache {
        let type: CacheType
        let headSize: Int
        let rowBytes: Int
        var bytes: [UInt8]
        /// The middle head of each slot as the scalar dequantizer reads it.
        var floats: [[Float]] = []

        init(type: CacheType, headSize: Int, capacity: Int, seed: UInt64, magnitude: Float) throws {
            self.type = type
            self.headSize = headSize
            rowBytes = Int(llk_kv_row_bytes(type.rawValue, Int64(3 * headSize)))
            bytes = [UInt8](repeating: 0, count: capacity * rowBytes)
            let x = VectorKernelTests.randomFloats(capacity * 3 * headSize, seed: seed).map { $0 * magnitude }
            for slot in 0..<capacity {
                let stored = bytes.withUnsafeMutableBytes { b in
                    llk_kv_store(type.rawValue, Array(x[(slot * 3 * headSize)...]), b.baseAddress! + slot * rowBytes, Int64(3 * headSize))
                }
                #expect(stored == 1)
                var row = [Float](repeating: 0, count: 3 * headSize)
                try bytes.withUnsafeBytes { b in try Dequantize.row(type.ggml, b.baseAddress! + slot * rowBytes, &row, count: 3 * headSize) }
                floats.append(Array(row[headSize..<(2 * headSize)]))
            }
        }

        var headOffset: Int { rowBytes / 3 }
    }

    struct Setup: CustomStringConvertible {
        var heads: Int, headSize: Int, lengths: [Int], capacity: Int, first: Int, softCap: Float = 0
        var description: String { "\(heads) heads of \(headSize), lengths \(lengths.first!)...\(lengths.last!), capacity \(capacity), first \(first), cap \(softCap)" }
    }

    static let setups = [
        Setup(heads: 1, headSize: 64, lengths: [1], capacity: 100, first: 0),
        Setup(heads: 3, headSize: 64, lengths: [37, 38, 39], capacity: 100, first: 0),
        Setup(heads: 8, headSize: 128, lengths: [700], capacity: 1000, first: 5),            // three spans
        Setup(heads: 4, headSize: 256, lengths: [70, 71], capacity: 64, first: 130),         // a ring
        Setup(heads: 2, headSize: 32, lengths: [255, 256, 257, 513], capacity: 600, first: 20, softCap: 5),
        Setup(heads: 2, headSize: 8, lengths: [9], capacity: 16, first: 20),                 // not whole blocks: F16/F32 only
        Setup(heads: 2, headSize: 20, lengths: [300], capacity: 300, first: 0),              // not whole vectors: scalar steps
    ]

    static let typePairs: [(CacheType, CacheType)] = [(.f16, .f16), (.f32, .f32), (.q8_0, .q8_0), (.q4_0, .q4_0), (.q8_0, .f16), (.f16, .q4_0)]

    /// Runs the kernel over the cache for the setup's tokens (all attending from `first`).
    static func attend(_ s: Setup, keys: Cache, values: Cache, q: [Float], scale: Float) -> [Float] {
        let tokens = s.lengths.count, width = s.heads * s.headSize
        var out = [Float](repeating: .nan, count: tokens * width)
        var scratch = [Float](repeating: .nan, count: Int(llk_attention_scratch_floats(Int32(tokens), Int32(s.heads), Int32(s.headSize))))
        let lengths = s.lengths.map(Int64.init)
        // The job holds its pointers past its initializer, so each comes from a closure around the whole use.
        let done = q.withUnsafeBufferPointer { qp in
            lengths.withUnsafeBufferPointer { lp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    keys.bytes.withUnsafeBytes { k in
                        values.bytes.withUnsafeBytes { v in
                            var job = llk_attention_job(
                                q: qp.baseAddress, q_stride: Int64(width), tokens: Int32(tokens), heads: Int32(s.heads), head_size: Int32(s.headSize),
                                lengths: lp.baseAddress, keys: k.baseAddress! + keys.headOffset, values: v.baseAddress! + values.headOffset,
                                key_type: keys.type.rawValue, value_type: values.type.rawValue, key_row_bytes: Int64(keys.rowBytes),
                                value_row_bytes: Int64(values.rowBytes), capacity: Int64(s.capacity), first: Int64(s.first), scale: scale,
                                soft_cap: s.softCap, scratch: sp.baseAddress)
                            return llk_attention(&job, &out, Int64(width))
                        }
                    }
                }
            }
        }
        #expect(done == 1)
        return out
    }

    @Test(arguments: setups)
    func attentionMatchesThePlainOne(_ s: Setup) throws {
        for (keyType, valueType) in Self.typePairs {
            guard llk_kv_row_bytes(keyType.rawValue, Int64(s.headSize)) >= 0, llk_kv_row_bytes(valueType.rawValue, Int64(s.headSize)) >= 0 else { continue }
            let keys = try Cache(type: keyType, headSize: s.headSize, capacity: s.capacity, seed: 1, magnitude: 3)
            let values = try Cache(type: valueType, headSize: s.headSize, capacity: s.capacity, seed: 2, magnitude: 1)
            let width = s.heads * s.headSize
            let q = VectorKernelTests.randomFloats(s.lengths.count * width, seed: 3)
            let scale = 1 / Float(s.headSize).squareRoot()
            let (fast, scalar) = VectorKernelTests.bothPaths { Self.attend(s, keys: keys, values: values, q: q, scale: scale) }
            for (t, length) in s.lengths.enumerated() {
                for h in 0..<s.heads {
                    var scores = (0..<length).map { i -> Double in
                        let key = keys.floats[(s.first + i) % s.capacity]
                        let dot = (0..<s.headSize).reduce(0.0) { $0 + Double(key[$1]) * Double(q[t * width + h * s.headSize + $1]) }
                        let x = dot * Double(scale)
                        return s.softCap > 0 ? Double(s.softCap) * tanh(x / Double(s.softCap)) : x
                    }
                    let top = scores.max()!
                    scores = scores.map { exp($0 - top) }
                    let sum = scores.reduce(0, +)
                    for j in 0..<s.headSize {
                        let expected = (0..<length).reduce(0.0) { $0 + scores[$1] / sum * Double(values.floats[(s.first + $1) % s.capacity][j]) }
                        for (path, out) in [("fast", fast), ("scalar", scalar)] {
                            let got = out[t * width + h * s.headSize + j]
                            #expect(abs(Double(got) - expected) <= 2e-5 * max(1, abs(expected)),
                                    "\(keyType)/\(valueType) \(path): token \(t) head \(h) [\(j)]: \(got) vs \(expected)")
                        }
                    }
                }
            }
        }
    }

    /// Spans computed one by one (as threads share them) and merged give llk_attention's result
    /// bit for bit, so splitting never changes the logits.
    @Test func spansMergedEqualTheWhole() throws {
        let s = Setup(heads: 3, headSize: 64, lengths: [600, 601, 602, 900], capacity: 1000, first: 7)
        let keys = try Cache(type: .q8_0, headSize: s.headSize, capacity: s.capacity, seed: 4, magnitude: 2)
        let values = try Cache(type: .f16, headSize: s.headSize, capacity: s.capacity, seed: 5, magnitude: 1)
        let tokens = s.lengths.count, width = s.heads * s.headSize
        let q = VectorKernelTests.randomFloats(tokens * width, seed: 6)
        let whole = Self.attend(s, keys: keys, values: values, q: q, scale: 0.125)
        let spans = (s.lengths.max()! + Int(LLK_ATTENTION_SPAN) - 1) / Int(LLK_ATTENTION_SPAN)
        var partials = [Float](repeating: .nan, count: spans * tokens * width)
        var states = [Float](repeating: .nan, count: spans * tokens * s.heads * 2)
        var scratch = [Float](repeating: 0, count: Int(llk_attention_scratch_floats(Int32(tokens), Int32(s.heads), Int32(s.headSize))))
        let lengths = s.lengths.map(Int64.init)
        q.withUnsafeBufferPointer { qp in
            lengths.withUnsafeBufferPointer { lp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    keys.bytes.withUnsafeBytes { k in
                        values.bytes.withUnsafeBytes { v in
                            var job = llk_attention_job(
                                q: qp.baseAddress, q_stride: Int64(width), tokens: Int32(tokens), heads: Int32(s.heads), head_size: Int32(s.headSize),
                                lengths: lp.baseAddress, keys: k.baseAddress! + keys.headOffset, values: v.baseAddress! + values.headOffset,
                                key_type: keys.type.rawValue, value_type: values.type.rawValue, key_row_bytes: Int64(keys.rowBytes),
                                value_row_bytes: Int64(values.rowBytes), capacity: Int64(s.capacity), first: Int64(s.first), scale: 0.125,
                                soft_cap: 0, scratch: sp.baseAddress)
                            for span in (0..<spans).reversed() {  // any order
                                partials.withUnsafeMutableBufferPointer { p in
                                    states.withUnsafeMutableBufferPointer { st in
                                        #expect(llk_attention_span(&job, Int64(span), p.baseAddress! + span * tokens * width, Int64(width),
                                                                   st.baseAddress! + span * tokens * s.heads * 2, Int64(s.heads)) == 1)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var merged = [Float](repeating: .nan, count: tokens * width)
        for row in 0..<(tokens * s.heads) {
            partials.withUnsafeBufferPointer { p in
                states.withUnsafeBufferPointer { st in
                    merged.withUnsafeMutableBufferPointer { m in
                        llk_attention_merge(Int64(spans), Int32(s.headSize), p.baseAddress! + row * s.headSize, Int64(tokens * width),
                                            st.baseAddress! + row * 2, Int64(tokens * s.heads * 2), m.baseAddress! + row * s.headSize)
                    }
                }
            }
        }
        #expect(merged == whole)
    }

    /// Several tokens of a prompt in one call (token t attending to one more position than t - 1)
    /// give exactly what one call per token gives.
    @Test func tokensTogetherEqualTokensAlone() throws {
        let s = Setup(heads: 4, headSize: 64, lengths: [250, 251, 252, 253, 254, 255, 256, 257], capacity: 300, first: 3)
        let keys = try Cache(type: .f16, headSize: s.headSize, capacity: s.capacity, seed: 7, magnitude: 2)
        let values = try Cache(type: .q4_0, headSize: s.headSize, capacity: s.capacity, seed: 8, magnitude: 1)
        let width = s.heads * s.headSize
        let q = VectorKernelTests.randomFloats(s.lengths.count * width, seed: 9)
        let together = Self.attend(s, keys: keys, values: values, q: q, scale: 0.125)
        for (t, length) in s.lengths.enumerated() {
            var one = s
            one.lengths = [length]
            let alone = Self.attend(one, keys: keys, values: values, q: Array(q[(t * width)..<((t + 1) * width)]), scale: 0.125)
            #expect(Array(together[(t * width)..<((t + 1) * width)]) == alone, "token \(t)")
        }
    }

    /// Rows are stored as ggml's reference quantizers round them (QuantizeBlocks, held against the
    /// gguf package), and read back as the dequantizers read them.
    @Test(arguments: CacheType.allCases)
    func rowsStoreAsTheQuantizerRounds(_ type: CacheType) throws {
        let n = 32 * 9
        var x = VectorKernelTests.randomFloats(n, seed: 10).map { $0 * 4 }
        for j in 32..<64 { x[j] = 0 }              // a zero block
        for j in 64..<96 { x[j] = j % 2 == 0 ? 0.5 : -0.5 }  // ties in magnitude
        var stored = [UInt8](repeating: 0, count: Int(llk_kv_row_bytes(type.rawValue, Int64(n))))
        #expect(llk_kv_store(type.rawValue, x, &stored, Int64(n)) == 1)
        switch type {
        case .f32: #expect(stored == x.withUnsafeBytes { Array($0) })
        case .f16: #expect(stored == x.map { HalfFloat.fromFloat($0) }.withUnsafeBytes { Array($0) })
        case .q8_0, .q4_0: #expect(stored == (try x.withUnsafeBufferPointer { try QuantizeBlocks.row($0, to: type.ggml) }))
        }
        var loaded = [Float](repeating: .nan, count: n), expected = loaded
        llk_kv_load(type.rawValue, stored, &loaded, Int64(n))
        try stored.withUnsafeBytes { try Dequantize.row(type.ggml, $0.baseAddress!, &expected, count: n) }
        #expect(loaded == expected)
        // Sizes the blocks do not divide are refused.
        if type == .q8_0 || type == .q4_0 {
            #expect(llk_kv_row_bytes(type.rawValue, 48) == -1)
            #expect(llk_kv_store(type.rawValue, x, &stored, 48) == 0)
        }
    }

    /// The rotation llama.cpp puts around a quantized cache: each chunk times the orthonormal
    /// Hadamard matrix in Sylvester's order, whose entry (i, j) is (-1)^popcount(i & j) / sqrt(n);
    /// applying it twice gives the input back.
    @Test(arguments: [2, 64, 128, 256])
    func hadamardIsSylvestersMatrix(_ chunk: Int) {
        let x = VectorKernelTests.randomFloats(3 * chunk, seed: 11)
        var y = x
        llk_hadamard(&y, Int64(y.count), Int64(chunk))
        for c in 0..<3 {
            for i in 0..<chunk {
                let expected = (0..<chunk).reduce(0.0) { sum, j in
                    sum + ((i & j).nonzeroBitCount % 2 == 0 ? 1.0 : -1.0) * Double(x[c * chunk + j])
                } / Double(chunk).squareRoot()
                #expect(abs(Double(y[c * chunk + i]) - expected) <= 1e-5, "chunk \(c) [\(i)]")
            }
        }
        llk_hadamard(&y, Int64(y.count), Int64(chunk))
        for i in 0..<x.count { #expect(abs(y[i] - x[i]) <= 1e-5) }
        // Sizes that are not powers of two, or do not divide the values, change nothing.
        var z = x
        llk_hadamard(&z, Int64(z.count), 48)
        llk_hadamard(&z, Int64(z.count - 1), Int64(chunk))
        #expect(z == x)
    }
}

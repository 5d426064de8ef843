import CKernels
import Kernels

/// The shared pieces architectures build their blocks from, and the scratch they work in: a
/// residual stream `x` of `[tokens][width]`, its normalized or transformed copy `xb`, and the
/// attention and FFN buffers. Everything is allocated once, for at most `capacity` tokens.
///
/// A block reads `x`, computes into `xb`, and adds `xb` back, e.g. for Llama:
/// `norm(attn_norm); attention; addResidual(); norm(ffn_norm); feedForward(.silu); addResidual()`.
public final class ForwardPass: @unchecked Sendable {
    public enum Activation: Sendable { case silu, gelu }

    let model: LlamaModel
    let config: LlamaConfiguration
    let caches: [KVCache]
    let kvCacheType: LlamaContext.KVCacheType
    let pool: ThreadPool
    let workspace: MatMulWorkspace
    /// Attention scores, one buffer per worker.
    private let scores: [ScratchBuffer]
    let capacity: Int
    /// Tokens in the batch being evaluated, and each one's sequence and position.
    var count = 0
    let sequences: UnsafeMutablePointer<Int>
    let positions: UnsafeMutablePointer<Int>
    // [capacity][width] and the like.
    let x, xb, q, k, v, attention, gate, up: UnsafeMutablePointer<Float>
    /// Phi-3's fused QKV and gate|up products land here before they are split.
    private let fused: UnsafeMutablePointer<Float>?
    private let ropeTable: UnsafeMutablePointer<Float>
    /// The RoPE frequency divisors in use (Llama 3.1's, or LongRoPE's for this context size).
    private let ropeFactors: UnsafeMutablePointer<Float>?

    init(model: LlamaModel, contextSize: Int, capacity: Int, caches: [KVCache], kvCacheType: LlamaContext.KVCacheType, threads: Int) {
        let c = model.configuration
        self.model = model
        self.config = c
        self.caches = caches
        self.kvCacheType = kvCacheType
        self.capacity = capacity
        pool = ThreadPool(threads: threads)
        workspace = MatMulWorkspace(threads: threads)
        scores = (0..<threads).map { _ in ScratchBuffer(capacity: contextSize) }
        func buffer(_ width: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, capacity * width))
            p.initialize(repeating: 0, count: max(1, capacity * width))
            return p
        }
        x = buffer(c.embeddingLength)
        xb = buffer(max(c.embeddingLength, c.qDimension))
        q = buffer(c.qDimension)
        attention = buffer(c.qDimension)
        k = buffer(c.kvDimension)
        v = buffer(c.kvDimension)
        gate = buffer(c.feedForwardLength)
        up = buffer(c.feedForwardLength)
        let fusedWidth = model.blocks.contains { $0.qkv != nil || $0.gateUp != nil }
            ? max(c.qDimension + 2 * c.kvDimension, 2 * c.feedForwardLength) : 0
        fused = fusedWidth > 0 ? buffer(fusedWidth) : nil
        sequences = .allocate(capacity: capacity)
        sequences.initialize(repeating: 0, count: capacity)
        positions = .allocate(capacity: capacity)
        positions.initialize(repeating: 0, count: capacity)
        ropeTable = .allocate(capacity: max(2, c.ropeDimensions))
        let w = model.weights
        let factors = w.ropeFactors ?? (contextSize > c.scalingOriginalContext ? w.ropeFactorsLong : w.ropeFactorsShort)
        ropeFactors = factors.map { f in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: f.count)
            p.initialize(from: f, count: f.count)
            return p
        }
    }

    deinit {
        for p in [x, xb, q, k, v, attention, gate, up, ropeTable] { p.deallocate() }
        fused?.deallocate()
        ropeFactors?.deallocate()
        sequences.deallocate()
        positions.deallocate()
    }

    // MARK: The pieces

    /// `xb = rmsNorm(x) * weight`, row by row.
    public func norm(_ weight: [Float]?) {
        rmsNorm(x, into: xb, weight)
    }

    /// `xb = rmsNorm(xb) * weight`: the norm Gemma puts on a sublayer's output.
    public func normOutput(_ weight: [Float]?) {
        rmsNorm(xb, into: xb, weight)
    }

    /// `x += xb`.
    public func addResidual() {
        let n = count * config.embeddingLength
        for i in 0..<n { x[i] += xb[i] }
    }

    /// `xb = attention(xb)`: projections (with biases where the block has them), per-head Q/K
    /// norms where it has them, RoPE (unless the layer has none), the KV cache, causal
    /// grouped-query attention within the layer's window, and the output projection.
    public func attention(_ w: BlockWeights, layer: Int) {
        let c = config, n = count
        let qDim = c.qDimension, kvDim = c.kvDimension, head = c.headDimension
        if let qkv = w.qkv, let fused {
            multiply(qkv, xb, fused)
            let width = qDim + 2 * kvDim
            for t in 0..<n {
                let row = fused + t * width
                (q + t * qDim).update(from: row, count: qDim)
                (k + t * kvDim).update(from: row + qDim, count: kvDim)
                (v + t * kvDim).update(from: row + qDim + kvDim, count: kvDim)
            }
        } else {
            multiply(w.q!, xb, q)
            multiply(w.k!, xb, k)
            multiply(w.v!, xb, v)
        }
        addBias(w.qBias, q, qDim)
        addBias(w.kBias, k, kvDim)
        addBias(w.vBias, v, kvDim)
        if let qNorm = w.qNorm { headNorm(q, heads: n * c.headCount, qNorm) }
        if let kNorm = w.kNorm { headNorm(k, heads: n * c.kvHeadCount, kNorm) }
        let settings = c.layers[layer]
        if settings.rotates {
            for t in 0..<n {
                Ops.ropeTable(position: positions[t], dimensions: c.ropeDimensions, base: settings.ropeBase,
                              scaling: settings.ropeScaling, factors: ropeFactors, into: ropeTable)
                Ops.rope(q + t * qDim, heads: c.headCount, headSize: head, dimensions: c.ropeDimensions, table: ropeTable, style: c.ropeStyle)
                Ops.rope(k + t * kvDim, heads: c.kvHeadCount, headSize: head, dimensions: c.ropeDimensions, table: ropeTable, style: c.ropeStyle)
            }
        }
        var scoreScale = c.attentionScale
        if c.scalesQueries {
            for i in 0..<n * qDim { q[i] *= c.attentionScale }
            scoreScale = 1
        }
        if kvCacheType == .f16 {
            // llama.cpp converts the queries to F16 too before multiplying them with F16 keys.
            for i in 0..<n * qDim { q[i] = HalfFloat.toFloat(HalfFloat.fromFloat(q[i])) }
        }
        // Runs of consecutive positions of one sequence are stored at once.
        var t = 0
        while t < n {
            var e = t + 1
            while e < n, sequences[e] == sequences[t], positions[e] == positions[e - 1] + 1 { e += 1 }
            caches[sequences[t]].store(layer: layer, position: positions[t], count: e - t, keys: k + t * kvDim, values: v + t * kvDim)
            t = e
        }
        attend(layer: layer, window: settings.slidingWindow, scale: scoreScale)
        multiply(w.attentionOutput!, attention, xb)
    }

    /// `xb = down(act(gate(xb)) * up(xb))`, with SiLU (SwiGLU) or tanh GELU (GeGLU).
    public func feedForward(_ w: BlockWeights, activation: Activation) {
        let n = count, hidden = config.feedForwardLength
        if let gateUp = w.gateUp, let fused {
            multiply(gateUp, xb, fused)
            for t in 0..<n {
                (gate + t * hidden).update(from: fused + t * 2 * hidden, count: hidden)
                (up + t * hidden).update(from: fused + t * 2 * hidden + hidden, count: hidden)
            }
        } else {
            multiply(w.gate!, xb, gate)
            multiply(w.up!, xb, up)
        }
        switch activation {
        case .silu: Ops.swiGLU(gate, up, count: n * hidden)
        case .gelu: Ops.geGLU(gate, up, count: n * hidden)
        }
        multiply(w.down!, gate, xb)
    }

    // MARK: Helpers

    func multiply(_ w: WeightMatrix, _ input: UnsafeMutablePointer<Float>, _ output: UnsafeMutablePointer<Float>, tokens: Int? = nil) {
        MatMul.multiply(w, input, output, tokens: tokens ?? count, pool: pool, workspace: workspace)
    }

    private func rmsNorm(_ input: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>, _ weight: [Float]?) {
        let dim = config.embeddingLength, eps = config.rmsEpsilon
        guard let weight else { preconditionFailure("the architecture's tensor table must require this norm") }
        weight.withUnsafeBufferPointer { w in
            for t in 0..<count { Ops.rmsNorm(input + t * dim, weight: w.baseAddress!, eps: eps, count: dim, into: out + t * dim) }
        }
    }

    private func addBias(_ bias: [Float]?, _ rows: UnsafeMutablePointer<Float>, _ width: Int) {
        guard let bias else { return }
        for t in 0..<count {
            let row = rows + t * width
            for i in 0..<width { row[i] += bias[i] }
        }
    }

    private func headNorm(_ rows: UnsafeMutablePointer<Float>, heads: Int, _ weight: [Float]) {
        let head = config.headDimension, eps = config.rmsEpsilon
        weight.withUnsafeBufferPointer { w in
            for h in 0..<heads { Ops.rmsNorm(rows + h * head, weight: w.baseAddress!, eps: eps, count: head, into: rows + h * head) }
        }
    }

    /// Causal grouped-query attention: each new token against its own sequence's cache, from
    /// the start of its window (or of the sequence) up to and including its own position.
    private func attend(layer: Int, window: Int?, scale: Float) {
        let c = config, n = count
        let headSize = c.headDimension, qDim = c.qDimension
        let group = c.headCount / c.kvHeadCount
        let softCap = c.attentionSoftCap
        let halfWeights = kvCacheType == .f16
        let scoreBuffers = self.scores
        let layers = caches.map { $0.layer(layer) }
        var longest = 0
        for t in 0..<n { longest = max(longest, positions[t] + 1) }
        let qp = SendablePointer(q), op = SendablePointer(attention)
        let sp = SendablePointer(sequences), pp = SendablePointer(positions)
        // With an F16 cache (and no soft-cap), the C kernel: one job per KV head and chunk of up to
        // 8 tokens; consecutive tokens of one sequence (a prompt) go in together, so each key and
        // value is read once for all their query heads that share it.
        if halfWeights, softCap == nil, llk_attention_f16_supported(Int32(headSize)) != 0 {
            let chunk = 8, chunks = (n + chunk - 1) / chunk
            let jobs = chunks * c.kvHeadCount
            let workers = max(1, min(pool.threads, jobs, scoreBuffers.count))
            pool.run(workers) { worker in
                let scores = scoreBuffers[worker].ensure(longest * group * chunk)
                withUnsafeTemporaryAllocation(of: Int64.self, capacity: chunk) { lengths in
                    for job in stride(from: worker, to: jobs, by: workers) {
                        let kvHead = job % c.kvHeadCount, start = job / c.kvHeadCount * chunk, end = min(n, start + chunk)
                        var t = start
                        while t < end {
                            // A run: the same sequence at consecutive positions, all attending from one first position.
                            let sequence = sp.pointer[t], first = window.map { max(0, pp.pointer[t] - $0 + 1) } ?? 0
                            var count = 1
                            while window == nil, t + count < end, sp.pointer[t + count] == sequence,
                                  pp.pointer[t + count] == pp.pointer[t + count - 1] + 1 { count += 1 }
                            for i in 0..<count { lengths[i] = Int64(pp.pointer[t + i] - first + 1) }
                            let kv = layers[sequence]
                            let offset = t * qDim + kvHead * group * headSize
                            _ = llk_attention_f16_tokens(qp.pointer + offset, Int64(qDim), Int32(count), lengths.baseAddress!, Int32(group),
                                                         Int32(headSize), kv.keys16! + kvHead * headSize, kv.values16! + kvHead * headSize,
                                                         Int64(kv.kvDimension), Int64(kv.capacity), Int64(first), scale, scores,
                                                         op.pointer + offset, Int64(qDim))
                            t += count
                        }
                    }
                }
            }
            return
        }
        let jobs = n * c.headCount
        let workers = max(1, min(pool.threads, jobs, scoreBuffers.count))
        pool.run(workers) { worker in
            let scores = scoreBuffers[worker].ensure(longest)
            for job in stride(from: worker, to: jobs, by: workers) {
                let t = job / c.headCount, h = job % c.headCount
                let kv = layers[sp.pointer[t]]
                let last = pp.pointer[t]
                let first = window.map { max(0, last - $0 + 1) } ?? 0
                let length = last - first + 1
                let query = qp.pointer + t * qDim + h * headSize
                let kvOffset = (h / group) * headSize
                for i in 0..<length { scores[i] = kv.dotKey(first + i, kvOffset, query, headSize) * scale }
                if let softCap { Ops.softCap(scores, count: length, cap: softCap) }
                Ops.softmax(scores, count: length)
                if halfWeights {
                    // The weights meet F16 values, so llama.cpp rounds them to F16 too.
                    for i in 0..<length { scores[i] = HalfFloat.toFloat(HalfFloat.fromFloat(scores[i])) }
                }
                let result = op.pointer + t * qDim + h * headSize
                result.update(repeating: 0, count: headSize)
                for i in 0..<length { kv.addValue(scores[i], first + i, kvOffset, into: result, headSize) }
            }
        }
    }
}

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
    let kvCache: LlamaContext.KVCacheTypes
    /// Chunks of the Walsh-Hadamard rotations around a quantized cache (`KVCacheTypes.rotations`).
    let rotations: (keys: Int?, values: Int?)
    let pool: ThreadPool
    let workspace: MatMulWorkspace
    /// Attention scratch, one buffer per worker; spans of attention kept for merging, and their
    /// (max, sum) states.
    private let scores: [ScratchBuffer]
    private let partials = ScratchBuffer(), partialStates = ScratchBuffer()
    /// Where each run of the batch's tokens starts (attention), and each token's length.
    private let runStarts: UnsafeMutablePointer<Int>
    private let lengths: UnsafeMutablePointer<Int64>
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

    init(model: LlamaModel, contextSize: Int, capacity: Int, caches: [KVCache], kvCache: LlamaContext.KVCacheTypes, threads: Int) {
        let c = model.configuration
        self.model = model
        self.config = c
        self.caches = caches
        self.kvCache = kvCache
        rotations = kvCache.rotations(headSize: c.headDimension)
        self.capacity = capacity
        pool = ThreadPool(threads: threads)
        workspace = MatMulWorkspace(threads: threads)
        scores = (0..<threads).map { _ in ScratchBuffer() }
        runStarts = .allocate(capacity: capacity + 1)
        runStarts.initialize(repeating: 0, count: capacity + 1)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
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
        runStarts.deallocate()
        lengths.deallocate()
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
        if let chunk = rotations.keys {
            llk_hadamard(q, Int64(n * qDim), Int64(chunk))
            llk_hadamard(k, Int64(n * kvDim), Int64(chunk))
        }
        if let chunk = rotations.values { llk_hadamard(v, Int64(n * kvDim), Int64(chunk)) }
        // Runs of consecutive positions of one sequence are stored at once.
        var t = 0
        while t < n {
            var e = t + 1
            while e < n, sequences[e] == sequences[t], positions[e] == positions[e - 1] + 1 { e += 1 }
            caches[sequences[t]].store(layer: layer, position: positions[t], count: e - t, keys: k + t * kvDim, values: v + t * kvDim)
            t = e
        }
        attend(layer: layer, window: settings.slidingWindow, scale: scoreScale)
        if let chunk = rotations.values { llk_hadamard(attention, Int64(n * qDim), Int64(chunk)) }
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
        case .silu: Ops.swiGLU(gate, up, count: n * hidden, pool: pool)
        case .gelu: Ops.geGLU(gate, up, count: n * hidden, pool: pool)
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
    /// the start of its window (or of the sequence) up to and including its own position. Tokens
    /// are taken in runs (up to 8 consecutive positions of one sequence, which read each key and
    /// value once together); a job is a run and a KV head. When that gives the threads too little
    /// to share (one sequence generating, few KV heads), each job is also split by span of the
    /// cache and the spans merged after: the same result, bit for bit.
    private func attend(layer: Int, window: Int?, scale: Float) {
        let c = config, n = count
        let headSize = c.headDimension, qDim = c.qDimension, kvHeads = c.kvHeadCount
        let group = c.headCount / kvHeads
        let span = Int(LLK_ATTENTION_SPAN)
        let layers = caches.map { $0.layer(layer) }
        let keyType = kvCache.keys.ggmlType, valueType = kvCache.values.ggmlType
        let softCap = c.attentionSoftCap ?? 0
        let qp = SendablePointer(q), op = SendablePointer(attention)
        let sp = SendablePointer(sequences), pp = SendablePointer(positions)
        let rs = SendablePointer(runStarts), lp = SendablePointer(lengths)
        // Runs, and each token's length (positions attended from its run's first).
        var runs = 0, longest = 0
        var t = 0
        while t < n {
            var end = t + 1
            while window == nil, end < n, end - t < 8, sequences[end] == sequences[t], positions[end] == positions[end - 1] + 1 { end += 1 }
            let first = window.map { max(0, positions[t] - $0 + 1) } ?? 0
            for i in t..<end {
                lengths[i] = Int64(positions[i] - first + 1)
                longest = max(longest, Int(lengths[i]))
            }
            runStarts[runs] = t
            runs += 1
            t = end
        }
        runStarts[runs] = n
        let spans = (longest + span - 1) / span
        let jobs = runs * kvHeads
        let split = spans > 1 && jobs < 2 * pool.threads && jobs % pool.threads != 0 && spans * n * qDim <= 1 << 23
        let scratchFloats = Int(llk_attention_scratch_floats(8, Int32(group), Int32(headSize)))
        let scratch = self.scores
        let partials = split ? SendablePointer(self.partials.ensure(spans * n * qDim)) : op
        let states = split ? SendablePointer(self.partialStates.ensure(spans * n * c.headCount * 2)) : op
        /// Run r's job for the KV head's query heads.
        func makeJob(_ r: Int, _ kvHead: Int, _ scratch: UnsafeMutablePointer<Float>) -> (llk_attention_job, offset: Int) {
            let start = rs.pointer[r], end = rs.pointer[r + 1]
            let kv = layers[sp.pointer[start]]
            let first = pp.pointer[start] + 1 - Int(lp.pointer[start])
            let offset = start * qDim + kvHead * group * headSize
            let job = llk_attention_job(
                q: UnsafePointer(qp.pointer + offset), q_stride: Int64(qDim), tokens: Int32(end - start), heads: Int32(group),
                head_size: Int32(headSize), lengths: UnsafePointer(lp.pointer + start),
                keys: kv.keys + kvHead * kv.keyRowBytes / kvHeads, values: kv.values + kvHead * kv.valueRowBytes / kvHeads,
                key_type: keyType, value_type: valueType, key_row_bytes: Int64(kv.keyRowBytes), value_row_bytes: Int64(kv.valueRowBytes),
                capacity: Int64(kv.capacity), first: Int64(first), scale: scale, soft_cap: softCap, scratch: scratch)
            return (job, offset)
        }
        if !split {
            let workers = max(1, min(pool.threads, jobs, scratch.count))
            pool.run(workers) { worker in
                let buffer = scratch[worker].ensure(scratchFloats)
                for j in stride(from: worker, to: jobs, by: workers) {
                    var (job, offset) = makeJob(j / kvHeads, j % kvHeads, buffer)
                    _ = llk_attention(&job, op.pointer + offset, Int64(qDim))
                }
            }
            return
        }
        // Span s of token t's rows at partials[s][t][qDim], their states at states[s][t][head][2].
        let headCount = c.headCount
        let spanJobs = jobs * spans
        let spanWorkers = max(1, min(pool.threads, spanJobs, scratch.count))
        pool.run(spanWorkers) { worker in
            let buffer = scratch[worker].ensure(scratchFloats)
            for j in stride(from: worker, to: spanJobs, by: spanWorkers) {
                let s = j % spans, kvHead = j / spans % kvHeads, r = j / spans / kvHeads
                var (job, offset) = makeJob(r, kvHead, buffer)
                let start = rs.pointer[r]
                // A run's positions follow one another from one first position: its last token attends the most.
                guard s * span < lp.pointer[rs.pointer[r + 1] - 1] else { continue }
                _ = llk_attention_span(&job, Int64(s), partials.pointer + s * n * qDim + offset, Int64(qDim),
                                       states.pointer + (s * n * headCount + start * headCount + kvHead * group) * 2, Int64(headCount))
            }
        }
        let rows = n * headCount
        let mergers = max(1, min(pool.threads, rows))
        pool.run(mergers) { worker in
            for row in stride(from: worker, to: rows, by: mergers) {
                let t = row / headCount
                // The token's run decides how many spans were computed for it.
                var r = 0
                while rs.pointer[r + 1] <= t { r += 1 }
                let count = (Int(lp.pointer[rs.pointer[r + 1] - 1]) + span - 1) / span
                llk_attention_merge(Int64(count), Int32(headSize), partials.pointer + row * headSize, Int64(n * qDim),
                                    states.pointer + row * 2, Int64(n * headCount * 2), op.pointer + row * headSize)
            }
        }
    }
}

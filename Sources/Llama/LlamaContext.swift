import Foundation
import CKernels
import Kernels
import Tokenizers

/// One sequence being evaluated: the KV cache and the scratch buffers of the forward pass.
/// Make one per conversation. Buffers are allocated once, for at most `batchSize` tokens per
/// call. Calls from several threads are serialized by a lock (one evaluation at a time).
public final class LlamaContext: @unchecked Sendable {
    private let lock = NSLock()
    public let model: LlamaModel
    public let contextSize: Int
    public let batchSize: Int
    public let threads: Int
    private let pool: ThreadPool
    private let workspace: MatMulWorkspace
    /// Attention scores, one buffer of contextSize per worker.
    private let scores: [ScratchBuffer]
    public let kvCacheType: KVCacheType
    /// How many positions of the cache are filled.
    public private(set) var position = 0

    private var cache: KVCache
    // Scratch, [batch][width]
    private var x, xb, q, k, v, attention, gate, up: [Float]
    private var ropeTable: [Float]
    /// Normalized rows for the classifier, and the logits of the last call's selected rows
    /// (reused from call to call, so generating a token allocates nothing).
    private var classifierInput: [Float] = []
    private var lastLogits: [Float] = []
    /// The logits of the last `evaluate` call's selected rows.
    public var logits: [Float] { lock.withLock { lastLogits } }

    public struct ContextFull: Error, CustomStringConvertible {
        public let needed: Int
        public let contextSize: Int
        public var description: String {
            "the text needs \(needed) positions but the context holds \(contextSize); use a larger context (-c) or a shorter prompt"
        }
    }

    /// The precision of cached keys and values, as llama.cpp's `--cache-type-k/-v`.
    public enum KVCacheType: String, Sendable, CaseIterable {
        /// Half precision, llama.cpp's default: keys, values, and the queries and attention
        /// weights multiplied with them, are rounded to binary16.
        case f16
        /// Full precision.
        case f32
    }

    public init(model: LlamaModel, contextSize: Int? = nil, batchSize: Int = 512, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                kvCacheType: KVCacheType = .f16) {
        let c = model.configuration
        self.model = model
        self.kvCacheType = kvCacheType
        self.contextSize = max(1, contextSize ?? c.contextLength)
        self.batchSize = max(1, batchSize)
        self.threads = max(1, threads)
        self.pool = ThreadPool(threads: max(1, threads))
        self.workspace = MatMulWorkspace(threads: max(1, threads))
        self.scores = (0..<max(1, threads)).map { _ in ScratchBuffer(capacity: max(1, contextSize ?? model.configuration.contextLength)) }
        cache = KVCache(layers: c.layerCount, positions: self.contextSize, kvDimension: c.kvDimension, type: kvCacheType)
        let n = self.batchSize
        x = [Float](repeating: 0, count: n * c.embeddingLength)
        xb = x
        q = [Float](repeating: 0, count: n * c.qDimension)
        attention = q
        k = [Float](repeating: 0, count: n * c.kvDimension)
        v = k
        gate = [Float](repeating: 0, count: n * c.feedForwardLength)
        up = gate
        ropeTable = [Float](repeating: 0, count: c.ropeDimensions)
    }

    /// Forgets everything evaluated so far.
    public func reset() { lock.withLock { position = 0 } }

    /// Rewinds to `newPosition` (keeping the cache before it), e.g. to reuse a shared prompt prefix.
    public func truncate(to newPosition: Int) { lock.withLock { position = min(position, max(0, newPosition)) } }

    /// Evaluates `tokens` after what is already in the cache. Returns the logits of the positions
    /// `logitsFor` selects (rows of `vocabularySize`), in order. Long inputs go through in batches.
    @discardableResult
    public func evaluate(_ tokens: [TokenID], logitsFor: LogitSelection = .last) throws -> [Float] {
        lock.lock()
        defer { lock.unlock() }
        guard position + tokens.count <= contextSize else {
            throw ContextFull(needed: position + tokens.count, contextSize: contextSize)
        }
        let vocab = model.configuration.vocabularySize
        for token in tokens where token < 0 || Int(token) >= vocab {
            throw ModelError("token id \(token) is outside the vocabulary of \(vocab)")
        }
        var all: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + batchSize)
            let wanted: Range<Int>
            switch logitsFor {
            case .last: wanted = end == tokens.count ? (end - start - 1)..<(end - start) : 0..<0
            case .all: wanted = 0..<(end - start)
            case .none: wanted = 0..<0
            }
            tokens.withUnsafeBufferPointer { forward(UnsafeBufferPointer(rebasing: $0[start..<end]), logitRows: wanted) }
            if logitsFor == .all { all += lastLogits }
            start = end
        }
        switch logitsFor {
        case .last: return lastLogits
        case .all: return all
        case .none: return []
        }
    }

    public enum LogitSelection: Sendable {
        case last, all, none
    }

    /// The forward pass over one batch, as llama2.c's `forward` but for n tokens at once.
    private func forward(_ tokens: UnsafeBufferPointer<TokenID>, logitRows: Range<Int>) {
        let c = model.configuration
        let n = tokens.count, dim = c.embeddingLength, kvDim = c.kvDimension, qDim = c.qDimension
        let hidden = c.feedForwardLength, headSize = c.headDimension
        let pos0 = position

        x.withUnsafeMutableBufferPointer { x in
            for (t, token) in tokens.enumerated() { model.tokenEmbedding.dequantizeRow(Int(token), into: x.baseAddress! + t * dim) }
        }
        for (l, layer) in model.layers.enumerated() {
            // Attention: xb = norm(x); q, k, v = W xb; rotate q and k; cache k and v.
            normalize(n, layer.attentionNorm, dim)
            multiply(layer.wq, &xb, &q, n)
            multiply(layer.wk, &xb, &k, n)
            multiply(layer.wv, &xb, &v, n)
            q.withUnsafeMutableBufferPointer { q in
                k.withUnsafeMutableBufferPointer { k in
                    ropeTable.withUnsafeMutableBufferPointer { table in
                        for t in 0..<n {
                            Ops.ropeTable(position: pos0 + t, dimensions: c.ropeDimensions, base: c.ropeBase, into: table.baseAddress!)
                            Ops.rope(q.baseAddress! + t * qDim, heads: c.headCount, headSize: headSize, dimensions: c.ropeDimensions, table: table.baseAddress!, style: c.ropeStyle)
                            Ops.rope(k.baseAddress! + t * kvDim, heads: c.kvHeadCount, headSize: headSize, dimensions: c.ropeDimensions, table: table.baseAddress!, style: c.ropeStyle)
                        }
                    }
                }
            }
            if kvCacheType == .f16 {
                // llama.cpp converts the queries to F16 too before multiplying them with F16 keys.
                Self.roundToHalf(&q, count: n * qDim)
            }
            k.withUnsafeBufferPointer { k in
                v.withUnsafeBufferPointer { v in
                    cache.store(layer: l, position: pos0, count: n, keys: k.baseAddress!, values: v.baseAddress!)
                }
            }
            attend(n, layer: l)
            multiply(layer.wo, &attention, &xb, n)
            addResidual(n * dim)

            // Feed-forward: x += down(silu(gate(norm(x))) * up(norm(x))).
            normalize(n, layer.ffnNorm, dim)
            multiply(layer.gate, &xb, &gate, n)
            multiply(layer.up, &xb, &up, n)
            gate.withUnsafeMutableBufferPointer { g in
                up.withUnsafeBufferPointer { u in Ops.swiGLU(g.baseAddress!, u.baseAddress!, count: n * hidden) }
            }
            multiply(layer.down, &gate, &xb, n)
            addResidual(n * dim)
        }
        position += n

        guard !logitRows.isEmpty else { return }
        // Final norm and classifier, only for the rows asked for.
        if classifierInput.count != logitRows.count * dim { classifierInput = [Float](repeating: 0, count: logitRows.count * dim) }
        if lastLogits.count != logitRows.count * c.vocabularySize { lastLogits = [Float](repeating: 0, count: logitRows.count * c.vocabularySize) }
        x.withUnsafeBufferPointer { x in
            classifierInput.withUnsafeMutableBufferPointer { out in
                model.outputNorm.withUnsafeBufferPointer { w in
                    for (i, r) in logitRows.enumerated() {
                        Ops.rmsNorm(x.baseAddress! + r * dim, weight: w.baseAddress!, eps: c.rmsEpsilon, count: dim, into: out.baseAddress! + i * dim)
                    }
                }
            }
        }
        multiply(model.output, &classifierInput, &lastLogits, logitRows.count)
    }

    private static func roundToHalf(_ x: inout [Float], count: Int) {
        for i in 0..<count { x[i] = HalfFloat.toFloat(HalfFloat.fromFloat(x[i])) }
    }

    private func normalize(_ n: Int, _ weight: [Float], _ dim: Int) {
        let eps = model.configuration.rmsEpsilon
        x.withUnsafeBufferPointer { x in
            xb.withUnsafeMutableBufferPointer { out in
                weight.withUnsafeBufferPointer { w in
                    for t in 0..<n { Ops.rmsNorm(x.baseAddress! + t * dim, weight: w.baseAddress!, eps: eps, count: dim, into: out.baseAddress! + t * dim) }
                }
            }
        }
    }

    private func multiply(_ w: WeightMatrix, _ input: inout [Float], _ output: inout [Float], _ n: Int) {
        input.withUnsafeBufferPointer { i in
            output.withUnsafeMutableBufferPointer { o in
                MatMul.multiply(w, i.baseAddress!, o.baseAddress!, tokens: n, pool: pool, workspace: workspace)
            }
        }
    }

    private func addResidual(_ count: Int) {
        x.withUnsafeMutableBufferPointer { x in
            xb.withUnsafeBufferPointer { xb in
                for i in 0..<count { x[i] += xb[i] }
            }
        }
    }

    /// Causal grouped-query attention for the n new tokens against the whole cache.
    private func attend(_ n: Int, layer: Int) {
        let c = model.configuration
        let headSize = c.headDimension, qDim = c.qDimension
        let group = c.headCount / c.kvHeadCount
        let scale = 1 / Float(headSize).squareRoot()
        let pos0 = position
        let halfWeights = kvCacheType == .f16
        let pool = self.pool, scoreBuffers = self.scores
        q.withUnsafeBufferPointer { q in
            attention.withUnsafeMutableBufferPointer { out in
                cache.withLayer(layer) { kv in
                    let qp = SendablePointer(UnsafeMutablePointer(mutating: q.baseAddress!))
                    let op = SendablePointer(out.baseAddress!)
                    let jobs = n * c.headCount
                    let workers = max(1, min(pool.threads, jobs, scoreBuffers.count))
                    pool.run(workers) { worker in
                        let scores = scoreBuffers[worker].ensure(pos0 + n)
                        for job in stride(from: worker, to: jobs, by: workers) {
                            let t = job / c.headCount, h = job % c.headCount
                            let length = pos0 + t + 1
                            let query = qp.pointer + t * qDim + h * headSize
                            let kvOffset = (h / group) * headSize
                            for p in 0..<length { scores[p] = kv.dotKey(p, kvOffset, query, headSize) * scale }
                            Ops.softmax(scores, count: length)
                            if halfWeights {
                                // The weights meet F16 values, so llama.cpp rounds them to F16 too.
                                for p in 0..<length { scores[p] = HalfFloat.toFloat(HalfFloat.fromFloat(scores[p])) }
                            }
                            let result = op.pointer + t * qDim + h * headSize
                            result.update(repeating: 0, count: headSize)
                            for p in 0..<length { kv.addValue(scores[p], p, kvOffset, into: result, headSize) }
                        }
                    }
                }
            }
        }
    }
}

import GGUF
import Kernels
import Tokenizers

/// llama2.c's legacy checkpoint (`run.c` format): a header of seven int32 (dim, hidden_dim,
/// n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier
/// is stored separately), then float32 weights in run.c's order.
enum Llama2cCheckpoint {
    static func load(mapping: MappedFile, tokenizerPath: String) throws -> LlamaModel {
        let path = mapping.path
        let bytes = mapping.bytes
        guard bytes.count >= 28 else { throw LlamaError.notAModel(path: path, reason: "too short for a llama2.c checkpoint, and not GGUF") }
        let header = (0..<7).map { Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        let (dim, hidden, layers, heads, kvHeads, signedVocab, seqLen) = (header[0], header[1], header[2], header[3], header[4], header[5], header[6])
        let vocab = abs(signedVocab), shared = signedVocab > 0
        guard [dim, hidden, layers, heads, kvHeads, vocab, seqLen].allSatisfy({ $0 > 0 && $0 < 1 << 20 }),
              dim % heads == 0, heads % kvHeads == 0 else {
            throw LlamaError.notAModel(path: path, reason: "not a GGUF file, and its header \(header) is not a llama2.c checkpoint's")
        }
        let headSize = dim / heads, kvDim = kvHeads * headSize
        let config = LlamaConfiguration(embeddingLength: dim, feedForwardLength: hidden, layerCount: layers,
                                        headCount: heads, kvHeadCount: kvHeads, vocabularySize: vocab, contextLength: seqLen)

        // Element counts in file order; the RoPE tables llama2.c used to store are skipped.
        var offset = 28
        func take(_ count: Int) throws -> UnsafeRawPointer {
            let size = count * 4
            guard offset + size <= bytes.count else {
                throw LlamaError.truncated(path: path, reason: "at byte \(offset): the checkpoint needs \(size) more bytes, \(bytes.count - offset) are left")
            }
            defer { offset += size }
            return bytes.baseAddress! + offset
        }
        func matrices(_ rows: Int, _ columns: Int, _ name: String) throws -> [WeightMatrix] {
            let base = try take(layers * rows * columns)
            return try (0..<layers).map { l in
                try WeightMatrix(type: .f32, rows: rows, columns: columns, data: base + 4 * l * rows * columns, name: "\(name)[\(l)]")
            }
        }
        func vectors(_ count: Int, _ n: Int) throws -> [[Float]] {
            let base = try take(n * count).assumingMemoryBound(to: Float.self)
            return (0..<n).map { Array(UnsafeBufferPointer(start: base + $0 * count, count: count)) }
        }
        let embedding = try WeightMatrix(type: .f32, rows: vocab, columns: dim, data: take(vocab * dim), name: "token_embedding_table")
        let attentionNorms = try vectors(dim, layers)
        let wq = try matrices(dim, dim, "wq"), wk = try matrices(kvDim, dim, "wk"), wv = try matrices(kvDim, dim, "wv")
        let wo = try matrices(dim, dim, "wo")
        let ffnNorms = try vectors(dim, layers)
        let w1 = try matrices(hidden, dim, "w1"), w2 = try matrices(dim, hidden, "w2"), w3 = try matrices(hidden, dim, "w3")
        let finalNorm = try vectors(dim, 1)[0]
        _ = try take(seqLen * headSize / 2)  // freq_cis_real, no longer used
        _ = try take(seqLen * headSize / 2)  // freq_cis_imag
        let classifier = shared ? embedding : try WeightMatrix(type: .f32, rows: vocab, columns: dim, data: take(vocab * dim), name: "wcls")

        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer(.llama2c(contentsOf: tokenizerPath))
        } catch {
            throw ModelError("\(path) is a llama2.c checkpoint and needs its tokenizer: \(error.description). Give the path of its tokenizer.bin as the tokenizer.")
        }
        guard tokenizer.vocabularySize == vocab else {
            throw ModelError("\(tokenizerPath) has \(tokenizer.vocabularySize) tokens but the checkpoint \(path) has \(vocab)")
        }
        let blocks = (0..<layers).map { l in
            var b = BlockWeights()
            b.attentionNorm = attentionNorms[l]
            (b.q, b.k, b.v, b.attentionOutput) = (wq[l], wk[l], wv[l], wo[l])
            b.ffnNorm = ffnNorms[l]
            (b.gate, b.up, b.down) = (w1[l], w3[l], w2[l])
            return b
        }
        var weights = ModelWeights()
        (weights.tokenEmbedding, weights.outputNorm, weights.output) = (embedding, finalNorm, classifier)
        return LlamaModel(configuration: config, tokenizer: tokenizer, path: path, weights: weights, blocks: blocks, storage: mapping,
                          isLlama2cCheckpoint: true)
    }
}

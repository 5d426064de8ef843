import Foundation
import GGUF
import Kernels
import Tokenizers

/// A loaded Llama-architecture model: its configuration, its tokenizer, and its weights as views
/// into the memory-mapped file (nothing is copied but the small normalization vectors).
/// Immutable, so any number of contexts and threads may share one.
public final class LlamaModel: @unchecked Sendable {
    public let configuration: LlamaConfiguration
    public let tokenizer: Tokenizer
    public let path: String
    /// Loaded from a llama2.c `.bin` checkpoint rather than GGUF.
    public let isLlama2cCheckpoint: Bool
    /// How conversations become prompts: the file's own template (`tokenizer.chat_template`),
    /// parsed once at load, or the built-in format it points to.
    public let chatTemplate: ChatTemplate

    struct Layer {
        let attentionNorm: [Float]
        let wq, wk, wv, wo: WeightMatrix
        let ffnNorm: [Float]
        let gate, up, down: WeightMatrix
    }

    let tokenEmbedding: WeightMatrix
    let layers: [Layer]
    let outputNorm: [Float]
    let output: WeightMatrix
    /// Keeps the mapping the weight views point into alive.
    private let storage: AnyObject

    init(configuration: LlamaConfiguration, tokenizer: Tokenizer, path: String, tokenEmbedding: WeightMatrix,
         layers: [Layer], outputNorm: [Float], output: WeightMatrix, storage: AnyObject, isLlama2cCheckpoint: Bool = false,
         chatTemplateSource: String? = nil) {
        self.isLlama2cCheckpoint = isLlama2cCheckpoint
        self.chatTemplate = ChatTemplate.forModel(templateSource: chatTemplateSource, tokenizer: tokenizer)
        self.configuration = configuration
        self.tokenizer = tokenizer
        self.path = path
        self.tokenEmbedding = tokenEmbedding
        self.layers = layers
        self.outputNorm = outputNorm
        self.output = output
        self.storage = storage
    }

    /// Loads a GGUF file, or a llama2.c checkpoint (`.bin`, with `tokenizer` naming its
    /// tokenizer.bin; by default the `tokenizer.bin` beside it). With `progress`, the weights are
    /// also read into memory once (so the first token does not wait on the disk), and `progress`
    /// hears the fraction done, from 0 to 1.
    public static func load(path: String, tokenizer tokenizerPath: String? = nil, progress: ((Double) -> Void)? = nil) throws -> LlamaModel {
        let mapping = try MappedFile(path: path)
        let magic = mapping.count >= 4 ? Array(UnsafeRawBufferPointer(rebasing: mapping.bytes[0..<4])) : []
        if magic == GGUFFile.magic {
            let model = try load(gguf: GGUFFile(mapping: mapping))
            if let progress { touch(mapping.bytes, progress: progress) }
            return model
        }
        let tokenizerFile = tokenizerPath ?? (URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("tokenizer.bin").path)
        return try Llama2cCheckpoint.load(mapping: mapping, tokenizerPath: tokenizerFile)
    }

    /// Reads one byte of every page, so the file is resident; reports progress every 1%.
    static func touch(_ bytes: UnsafeRawBufferPointer, progress: (Double) -> Void) {
        let page = 4096
        var sum: UInt8 = 0
        var reported = -1
        var offset = 0
        while offset < bytes.count {
            sum &+= bytes[offset]
            let percent = offset * 100 / max(bytes.count, 1)
            if percent != reported {
                reported = percent
                progress(Double(percent) / 100)
            }
            offset += page
        }
        withExtendedLifetime(sum) {}
        progress(1)
    }

    public static func load(gguf file: GGUFFile) throws -> LlamaModel {
        let config = try LlamaConfiguration(gguf: file)
        let tokenizer = try Tokenizer(gguf: file)
        var used: Set<String> = []
        func tensor(_ name: String) throws -> GGUFTensorInfo {
            guard let t = file.tensor(named: name) else { throw ModelError("\(file.path): tensor '\(name)' is missing") }
            used.insert(name)
            return t
        }
        func matrix(_ name: String, rows: Int, columns: Int) throws -> WeightMatrix {
            let t = try tensor(name)
            guard (1...2).contains(t.shape.count), t.shape[0] == columns, (t.shape.count == 1 ? 1 : t.shape[1]) == rows else {
                throw ModelError("\(file.path): tensor '\(name)' has shape \(t.shape), expected [\(columns), \(rows)]")
            }
            return try WeightMatrix(type: t.type, rows: rows, columns: columns, data: file.data(of: t).baseAddress!, name: name)
        }
        func vector(_ name: String, count: Int) throws -> [Float] {
            let m = try matrix(name, rows: 1, columns: count)
            return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                m.dequantizeRow(0, into: buffer.baseAddress!)
                initialized = count
            }
        }
        let c = config
        var layers: [Layer] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            layers.append(Layer(
                attentionNorm: try vector(p + "attn_norm.weight", count: c.embeddingLength),
                wq: try matrix(p + "attn_q.weight", rows: c.qDimension, columns: c.embeddingLength),
                wk: try matrix(p + "attn_k.weight", rows: c.kvDimension, columns: c.embeddingLength),
                wv: try matrix(p + "attn_v.weight", rows: c.kvDimension, columns: c.embeddingLength),
                wo: try matrix(p + "attn_output.weight", rows: c.embeddingLength, columns: c.qDimension),
                ffnNorm: try vector(p + "ffn_norm.weight", count: c.embeddingLength),
                gate: try matrix(p + "ffn_gate.weight", rows: c.feedForwardLength, columns: c.embeddingLength),
                up: try matrix(p + "ffn_up.weight", rows: c.feedForwardLength, columns: c.embeddingLength),
                down: try matrix(p + "ffn_down.weight", rows: c.embeddingLength, columns: c.feedForwardLength)))
        }
        var config2 = config
        let embedding = try matrix("token_embd.weight", rows: config.vocabularySize, columns: c.embeddingLength)
        // Tied embeddings: without output.weight the token embedding doubles as the classifier.
        let output = file.tensor(named: "output.weight") != nil
            ? try matrix("output.weight", rows: config.vocabularySize, columns: c.embeddingLength) : embedding
        config2.vocabularySize = embedding.rows
        let outputNorm = try vector("output_norm.weight", count: c.embeddingLength)
        // A tensor nobody reads means the file is not what its metadata says (a block_count
        // smaller than the blocks present would silently run part of the model).
        // rope_freqs (Llama 3.1's RoPE factors) is read by the architecture work to come.
        for t in file.tensors where !used.contains(t.name) && t.name != "rope_freqs.weight" {
            if t.name.hasPrefix("blk."), let block = Int(t.name.dropFirst(4).prefix { $0.isNumber }), block >= c.layerCount {
                throw ModelError("\(file.path): metadata says \(c.layerCount) blocks (block_count) but the file has tensor '\(t.name)' of block \(block)")
            }
            throw ModelError("\(file.path): tensor '\(t.name)' is not used by the llama architecture; the file may be of another architecture or damaged")
        }
        return LlamaModel(configuration: config2, tokenizer: tokenizer, path: file.path, tokenEmbedding: embedding,
                          layers: layers, outputNorm: outputNorm,
                          output: output, storage: file, chatTemplateSource: file.string("tokenizer.chat_template"))
    }
}

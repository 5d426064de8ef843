import Foundation
import GGUF
import CKernels
import Kernels
import Tokenizers

/// A loaded model: its configuration, its architecture unit, its tokenizer, and its weights
/// as views into the memory-mapped file (nothing is copied but the small vectors: norms,
/// biases, RoPE factors). Immutable, so any number of contexts and threads may share one.
public final class LlamaModel: @unchecked Sendable {
    public let configuration: LlamaConfiguration
    public let tokenizer: Tokenizer
    public let path: String
    /// Loaded from a llama2.c `.bin` checkpoint rather than GGUF.
    public let isLlama2cCheckpoint: Bool
    /// How conversations become prompts: the file's own template (`tokenizer.chat_template`),
    /// parsed once at load, or the built-in format it points to.
    public let chatTemplate: ChatTemplate
    /// The unit that computes the blocks.
    public let architecture: any Architecture.Type

    let weights: ModelWeights
    let blocks: [BlockWeights]
    let tokenEmbedding: WeightMatrix
    let outputNorm: [Float]
    let output: WeightMatrix
    /// Keeps the mapping the weight views point into alive.
    private let storage: AnyObject

    init(configuration: LlamaConfiguration, architecture: any Architecture.Type = LlamaArchitecture.self, tokenizer: Tokenizer,
         path: String, weights: ModelWeights, blocks: [BlockWeights], storage: AnyObject, isLlama2cCheckpoint: Bool = false,
         chatTemplateSource: String? = nil) {
        self.isLlama2cCheckpoint = isLlama2cCheckpoint
        self.chatTemplate = ChatTemplate.forModel(templateSource: chatTemplateSource, tokenizer: tokenizer)
        self.configuration = configuration
        self.architecture = architecture
        self.tokenizer = tokenizer
        self.path = path
        self.weights = weights
        self.blocks = blocks
        self.tokenEmbedding = weights.tokenEmbedding!
        self.outputNorm = weights.outputNorm!
        // Tied embeddings: without output.weight the token embedding doubles as the classifier.
        self.output = weights.output ?? weights.tokenEmbedding!
        self.storage = storage
    }

    /// Loads a GGUF file, or a llama2.c checkpoint (`.bin`, with `tokenizer` naming its
    /// tokenizer.bin; by default the `tokenizer.bin` beside it). With `progress`, the weights are
    /// also read into memory once (so the first token does not wait on the disk), and `progress`
    /// hears the fraction done, from 0 to 1.
    /// Errors are `LlamaError`s: `.cannotRead`, `.notAModel`, `.truncated`, `.invalidModel`,
    /// `.unsupportedArchitecture` or `.unsupportedType`.
    public static func load(path: String, tokenizer tokenizerPath: String? = nil, progress: ((Double) -> Void)? = nil) throws(LlamaError) -> LlamaModel {
        do {
            return try open(path: path, tokenizer: tokenizerPath, progress: progress)
        } catch {
            throw LlamaError.loading(error, path: path)
        }
    }

    private static func open(path: String, tokenizer tokenizerPath: String?, progress: ((Double) -> Void)?) throws -> LlamaModel {
        let mapping = try MappedFile(path: path)
        let magic = mapping.count >= 4 ? Array(UnsafeRawBufferPointer(rebasing: mapping.bytes[0..<4])) : []
        if magic == GGUFFile.magic {
            let file = try GGUFFile(withParts: mapping)
            // Before loading: the regrouping in `load` releases pages that a later touch would read back.
            if let progress { touch(file.mappings.map(\.bytes), progress: progress) }
            return try bind(file)
        }
        let tokenizerFile = tokenizerPath ?? (URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("tokenizer.bin").path)
        return try Llama2cCheckpoint.load(mapping: mapping, tokenizerPath: tokenizerFile)
    }

    /// The vector code path of the kernels: "avx512", "avx2", "neon" or "scalar" (the best the CPU
    /// has, or what $LLAMA_CPU_PATH names, capped at the best).
    public static var kernelPath: String { String(cString: llk_isa()) }

    /// The matrices the blocks and the classifier multiply, regrouped for the running code path's
    /// kernels where it has them; their mapped pages are released, so memory holds one copy.
    /// Token embeddings are regrouped only when they double as the classifier (Gemma's 262k rows
    /// are most of the work of a small model); lookups then take rows out of their groups.
    static func regroup(_ blocks: inout [BlockWeights], _ weights: inout ModelWeights) {
        let matrices: [WritableKeyPath<BlockWeights, WeightMatrix?> & Sendable] = [\.q, \.k, \.v, \.qkv, \.attentionOutput, \.gate, \.up, \.down, \.gateUp]
        // The blocks in parallel (packing reads and writes every weight once: about a second per GB on one core).
        blocks.withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let shared = SendablePointer(base)
            DispatchQueue.concurrentPerform(iterations: buffer.count) { i in
                for path in matrices { shared.pointer[i][keyPath: path] = shared.pointer[i][keyPath: path]?.regrouped(releasingMappedPages: true) }
            }
        }
        if weights.output != nil {
            weights.output = weights.output?.regrouped(releasingMappedPages: true)
        } else {
            weights.tokenEmbedding = weights.tokenEmbedding?.regrouped(releasingMappedPages: true)
        }
    }

    /// Reads one byte of every page, so the files are resident; reports progress every 1%.
    static func touch(_ files: [UnsafeRawBufferPointer], progress: (Double) -> Void) {
        let page = 4096, total = max(1, files.reduce(0) { $0 + $1.count })
        var sum: UInt8 = 0
        var reported = -1
        var done = 0
        for bytes in files {
            var offset = 0
            while offset < bytes.count {
                sum &+= bytes[offset]
                let percent = (done + offset) * 100 / total
                if percent != reported {
                    reported = percent
                    progress(Double(percent) / 100)
                }
                offset += page
            }
            done += bytes.count
        }
        withExtendedLifetime(sum) {}
        progress(1)
    }

    public static func load(gguf file: GGUFFile) throws(LlamaError) -> LlamaModel {
        do {
            return try bind(file)
        } catch {
            throw LlamaError.loading(error, path: file.path)
        }
    }

    private static func bind(_ file: GGUFFile) throws -> LlamaModel {
        let config = try LlamaConfiguration(gguf: file)
        let unit = try Architectures.unit(for: file)
        let tokenizer = try Tokenizer(gguf: file)
        var binder = TensorBinder(file: file, config: config)
        var weights = ModelWeights()
        try binder.bind(unit.modelTensors, into: &weights)
        var blocks: [BlockWeights] = []
        for i in 0..<config.layerCount {
            var block = BlockWeights()
            try binder.bind(unit.blockTensors, prefix: "blk.\(i).", into: &block)
            if let problem = unit.validate(block, layer: i) { throw ModelError("\(file.path): \(problem)") }
            blocks.append(block)
        }
        try binder.checkAllUsed()
        regroup(&blocks, &weights)
        return LlamaModel(configuration: config, architecture: unit, tokenizer: tokenizer, path: file.path, weights: weights,
                          blocks: blocks, storage: file, chatTemplateSource: file.string("tokenizer.chat_template"))
    }
}

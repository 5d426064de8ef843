import GGUF
import Kernels

/// One model family, as `general.architecture` names it: the keys it reads beyond the common
/// ones, its tensor table, and its block, built from the shared pieces of `ForwardPass`.
/// Adding an architecture is one file with a conformance plus a line in `Architectures.all`.
public protocol Architecture: Sendable {
    /// The `general.architecture` value.
    static var name: String { get }
    /// Adjacent pairs (Llama GGUF files) or halves (NeoX: Qwen, Gemma, Phi).
    static var ropeStyle: Ops.RoPEStyle { get }
    /// Reads `{name}.*` keys beyond the common ones into the configuration: soft-caps,
    /// sliding windows, per-layer RoPE. The common keys are read before.
    static func configure(_ config: inout LlamaConfiguration, _ keys: MetadataReader) throws(ModelError)
    /// The tensors of block `blk.N.`, with their shapes and whether they are required.
    static var blockTensors: [TensorSpec<BlockWeights>] { get }
    /// The tensors outside the blocks.
    static var modelTensors: [TensorSpec<ModelWeights>] { get }
    /// One block over the batch in `pass`: reads and updates the residual stream `pass.x`.
    static func block(_ pass: ForwardPass, _ weights: BlockWeights, layer: Int)
    /// A reason the bound block cannot run, when the table alone cannot say (either-or tensors).
    static func validate(_ block: BlockWeights, layer: Int) -> String?
}

extension Architecture {
    public static func configure(_ config: inout LlamaConfiguration, _ keys: MetadataReader) throws(ModelError) {}

    public static func validate(_ block: BlockWeights, layer: Int) -> String? { nil }

    /// Token embeddings, final norm, an optional classifier (tied to the embeddings when absent).
    public static var modelTensors: [TensorSpec<ModelWeights>] { ModelWeights.standard }

    /// The pre-norm block of Llama and most of its descendants:
    /// `x += attention(norm(x)); x += ffn(norm(x))` with a SwiGLU FFN.
    public static func block(_ pass: ForwardPass, _ weights: BlockWeights, layer: Int) {
        pass.norm(weights.attentionNorm)
        pass.attention(weights, layer: layer)
        pass.addResidual()
        pass.norm(weights.ffnNorm)
        pass.feedForward(weights, activation: .silu)
        pass.addResidual()
    }
}

/// The registry: `general.architecture` to unit.
public enum Architectures {
    public static let all: [any Architecture.Type] = [
        LlamaArchitecture.self, Qwen2Architecture.self, Qwen3Architecture.self, Gemma2Architecture.self,
        Gemma3Architecture.self, Phi3Architecture.self, SmolLM3Architecture.self,
    ]

    public static var names: [String] { all.map { $0.name } }

    public static func unit(named name: String) -> (any Architecture.Type)? { all.first { $0.name == name } }

    /// The unit for a file; a file without `general.architecture` is taken as llama (llama2.c
    /// conversions and old files).
    static func unit(for file: GGUFFile) throws(ModelError) -> any Architecture.Type {
        let name = file.string("general.architecture") ?? "llama"
        guard let unit = unit(named: name) else {
            throw LlamaError.unsupportedArchitecture("\(file.path): architecture '\(name)' is not supported (supported: \(names.joined(separator: ", ")))")
        }
        return unit
    }
}

/// A size in a tensor's shape, resolved against the configuration.
public enum Dimension: Sendable, Equatable {
    case width, queryWidth, keyValueWidth, headSize, feedForward, vocabulary, ropePairs
    /// Q, K and V fused (Phi-3).
    case fusedQKV
    /// Gate and up fused (Phi-3).
    case fusedGateUp

    func value(_ c: LlamaConfiguration) -> Int {
        switch self {
        case .width: c.embeddingLength
        case .queryWidth: c.qDimension
        case .keyValueWidth: c.kvDimension
        case .headSize: c.headDimension
        case .feedForward: c.feedForwardLength
        case .vocabulary: c.vocabularySize
        case .ropePairs: c.ropeDimensions / 2
        case .fusedQKV: c.qDimension + 2 * c.kvDimension
        case .fusedGateUp: 2 * c.feedForwardLength
        }
    }
}

/// One row of an architecture's tensor table: the tensor's name (without `blk.N.`), where it
/// goes, its shape in GGUF order (columns first), and whether the file must have it.
public struct TensorSpec<Root>: @unchecked Sendable {
    enum Slot {
        case matrix(WritableKeyPath<Root, WeightMatrix?>)
        case vector(WritableKeyPath<Root, [Float]?>)
    }
    let name: String
    let slot: Slot
    let shape: [Dimension]
    let required: Bool

    /// A weight matrix of `rows` outputs over `columns` inputs, read in place from the mapping.
    public static func matrix(_ name: String, _ path: WritableKeyPath<Root, WeightMatrix?>, columns: Dimension, rows: Dimension, required: Bool = true) -> TensorSpec {
        TensorSpec(name: name, slot: .matrix(path), shape: [columns, rows], required: required)
    }

    /// A vector (norm weights, biases, RoPE factors), copied out as Float.
    public static func vector(_ name: String, _ path: WritableKeyPath<Root, [Float]?>, _ length: Dimension, required: Bool = true) -> TensorSpec {
        TensorSpec(name: name, slot: .vector(path), shape: [length], required: required)
    }
}

/// A block's weights. Which ones are set is the architecture's tensor table's business; the
/// loader guarantees the required ones are there.
public struct BlockWeights: Sendable {
    public var attentionNorm: [Float]?
    public var q, k, v: WeightMatrix?
    /// Q, K and V in one matrix (Phi-3), instead of `q`, `k`, `v`.
    public var qkv: WeightMatrix?
    public var qBias, kBias, vBias: [Float]?
    /// Per-head RMS norms of queries and keys before RoPE (Qwen3, Gemma 3).
    public var qNorm, kNorm: [Float]?
    public var attentionOutput: WeightMatrix?
    /// Norm of the attention output before the residual (Gemma 2/3).
    public var postAttentionNorm: [Float]?
    public var ffnNorm: [Float]?
    public var gate, up, down: WeightMatrix?
    /// Gate and up in one matrix (Phi-3), instead of `gate` and `up`.
    public var gateUp: WeightMatrix?
    /// Norm of the FFN output before the residual (Gemma 2/3).
    public var postFFNNorm: [Float]?
    public init() {}
}

/// The weights outside the blocks.
public struct ModelWeights: Sendable {
    public var tokenEmbedding: WeightMatrix?
    public var outputNorm: [Float]?
    /// Nil in the file means tied: the embeddings double as the classifier.
    public var output: WeightMatrix?
    /// Llama 3.1's per-pair RoPE frequency divisors.
    public var ropeFactors: [Float]?
    /// LongRoPE's divisors for contexts past the original one, and within it (Phi-3).
    public var ropeFactorsLong, ropeFactorsShort: [Float]?
    public init() {}

    public static var standard: [TensorSpec<ModelWeights>] {
        [.matrix("token_embd.weight", \.tokenEmbedding, columns: .width, rows: .vocabulary),
         .vector("output_norm.weight", \.outputNorm, .width),
         .matrix("output.weight", \.output, columns: .width, rows: .vocabulary, required: false)]
    }
}

/// Binds an architecture's tensor table to a GGUF file, checking every shape, and refusing any
/// tensor the table does not name.
struct TensorBinder {
    let file: GGUFFile
    let config: LlamaConfiguration
    let architecture: String
    private(set) var used: Set<String> = []

    init(file: GGUFFile, config: LlamaConfiguration) {
        self.file = file
        self.config = config
        self.architecture = config.architecture
    }

    mutating func bind<Root>(_ specs: [TensorSpec<Root>], prefix: String = "", into root: inout Root) throws {
        for spec in specs {
            let name = prefix + spec.name
            guard let t = file.tensor(named: name) else {
                if spec.required { throw ModelError("\(file.path): tensor '\(name)' is missing; the \(architecture) architecture requires it") }
                continue
            }
            used.insert(name)
            let expected = spec.shape.map { $0.value(config) }
            // GGUF drops trailing 1s; a vector may be stored as [n] or [n, 1].
            var shape = t.shape
            while shape.count > expected.count, shape.last == 1 { shape.removeLast() }
            while !shape.isEmpty, shape.count < expected.count { shape.append(1) }
            guard shape == expected else {
                throw ModelError("\(file.path): tensor '\(name)' has shape \(t.shape), expected \(expected)")
            }
            let rows = expected.count > 1 ? expected[1] : 1
            let matrix = try WeightMatrix(type: t.type, rows: rows, columns: expected[0], data: file.data(of: t).baseAddress!, name: name)
            switch spec.slot {
            case .matrix(let path): root[keyPath: path] = matrix
            case .vector(let path):
                root[keyPath: path] = [Float](unsafeUninitializedCapacity: matrix.columns) { buffer, initialized in
                    matrix.dequantizeRow(0, into: buffer.baseAddress!)
                    initialized = matrix.columns
                }
            }
        }
    }

    /// A tensor nobody reads means the file is not what its metadata says (a block_count
    /// smaller than the blocks present would silently run part of the model).
    func checkAllUsed() throws {
        for t in file.tensors where !used.contains(t.name) {
            if t.name.hasPrefix("blk."), let block = Int(t.name.dropFirst(4).prefix { $0.isNumber }), block >= config.layerCount {
                throw ModelError("\(file.path): metadata says \(config.layerCount) blocks (block_count) but the file has tensor '\(t.name)' of block \(block)")
            }
            throw ModelError("\(file.path): tensor '\(t.name)' is not used by the \(architecture) architecture; the file may be of another architecture or damaged")
        }
    }
}

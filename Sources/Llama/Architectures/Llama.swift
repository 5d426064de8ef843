import Kernels

/// Llama 1/2/3.x and the files that say "llama": Mistral, TinyLlama, SmolLM2, Mistral Nemo
/// (whose `attention.key_length` differs from width / heads; read with the common keys).
///
/// Keys beyond the common ones: `attention.sliding_window` (Mistral 7B v0.1; every layer
/// attends to that many positions). Tensors: `rope_freqs` (Llama 3.1's RoPE factors,
/// optional, `rope.dimension_count / 2` of them).
public enum LlamaArchitecture: Architecture {
    public static let name = "llama"
    public static let ropeStyle = Ops.RoPEStyle.normal

    public static func configure(_ config: inout LlamaConfiguration, _ keys: MetadataReader) throws(ModelError) {
        if keys.has("attention.sliding_window") {
            let window = try keys.integer("attention.sliding_window", in: 0...(1 << 40))
            if window > 0 { for l in config.layers.indices { config.layers[l].slidingWindow = window } }
        }
    }

    public static var modelTensors: [TensorSpec<ModelWeights>] {
        ModelWeights.standard + [.vector("rope_freqs.weight", \.ropeFactors, .ropePairs, required: false)]
    }

    public static var blockTensors: [TensorSpec<BlockWeights>] {
        TensorTables.attention() + TensorTables.feedForward
    }
}

import Kernels

/// SmolLM3: the Llama block, but every 4th layer attends without RoPE (NoPE).
public enum SmolLM3Architecture: Architecture {
    public static let name = "smollm3"
    public static let ropeStyle = Ops.RoPEStyle.normal

    /// Layers l with (l + 1) % 4 == 0 have no positional rotation.
    static let noRoPEStep = 4

    public static func configure(_ config: inout LlamaConfiguration, _ keys: MetadataReader) throws(ModelError) {
        for l in config.layers.indices where (l + 1) % noRoPEStep == 0 { config.layers[l].rotates = false }
    }

    public static var blockTensors: [TensorSpec<BlockWeights>] {
        TensorTables.attention() + TensorTables.feedForward
    }
}

import Kernels

/// Qwen3 (dense): the Llama block with per-head RMS norms on Q and K before RoPE, NeoX RoPE.
public enum Qwen3Architecture: Architecture {
    public static let name = "qwen3"
    public static let ropeStyle = Ops.RoPEStyle.neox

    public static var blockTensors: [TensorSpec<BlockWeights>] {
        TensorTables.attention() + TensorTables.queryKeyNorms + TensorTables.feedForward
    }
}

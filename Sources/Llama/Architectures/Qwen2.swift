import Kernels

/// Qwen2 and Qwen2.5: the Llama block with biases on Q, K and V, and NeoX RoPE; the classifier
/// is tied to the embeddings in the small sizes.
public enum Qwen2Architecture: Architecture {
    public static let name = "qwen2"
    public static let ropeStyle = Ops.RoPEStyle.neox

    public static var blockTensors: [TensorSpec<BlockWeights>] {
        TensorTables.attention(biases: true, requiredBiases: true) + TensorTables.feedForward
    }
}

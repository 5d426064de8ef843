/// Rows of tensor tables that many architectures share, so each unit lists only what it adds.
public enum TensorTables {
    /// `attn_norm`, Q, K, V and output projections, optionally with Q/K/V biases.
    public static func attention(biases: Bool = false, requiredBiases: Bool = false) -> [TensorSpec<BlockWeights>] {
        var rows: [TensorSpec<BlockWeights>] = [
            .vector("attn_norm.weight", \.attentionNorm, .width),
            .matrix("attn_q.weight", \.q, columns: .width, rows: .queryWidth),
            .matrix("attn_k.weight", \.k, columns: .width, rows: .keyValueWidth),
            .matrix("attn_v.weight", \.v, columns: .width, rows: .keyValueWidth),
            .matrix("attn_output.weight", \.attentionOutput, columns: .queryWidth, rows: .width),
        ]
        if biases {
            rows += [.vector("attn_q.bias", \.qBias, .queryWidth, required: requiredBiases),
                     .vector("attn_k.bias", \.kBias, .keyValueWidth, required: requiredBiases),
                     .vector("attn_v.bias", \.vBias, .keyValueWidth, required: requiredBiases)]
        }
        return rows
    }

    /// Per-head RMS norms of queries and keys (Qwen3, Gemma 3).
    public static let queryKeyNorms: [TensorSpec<BlockWeights>] = [
        .vector("attn_q_norm.weight", \.qNorm, .headSize),
        .vector("attn_k_norm.weight", \.kNorm, .headSize),
    ]

    /// `ffn_norm` and a gated FFN: gate, up, down.
    public static let feedForward: [TensorSpec<BlockWeights>] = [
        .vector("ffn_norm.weight", \.ffnNorm, .width),
        .matrix("ffn_gate.weight", \.gate, columns: .width, rows: .feedForward),
        .matrix("ffn_up.weight", \.up, columns: .width, rows: .feedForward),
        .matrix("ffn_down.weight", \.down, columns: .feedForward, rows: .width),
    ]

    /// Norms on the attention and FFN outputs (Gemma 2 and 3).
    public static let postNorms: [TensorSpec<BlockWeights>] = [
        .vector("post_attention_norm.weight", \.postAttentionNorm, .width),
        .vector("post_ffw_norm.weight", \.postFFNNorm, .width),
    ]
}

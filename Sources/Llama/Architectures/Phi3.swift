import Kernels

/// Phi-3 and Phi-4 mini: fused QKV (`attn_qkv`, or separate Q/K/V), fused gate|up in `ffn_up`
/// (gate first), queries scaled before the product, NeoX RoPE, and LongRoPE: per-pair factors
/// `rope_factors_short` within the original context and `rope_factors_long` past it, with
/// `rope.scaling.attn_factor` on cos and sin.
public enum Phi3Architecture: Architecture {
    public static let name = "phi3"
    public static let ropeStyle = Ops.RoPEStyle.neox

    public static func configure(_ config: inout LlamaConfiguration, _ keys: MetadataReader) throws(ModelError) {
        config.scalesQueries = true
    }

    public static var modelTensors: [TensorSpec<ModelWeights>] {
        ModelWeights.standard + [
            .vector("rope_factors_long.weight", \.ropeFactorsLong, .ropePairs, required: false),
            .vector("rope_factors_short.weight", \.ropeFactorsShort, .ropePairs, required: false),
        ]
    }

    public static var blockTensors: [TensorSpec<BlockWeights>] {
        [.vector("attn_norm.weight", \.attentionNorm, .width),
         .matrix("attn_qkv.weight", \.qkv, columns: .width, rows: .fusedQKV, required: false),
         .matrix("attn_q.weight", \.q, columns: .width, rows: .queryWidth, required: false),
         .matrix("attn_k.weight", \.k, columns: .width, rows: .keyValueWidth, required: false),
         .matrix("attn_v.weight", \.v, columns: .width, rows: .keyValueWidth, required: false),
         .matrix("attn_output.weight", \.attentionOutput, columns: .queryWidth, rows: .width),
         .vector("ffn_norm.weight", \.ffnNorm, .width),
         .matrix("ffn_up.weight", \.gateUp, columns: .width, rows: .fusedGateUp),
         .matrix("ffn_down.weight", \.down, columns: .feedForward, rows: .width)]
    }

    public static func validate(_ block: BlockWeights, layer: Int) -> String? {
        if block.qkv == nil, block.q == nil || block.k == nil || block.v == nil {
            return "block \(layer) has neither attn_qkv nor all of attn_q, attn_k and attn_v"
        }
        return nil
    }
}

import Kernels

/// What Gemma 2 and Gemma 3 share: embeddings scaled by √width, norms before and after both
/// sublayers, a GeGLU FFN with tanh GELU, queries scaled before the product, NeoX RoPE, and
/// sliding-window layers in a repeating pattern.
enum Gemma {
    /// `x += postNorm(attention(norm(x))); x += postNorm(ffn(norm(x)))`.
    static func block(_ pass: ForwardPass, _ w: BlockWeights, layer: Int) {
        pass.norm(w.attentionNorm)
        pass.attention(w, layer: layer)
        pass.normOutput(w.postAttentionNorm)
        pass.addResidual()
        pass.norm(w.ffnNorm)
        pass.feedForward(w, activation: .gelu)
        pass.normOutput(w.postFFNNorm)
        pass.addResidual()
    }

    /// Sets the settings both share; `pattern` is how many layers make one sliding… global
    /// cycle (the last of each is global) unless the file lists them.
    static func configure(_ c: inout LlamaConfiguration, _ keys: MetadataReader, window: Int?, pattern: Int,
                          slidingBase: Float, largestLayerCount: Int) throws(ModelError) {
        c.embeddingScale = Float(c.embeddingLength).squareRoot()
        c.scalesQueries = true
        // The largest sizes scale by width / heads instead of the head size (as Gemma's reference code).
        c.attentionScale = 1 / (c.layerCount == largestLayerCount
            ? Float(c.embeddingLength / c.headCount) : Float(c.headDimension)).squareRoot()
        if keys.has("final_logit_softcapping") {
            c.finalLogitSoftCap = try keys.real("final_logit_softcapping", default: 0)
        }
        guard let window, window > 0 else { return }
        let sliding: [Bool]
        if let flags = try keys.flags("attention.sliding_window_pattern", count: c.layerCount) {
            sliding = flags
        } else {
            let n = try keys.integer("attention.sliding_window_pattern", default: pattern, in: 0...100_000)
            sliding = (0..<c.layerCount).map { n == 0 || $0 % n < n - 1 }
        }
        for l in c.layers.indices where sliding[l] {
            c.layers[l].slidingWindow = window
            c.layers[l].ropeBase = slidingBase
            c.layers[l].ropeScaling = .none
        }
    }
}

/// Gemma 2: the Gemma block, soft-capped attention scores and final logits, every other
/// layer sliding (window 4096 unless the file says), classifier tied to the embeddings.
public enum Gemma2Architecture: Architecture {
    public static let name = "gemma2"
    public static let ropeStyle = Ops.RoPEStyle.neox

    public static func configure(_ config: inout LlamaConfiguration, _ keys: MetadataReader) throws(ModelError) {
        let window = try keys.integer("attention.sliding_window", default: 4096, in: 0...(1 << 40))
        try Gemma.configure(&config, keys, window: window, pattern: 2,
                            slidingBase: try keys.real("rope.freq_base_swa", default: Double(config.ropeBase)), largestLayerCount: 46)
        if keys.has("attn_logit_softcapping") {
            config.attentionSoftCap = try keys.real("attn_logit_softcapping", default: 0)
        }
        // Gemma 2's sliding layers keep the global scaling (llama.cpp copies it).
        for l in config.layers.indices { config.layers[l].ropeScaling = config.ropeScaling }
    }

    public static var modelTensors: [TensorSpec<ModelWeights>] {
        [.matrix("token_embd.weight", \.tokenEmbedding, columns: .width, rows: .vocabulary),
         .vector("output_norm.weight", \.outputNorm, .width)]
    }

    public static var blockTensors: [TensorSpec<BlockWeights>] {
        TensorTables.attention() + TensorTables.feedForward + TensorTables.postNorms
    }

    public static func block(_ pass: ForwardPass, _ weights: BlockWeights, layer: Int) {
        Gemma.block(pass, weights, layer: layer)
    }
}

/// Gemma 3 (text): the Gemma block with Q/K norms; five sliding layers (RoPE base 10,000) to
/// each global one (the file's base and linear scaling), when `attention.sliding_window` is set.
public enum Gemma3Architecture: Architecture {
    public static let name = "gemma3"
    public static let ropeStyle = Ops.RoPEStyle.neox

    public static func configure(_ config: inout LlamaConfiguration, _ keys: MetadataReader) throws(ModelError) {
        let window = keys.has("attention.sliding_window") ? try keys.integer("attention.sliding_window", in: 0...(1 << 40)) : nil
        try Gemma.configure(&config, keys, window: window, pattern: 6,
                            slidingBase: try keys.real("rope.freq_base_swa", default: 10_000), largestLayerCount: 62)
    }

    public static var blockTensors: [TensorSpec<BlockWeights>] {
        TensorTables.attention() + TensorTables.queryKeyNorms + TensorTables.feedForward + TensorTables.postNorms
    }

    public static func block(_ pass: ForwardPass, _ weights: BlockWeights, layer: Int) {
        Gemma.block(pass, weights, layer: layer)
    }
}

import Foundation

/// The small element-wise kernels of a transformer block, written as llama.cpp computes them
/// (sums of squares and softmax denominators in Double, as ggml does).
public enum Ops {
    /// `out = x / sqrt(mean(x^2) + eps) * weight`.
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float, count n: Int, into out: UnsafeMutablePointer<Float>) {
        var sum: Double = 0
        for i in 0..<n { sum += Double(x[i] * x[i]) }
        let mean = Float(sum / Double(n))
        let scale = 1 / (mean + eps).squareRoot()
        for i in 0..<n { out[i] = (x[i] * scale) * weight[i] }
    }

    /// In-place softmax over `n` values.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        var maxValue = -Float.infinity
        for i in 0..<n { maxValue = max(maxValue, x[i]) }
        var sum: Double = 0
        for i in 0..<n {
            let e = expf(x[i] - maxValue)
            x[i] = e
            sum += Double(e)
        }
        let inverse = Float(1 / sum)
        for i in 0..<n { x[i] *= inverse }
    }

    /// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`.
    public static func swiGLU(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    public enum RoPEStyle: String, Sendable, Codable {
        /// Adjacent pairs (x[2i], x[2i+1]): llama.cpp's "normal" mode, used by Llama GGUF files and llama2.c.
        case normal
        /// Halves (x[i], x[i + d/2]): GPT-NeoX style, used by Qwen, Phi, Falcon and others.
        case neox
    }

    /// Per-pair cos/sin for one position: `theta_i = position * base^(-2i/dims)`, computed by
    /// repeated multiplication as ggml does.
    public static func ropeTable(position: Int, dimensions: Int, base: Float, into table: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(base, -2 / Float(dimensions))
        var theta = Float(position)
        for i in 0..<dimensions / 2 {
            table[2 * i] = cosf(theta)
            table[2 * i + 1] = sinf(theta)
            theta *= thetaScale
        }
    }

    /// Rotates the first `dimensions` values of each of `heads` vectors of `headSize` at `x`.
    public static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headSize: Int, dimensions: Int, table: UnsafePointer<Float>, style: RoPEStyle) {
        // Loaders check this against the file; a rotation past the head would write into the next one.
        precondition(dimensions <= headSize, "RoPE over \(dimensions) dimensions of a \(headSize)-wide head")
        for h in 0..<heads {
            let v = x + h * headSize
            for i in 0..<dimensions / 2 {
                let c = table[2 * i], s = table[2 * i + 1]
                let (a, b) = style == .normal ? (2 * i, 2 * i + 1) : (i, i + dimensions / 2)
                let x0 = v[a], x1 = v[b]
                v[a] = x0 * c - x1 * s
                v[b] = x0 * s + x1 * c
            }
        }
    }
}

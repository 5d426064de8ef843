import CKernels
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

    /// SwiGLU: `gate[i] = silu(gate[i]) * up[i]`, over the pool's threads where one is given.
    public static func swiGLU(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int, pool: ThreadPool? = nil) {
        split(n, pool) { start, end in llk_swiglu(gate + start, up + start, Int64(end - start)) }
    }

    /// Runs `body` over 0..<n in one contiguous part per thread (whole cache lines each), or at
    /// once where the work is too small to be worth waking the pool.
    static func split(_ n: Int, _ pool: ThreadPool?, _ body: @escaping (Int, Int) -> Void) {
        let parts = min(pool?.threads ?? 1, n / 4096)
        guard parts > 1, let pool else { return body(0, n) }
        let per = ((n + parts - 1) / parts + 15) & ~15
        pool.run(parts) { part in
            let start = part * per, end = min(n, start + per)
            if start < end { body(start, end) }
        }
    }

    public enum RoPEStyle: String, Sendable, Codable {
        /// Adjacent pairs (x[2i], x[2i+1]): llama.cpp's "normal" mode, used by Llama GGUF files and llama2.c.
        case normal
        /// Halves (x[i], x[i + d/2]): GPT-NeoX style, used by Qwen, Phi, Falcon and others.
        case neox
    }

    /// How a model stretches its rotary positions past its training context, as ggml's
    /// `rope_ext` takes it: `scale` divides the frequencies (linear scaling is `1 / factor`); YaRN
    /// blends interpolated and extrapolated frequencies over the dimensions between
    /// `rampLow..rampHigh` by `extrapolation`, and scales cos and sin by `magnitude`.
    public struct RoPEScaling: Sendable, Codable, Equatable {
        public var scale: Float = 1
        public var extrapolation: Float = 0
        public var magnitude: Float = 1
        public var rampLow: Float = 0
        public var rampHigh: Float = 0
        public init(scale: Float = 1, extrapolation: Float = 0, magnitude: Float = 1, rampLow: Float = 0, rampHigh: Float = 0) {
            self.scale = scale
            self.extrapolation = extrapolation
            self.magnitude = magnitude
            self.rampLow = rampLow
            self.rampHigh = rampHigh
        }
        public static let none = RoPEScaling()

        /// YaRN's ramp bounds: the dimensions whose wavelength fits `betaFast` and `betaSlow`
        /// rotations in the original context.
        public static func yarn(factor: Float, dimensions: Int, originalContext: Int, base: Float,
                                betaFast: Float = 32, betaSlow: Float = 1, attentionFactor: Float = 1) -> RoPEScaling {
            func dimension(_ rotations: Float) -> Float {
                Float(dimensions) * logf(Float(originalContext) / (rotations * 2 * Float.pi)) / (2 * logf(base))
            }
            let low = max(0, floorf(dimension(betaFast))), high = min(Float(dimensions - 1), ceilf(dimension(betaSlow)))
            // ggml multiplies by 1 + 0.1 ln(factor) inside; llama.cpp divides it out again and
            // applies its own magnitude, which for plain YaRN is the same value.
            let m: Float = factor <= 1 ? 1 : 0.1 * logf(factor) + 1
            return RoPEScaling(scale: 1 / factor, extrapolation: 1, magnitude: m * attentionFactor, rampLow: low, rampHigh: high)
        }
    }

    /// Per-pair cos/sin for one position: `theta_i = position * base^(-2i/dims)`, computed by
    /// repeated multiplication as ggml does.
    public static func ropeTable(position: Int, dimensions: Int, base: Float, into table: UnsafeMutablePointer<Float>) {
        ropeTable(position: position, dimensions: dimensions, base: base, scaling: .none, factors: nil, into: table)
    }

    /// The table with scaling and, where the model has them, per-pair frequency divisors
    /// (Llama 3.1's `rope_freqs`, LongRoPE's factors).
    public static func ropeTable(position: Int, dimensions: Int, base: Float, scaling: RoPEScaling,
                                 factors: UnsafePointer<Float>?, into table: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(base, -2 / Float(dimensions))
        var theta = Float(position)
        for i in 0..<dimensions / 2 {
            let extrapolated = factors.map { theta / $0[i] } ?? theta
            var angle = scaling.scale * extrapolated
            if scaling.extrapolation != 0 {
                let y = (Float(i) - scaling.rampLow) / max(0.001, scaling.rampHigh - scaling.rampLow)
                let mix = (1 - min(1, max(0, y))) * scaling.extrapolation
                angle = angle * (1 - mix) + extrapolated * mix
            }
            table[2 * i] = cosf(angle) * scaling.magnitude
            table[2 * i + 1] = sinf(angle) * scaling.magnitude
            theta *= thetaScale
        }
    }

    /// GeGLU with the tanh form of GELU (Gemma): `gate[i] = gelu(gate[i]) * up[i]`. As ggml does on
    /// the CPU, GELU is read from a table over binary16 inputs (saturating outside -10...10).
    public static func geGLU(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int, pool: ThreadPool? = nil) {
        let table = geluTable
        split(n, pool) { start, end in
            for i in start..<end {
                let g = gate[i]
                if g <= -10 { gate[i] = 0 } else if g >= 10 { gate[i] = g * up[i] } else {
                    gate[i] = HalfFloat.toFloat(table[Int(HalfFloat.fromFloat(g))]) * up[i]
                }
            }
        }
    }

    /// GELU (tanh form) in Float.
    public static func gelu(_ x: Float) -> Float {
        0.5 * x * (1 + tanhf(0.79788456080286535587989211986876 * x * (1 + 0.044715 * x * x)))
    }

    /// GELU of every binary16 value, rounded to binary16.
    static let geluTable: [UInt16] = (0...0xFFFF).map { HalfFloat.fromFloat(gelu(HalfFloat.toFloat(UInt16($0)))) }

    /// `x = cap * tanh(x / cap)`: Gemma 2's soft limit on attention scores and logits.
    public static func softCap(_ x: UnsafeMutablePointer<Float>, count n: Int, cap: Float) {
        for i in 0..<n { x[i] = cap * tanhf(x[i] / cap) }
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

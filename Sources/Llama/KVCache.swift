import CKernels
import Kernels

/// Keys and values of every layer and position, `[layer][position][kvDimension]`, stored in
/// binary16 (half the memory, llama.cpp's default) or Float.
struct KVCache {
    let layerStride: Int
    let kvDimension: Int
    let type: LlamaContext.KVCacheType
    private(set) var keys16: [UInt16] = []
    private(set) var values16: [UInt16] = []
    private(set) var keys32: [Float] = []
    private(set) var values32: [Float] = []

    init(layers: Int, positions: Int, kvDimension: Int, type: LlamaContext.KVCacheType) {
        layerStride = positions * kvDimension
        self.kvDimension = kvDimension
        self.type = type
        let count = layers * layerStride
        switch type {
        case .f16:
            keys16 = [UInt16](repeating: 0, count: count)
            values16 = keys16
        case .f32:
            keys32 = [Float](repeating: 0, count: count)
            values32 = keys32
        }
    }

    /// Stores `count` positions of keys and values (rows of kvDimension) from `position` on.
    mutating func store(layer: Int, position: Int, count: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
        let start = layer * layerStride + position * kvDimension, n = count * kvDimension
        switch type {
        case .f16:
            keys16.withUnsafeMutableBufferPointer { KVCache.toHalf(k, $0.baseAddress! + start, n) }
            values16.withUnsafeMutableBufferPointer { KVCache.toHalf(v, $0.baseAddress! + start, n) }
        case .f32:
            keys32.withUnsafeMutableBufferPointer { ($0.baseAddress! + start).update(from: k, count: n) }
            values32.withUnsafeMutableBufferPointer { ($0.baseAddress! + start).update(from: v, count: n) }
        }
    }

    private static func toHalf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, _ n: Int) {
        if llk_to_half(x, y, Int64(n)) == 0 {
            for i in 0..<n { y[i] = HalfFloat.fromFloat(x[i]) }
        }
    }

    /// Read access for the attention workers: raw pointers to one layer's keys and values.
    func withLayer<R>(_ layer: Int, _ body: (Layer) -> R) -> R {
        let start = layer * layerStride
        switch type {
        case .f16:
            return keys16.withUnsafeBufferPointer { k in
                values16.withUnsafeBufferPointer { v in
                    body(Layer(keys16: k.baseAddress! + start, values16: v.baseAddress! + start, keys32: nil, values32: nil, kvDimension: kvDimension))
                }
            }
        case .f32:
            return keys32.withUnsafeBufferPointer { k in
                values32.withUnsafeBufferPointer { v in
                    body(Layer(keys16: nil, values16: nil, keys32: k.baseAddress! + start, values32: v.baseAddress! + start, kvDimension: kvDimension))
                }
            }
        }
    }

    struct Layer: @unchecked Sendable {
        let keys16: UnsafePointer<UInt16>?
        let values16: UnsafePointer<UInt16>?
        let keys32: UnsafePointer<Float>?
        let values32: UnsafePointer<Float>?
        let kvDimension: Int

        /// key(position)[offset..<offset+n] . query
        @inline(__always) func dotKey(_ position: Int, _ offset: Int, _ query: UnsafePointer<Float>, _ n: Int) -> Float {
            let i = position * kvDimension + offset
            if let keys16 { return llk_dot_f16(keys16 + i, query, Int64(n)) }
            return llk_dot_f32(keys32! + i, query, Int64(n))
        }

        /// out += weight * value(position)[offset..<offset+n]
        @inline(__always) func addValue(_ weight: Float, _ position: Int, _ offset: Int, into out: UnsafeMutablePointer<Float>, _ n: Int) {
            let i = position * kvDimension + offset
            if let values16 {
                llk_axpy_f16(weight, values16 + i, out, Int64(n))
            } else {
                llk_axpy(weight, values32! + i, out, Int64(n))
            }
        }
    }
}

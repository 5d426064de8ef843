import CKernels
import Kernels

/// Keys and values of every layer and position of one sequence, `[layer][position][kvDimension]`,
/// stored in binary16 (half the memory, llama.cpp's default) or Float. Memory is reserved at
/// once and filled as positions are used.
final class KVCache: @unchecked Sendable {
    let layerStride: Int
    let kvDimension: Int
    let type: LlamaContext.KVCacheType
    private let keys: UnsafeMutableRawPointer
    private let values: UnsafeMutableRawPointer

    init(layers: Int, positions: Int, kvDimension: Int, type: LlamaContext.KVCacheType) {
        layerStride = positions * kvDimension
        self.kvDimension = kvDimension
        self.type = type
        let bytes = max(1, layers * layerStride) * (type == .f16 ? 2 : 4)
        keys = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        values = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Stores `count` positions of keys and values (rows of kvDimension) from `position` on.
    func store(layer: Int, position: Int, count: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
        let start = layer * layerStride + position * kvDimension, n = count * kvDimension
        switch type {
        case .f16:
            KVCache.toHalf(k, keys.assumingMemoryBound(to: UInt16.self) + start, n)
            KVCache.toHalf(v, values.assumingMemoryBound(to: UInt16.self) + start, n)
        case .f32:
            (keys.assumingMemoryBound(to: Float.self) + start).update(from: k, count: n)
            (values.assumingMemoryBound(to: Float.self) + start).update(from: v, count: n)
        }
    }

    private static func toHalf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, _ n: Int) {
        if llk_to_half(x, y, Int64(n)) == 0 {
            for i in 0..<n { y[i] = HalfFloat.fromFloat(x[i]) }
        }
    }

    /// Raw pointers to one layer's keys and values, for the attention workers.
    func layer(_ layer: Int) -> Layer {
        let start = layer * layerStride
        switch type {
        case .f16:
            return Layer(keys16: UnsafePointer(keys.assumingMemoryBound(to: UInt16.self) + start),
                         values16: UnsafePointer(values.assumingMemoryBound(to: UInt16.self) + start), keys32: nil, values32: nil, kvDimension: kvDimension)
        case .f32:
            return Layer(keys16: nil, values16: nil, keys32: UnsafePointer(keys.assumingMemoryBound(to: Float.self) + start),
                         values32: UnsafePointer(values.assumingMemoryBound(to: Float.self) + start), kvDimension: kvDimension)
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

import CKernels
import Kernels

/// Keys and values of every layer and position of one sequence, `[layer][slot][kvDimension]`,
/// stored in binary16 (half the memory, llama.cpp's default) or Float. A layer that attends to
/// the whole context has a slot per position; a sliding-window layer keeps a ring of its window
/// plus one batch (position p in slot p % capacity), so its memory does not grow with the
/// context. Memory is reserved at once and filled as positions are used.
final class KVCache: @unchecked Sendable {
    let kvDimension: Int
    let type: LlamaContext.KVCacheType
    /// Slots of each layer, and where each layer starts (in elements).
    let capacities: [Int]
    private let offsets: [Int]
    private let keys: UnsafeMutableRawPointer
    private let values: UnsafeMutableRawPointer

    /// Slots a layer needs: every position, or its window plus one batch (a batch's tokens are
    /// all stored before any attends, and the first still needs its window).
    static func capacity(contextSize: Int, window: Int?, batchSize: Int) -> Int {
        guard let window else { return contextSize }
        return min(contextSize, window + batchSize)
    }

    init(capacities: [Int], kvDimension: Int, type: LlamaContext.KVCacheType) {
        self.capacities = capacities
        self.kvDimension = kvDimension
        self.type = type
        var offsets: [Int] = []
        var total = 0
        for c in capacities {
            offsets.append(total)
            total += c * kvDimension
        }
        self.offsets = offsets
        let bytes = max(1, total) * (type == .f16 ? 2 : 4)
        keys = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        values = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Writes every byte once, so the pages are resident now rather than as positions fill.
    func commit() {
        let bytes = max(1, capacities.reduce(0, +) * kvDimension) * (type == .f16 ? 2 : 4)
        keys.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        values.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }

    /// Whether every layer still holds what attending from `position` on needs, when `filled`
    /// positions were written: a ring may have overwritten the start of the window.
    func canResume(at position: Int, filled: Int, windows: [Int?]) -> Bool {
        for (l, window) in windows.enumerated() {
            guard let window, capacities[l] < filled else { continue }
            if max(0, position - window + 1) < filled - capacities[l] { return false }
        }
        return true
    }

    /// Stores `count` positions of keys and values (rows of kvDimension) from `position` on.
    func store(layer: Int, position: Int, count: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
        let capacity = capacities[layer]
        var done = 0
        while done < count {
            // Up to the end of the ring, then again from its start.
            let slot = (position + done) % capacity
            let run = min(count - done, capacity - slot)
            let start = offsets[layer] + slot * kvDimension, n = run * kvDimension
            let source = done * kvDimension
            switch type {
            case .f16:
                KVCache.toHalf(k + source, keys.assumingMemoryBound(to: UInt16.self) + start, n)
                KVCache.toHalf(v + source, values.assumingMemoryBound(to: UInt16.self) + start, n)
            case .f32:
                (keys.assumingMemoryBound(to: Float.self) + start).update(from: k + source, count: n)
                (values.assumingMemoryBound(to: Float.self) + start).update(from: v + source, count: n)
            }
            done += run
        }
    }

    private static func toHalf(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<UInt16>, _ n: Int) {
        if llk_to_half(x, y, Int64(n)) == 0 {
            for i in 0..<n { y[i] = HalfFloat.fromFloat(x[i]) }
        }
    }

    /// Raw pointers to one layer's keys and values, for the attention workers.
    func layer(_ layer: Int) -> Layer {
        let start = offsets[layer]
        switch type {
        case .f16:
            return Layer(keys16: UnsafePointer(keys.assumingMemoryBound(to: UInt16.self) + start),
                         values16: UnsafePointer(values.assumingMemoryBound(to: UInt16.self) + start), keys32: nil, values32: nil,
                         kvDimension: kvDimension, capacity: capacities[layer])
        case .f32:
            return Layer(keys16: nil, values16: nil, keys32: UnsafePointer(keys.assumingMemoryBound(to: Float.self) + start),
                         values32: UnsafePointer(values.assumingMemoryBound(to: Float.self) + start),
                         kvDimension: kvDimension, capacity: capacities[layer])
        }
    }

    struct Layer: @unchecked Sendable {
        let keys16: UnsafePointer<UInt16>?
        let values16: UnsafePointer<UInt16>?
        let keys32: UnsafePointer<Float>?
        let values32: UnsafePointer<Float>?
        let kvDimension: Int
        let capacity: Int

        @inline(__always) func slot(_ position: Int) -> Int { position < capacity ? position : position % capacity }

        /// key(position)[offset..<offset+n] . query
        @inline(__always) func dotKey(_ position: Int, _ offset: Int, _ query: UnsafePointer<Float>, _ n: Int) -> Float {
            let i = slot(position) * kvDimension + offset
            if let keys16 { return llk_dot_f16(keys16 + i, query, Int64(n)) }
            return llk_dot_f32(keys32! + i, query, Int64(n))
        }

        /// out += weight * value(position)[offset..<offset+n]
        @inline(__always) func addValue(_ weight: Float, _ position: Int, _ offset: Int, into out: UnsafeMutablePointer<Float>, _ n: Int) {
            let i = slot(position) * kvDimension + offset
            if let values16 {
                llk_axpy_f16(weight, values16 + i, out, Int64(n))
            } else {
                llk_axpy(weight, values32! + i, out, Int64(n))
            }
        }
    }
}

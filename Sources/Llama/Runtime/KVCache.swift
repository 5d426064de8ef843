import CKernels
import Kernels

/// Keys and values of every layer and position of one sequence, `[layer][slot][row]`, each row
/// holding one position's kvDimension values as F16 (llama.cpp's default), F32, Q8_0 or Q4_0
/// (keys and values may differ). A layer that attends to the whole context has a slot per
/// position; a sliding-window layer keeps a ring of its window plus one batch (position p in slot
/// p % capacity), so its memory does not grow with the context. Memory is reserved at once and
/// filled as positions are used.
final class KVCache: @unchecked Sendable {
    let kvDimension: Int
    let types: LlamaContext.KVCacheTypes
    /// Slots of each layer, and where each layer starts (in bytes).
    let capacities: [Int]
    private let keyOffsets: [Int]
    private let valueOffsets: [Int]
    /// Bytes of one position's keys, and of its values.
    let keyRowBytes: Int
    let valueRowBytes: Int
    private let keys: UnsafeMutableRawPointer
    private let values: UnsafeMutableRawPointer
    private let keyBytes: Int
    private let valueBytes: Int

    /// Slots a layer needs: every position, or its window plus one batch (a batch's tokens are
    /// all stored before any attends, and the first still needs its window).
    static func capacity(contextSize: Int, window: Int?, batchSize: Int) -> Int {
        guard let window else { return contextSize }
        return min(contextSize, window + batchSize)
    }

    /// `types` must fit the heads (`KVCacheTypes.fitted`): rows are whole blocks.
    init(capacities: [Int], kvDimension: Int, types: LlamaContext.KVCacheTypes) {
        self.capacities = capacities
        self.kvDimension = kvDimension
        self.types = types
        let keyRow = types.keys.bytes(width: kvDimension), valueRow = types.values.bytes(width: kvDimension)
        keyRowBytes = keyRow
        valueRowBytes = valueRow
        let starts = capacities.reduce(into: [0]) { $0.append($0.last! + $1) }
        keyOffsets = starts.dropLast().map { $0 * keyRow }
        valueOffsets = starts.dropLast().map { $0 * valueRow }
        keyBytes = max(1, starts.last! * keyRow)
        valueBytes = max(1, starts.last! * valueRow)
        keys = UnsafeMutableRawPointer.allocate(byteCount: keyBytes, alignment: 64)
        values = UnsafeMutableRawPointer.allocate(byteCount: valueBytes, alignment: 64)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Writes every byte once, so the pages are resident now rather than as positions fill.
    func commit() {
        keys.initializeMemory(as: UInt8.self, repeating: 0, count: keyBytes)
        values.initializeMemory(as: UInt8.self, repeating: 0, count: valueBytes)
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
            for i in 0..<run {
                let source = (done + i) * kvDimension
                llk_kv_store(types.keys.ggmlType, k + source, keys + keyOffsets[layer] + (slot + i) * keyRowBytes, Int64(kvDimension))
                llk_kv_store(types.values.ggmlType, v + source, values + valueOffsets[layer] + (slot + i) * valueRowBytes, Int64(kvDimension))
            }
            done += run
        }
    }

    /// One layer's keys and values, for the attention kernel.
    func layer(_ layer: Int) -> Layer {
        Layer(keys: UnsafeRawPointer(keys + keyOffsets[layer]), values: UnsafeRawPointer(values + valueOffsets[layer]),
              keyRowBytes: keyRowBytes, valueRowBytes: valueRowBytes, capacity: capacities[layer])
    }

    struct Layer: @unchecked Sendable {
        let keys: UnsafeRawPointer
        let values: UnsafeRawPointer
        let keyRowBytes: Int
        let valueRowBytes: Int
        let capacity: Int
    }
}

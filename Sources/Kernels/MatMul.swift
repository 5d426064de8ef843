import CKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight matrix in a ggml type: `rows` rows of `columns` values, each row contiguous
/// (`rowBytes` apart). The memory is not owned: it usually points into a mapped model file,
/// which the owner keeps alive.
public struct WeightMatrix: @unchecked Sendable {
    public let type: GGMLType
    public let rows: Int
    public let columns: Int
    public let data: UnsafeRawPointer
    public let rowBytes: Int
    let activation: ActivationFormat
    /// Whether the integer kernels multiply this type (8-bit activations, exact block sums):
    /// the 32-value types, or the K types with 256-value activation blocks.
    let integerProducts: Bool
    let kIntegerProducts: Bool
    /// The rows regrouped 8 at a time for the running path's kernels (`regrouped`), or nil.
    public private(set) var groups: RegroupedRows?

    public struct Unsupported: Error, CustomStringConvertible {
        public let description: String
    }

    public init(type: GGMLType, rows: Int, columns: Int, data: UnsafeRawPointer, name: String = "") throws(Unsupported) {
        guard Dequantize.supports(type), let activation = ActivationFormat(weight: type) else {
            throw Unsupported(description: "tensor '\(name)' has type \(type.name), which swift-llama cannot compute with yet (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)")
        }
        guard let rowBytes = type.rowBytes(elements: columns) else {
            throw Unsupported(description: "tensor '\(name)': row length \(columns) is not a multiple of the \(type.name) block size")
        }
        self.type = type
        self.rows = rows
        self.columns = columns
        self.data = data
        self.rowBytes = rowBytes
        self.activation = activation
        integerProducts = llk_q8_supports(Int32(type.id)) != 0
        kIntegerProducts = llk_qk_supports(Int32(type.id)) != 0
    }

    /// This matrix with its rows regrouped 8 at a time in memory of its own, where the running code
    /// path has kernels for that layout (otherwise itself). The rows past the last whole group stay
    /// where they are. With `releasingMappedPages`, the pages of `data` that the groups replace are
    /// handed back to the OS, so that memory holds one copy of the weights, not two: only for data
    /// in a read-only file mapping, where a later read (dequantizeRow) pages them in again.
    public func regrouped(releasingMappedPages: Bool) -> WeightMatrix {
        let id = Int32(type.id)
        guard groups == nil, rows >= 8, llk_x8_preferred(id) != 0 else { return self }
        let blocks = Int64(columns / type.blockSize)
        let count = rows / 8, groupBytes = Int(llk_x8_group_bytes(id, blocks))
        let storage = RegroupedRows(groups: count, groupBytes: groupBytes)
        // Released as the packing goes (every 4 MiB or so), so that a large matrix (a 262k-row
        // classifier) is never resident twice, not even for a moment.
        let step = max(1, (4 << 20) / max(1, 8 * rowBytes))
        var released = data
        for g in 0..<count {
            llk_x8_pack(id, data + 8 * g * rowBytes, Int64(rowBytes), blocks, storage.base + g * groupBytes)
            if releasingMappedPages, (g + 1) % step == 0 || g == count - 1 {
                released = Self.releasePages(from: released, to: data + 8 * (g + 1) * rowBytes)
            }
        }
        var copy = self
        copy.groups = storage
        return copy
    }

    /// MADV_DONTNEED on the whole pages inside [start, end): a private read-only file mapping
    /// drops them from this process and reads them from the file again if they are touched.
    /// Returns where the released pages end (where the next call may start).
    private static func releasePages(from start: UnsafeRawPointer, to end: UnsafeRawPointer) -> UnsafeRawPointer {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return start }
        let first = (Int(bitPattern: start) + page - 1) / page * page, last = Int(bitPattern: end) / page * page
        guard last > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) else { return start }
        _ = madvise(pointer, last - first, MADV_DONTNEED)
        return UnsafeRawPointer(bitPattern: last) ?? start
    }

    /// Row `r` as floats.
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        if let groups, r < 8 * groups.count {
            // Regrouped (and the mapped pages released): take the row out of its group.
            withUnsafeTemporaryAllocation(byteCount: rowBytes, alignment: 16) { buffer in
                llk_x8_unpack_row(Int32(type.id), groups.base + r / 8 * groups.groupBytes, Int64(columns / type.blockSize),
                                  Int32(r % 8), buffer.baseAddress!)
                dequantize(UnsafeRawPointer(buffer.baseAddress!), into: out)
            }
            return
        }
        dequantize(data + r * rowBytes, into: out)
    }

    private func dequantize(_ row: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>) {
        switch type {
        case .f16: if llk_dequantize(1, row, out, Int64(columns)) != 0 { return }
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: if llk_dequantize(Int32(type.id), row, out, Int64(columns / 32)) != 0 { return }
        default: break
        }
        // The type was checked in init, so this cannot throw.
        try? Dequantize.row(type, row, out, count: columns)
    }
}

/// Weight rows regrouped 8 at a time (llk_x8_pack), in memory this object owns.
public final class RegroupedRows: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    public let count: Int
    let groupBytes: Int

    init(groups: Int, groupBytes: Int) {
        count = groups
        self.groupBytes = groupBytes
        base = .allocate(byteCount: max(1, groups * groupBytes), alignment: 64)
    }

    deinit { base.deallocate() }
}

/// A float buffer that grows when asked for more and is otherwise reused, so that after the first
/// calls the forward pass allocates nothing.
public final class ScratchBuffer: @unchecked Sendable {
    public private(set) var pointer: UnsafeMutablePointer<Float>
    private var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(1, capacity)
        pointer = .allocate(capacity: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// At least `count` floats (contents not kept when it grows).
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
        }
        return pointer
    }
}

/// Buffers for `MatMul.multiply`: the prepared activations, and each worker's own scratch.
public final class MatMulWorkspace: @unchecked Sendable {
    let prepared = ScratchBuffer()
    /// The prepared tokens interleaved for the AVX-512 VNNI K-type tiles.
    let tiles = ScratchBuffer()
    let workers: [ScratchBuffer]

    public init(threads: Int) {
        workers = (0..<max(1, threads)).map { _ in ScratchBuffer() }
    }
}

public enum MatMul {
    /// `y[t][r] = sum over c of W[r][c] * x[t][c]` for `tokens` rows of x (each `W.columns` floats)
    /// into `tokens` rows of y (each `W.rows` floats), split by weight rows over `threads` threads.
    ///
    /// Activations are first rounded through the weight type's partner format, as llama.cpp does
    /// (8-bit blocks for quantized weights, half precision for F16). The 32-value block types are
    /// then multiplied by the integer kernels (exact block sums, as llama.cpp); the others are
    /// dequantized a tile of rows at a time and multiplied in float (`multiplyReference` is the
    /// arithmetic of both, for tests).
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, tokens: Int,
                                pool: ThreadPool, workspace: MatMulWorkspace) {
        if w.integerProducts || w.kIntegerProducts {
            multiplyIntegers(w, x, y, tokens: tokens, pool: pool, workspace: workspace)
            return
        }

        let cols = w.columns
        let prepared = workspace.prepared.ensure(cols * tokens)
        for t in 0..<tokens {
            Quantize.activations(x + t * cols, count: cols, format: w.activation, into: UnsafeMutableRawPointer(prepared + t * cols))
        }
        let rows = w.rows
        let tile = 16
        let tiles = (rows + tile - 1) / tile
        let workers = max(1, min(pool.threads, tiles, workspace.workers.count))
        let input = SendablePointer(prepared)
        let output = SendablePointer(y)
        pool.run(workers) { worker in
            // Each worker takes whole tiles of rows: dequantize them once, multiply with every token.
            let scratch = workspace.workers[worker].ensure(tile * cols)
            for tileIndex in stride(from: worker, to: tiles, by: workers) {
                let first = tileIndex * tile, count = min(tile, rows - first)
                let weights: UnsafePointer<Float>
                if w.type == .f32 {
                    weights = (w.data + first * w.rowBytes).assumingMemoryBound(to: Float.self)
                } else {
                    for i in 0..<count { w.dequantizeRow(first + i, into: scratch + i * cols) }
                    weights = UnsafePointer(scratch)
                }
                llk_gemm_f32(weights, Int64(count), input.pointer, Int64(tokens), Int64(cols), output.pointer + first, Int64(rows))
            }
        }
    }

    /// The integer path: every token rounded once to 8-bit blocks (Q8_0/Q8_1 layouts for the
    /// 32-value types, Q8_K for the K types), then each worker multiplies a contiguous run of rows
    /// (a multiple of 4, the batch kernel's tile) with all tokens.
    static func multiplyIntegers(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, tokens: Int,
                                 pool: ThreadPool, workspace: MatMulWorkspace) {
        let type = Int32(w.type.id)
        let kTypes = w.kIntegerProducts
        let blocks = Int64(w.columns / w.type.blockSize)
        let tokenBytes = Int(kTypes ? llk_qk_token_bytes(blocks) : llk_q8_token_bytes(blocks))
        let prepared = UnsafeMutableRawPointer(workspace.prepared.ensure((tokens * tokenBytes + 3) / 4))
        let input = SendablePointer(UnsafeMutablePointer(mutating: x))
        let activations = SendablePointer(prepared.assumingMemoryBound(to: UInt8.self))
        let threads = max(1, min(pool.threads, workspace.workers.count))
        pool.run(min(threads, tokens)) { worker in
            for t in stride(from: worker, to: tokens, by: min(threads, tokens)) {
                let token = input.pointer + t * w.columns, out = activations.pointer + t * tokenBytes
                if kTypes { llk_qk_prepare(token, blocks, out) } else { llk_q8_prepare(type, token, blocks, out) }
            }
        }
        let output = SendablePointer(y)
        // Generation streams the weights from memory: its products measure the prefetch distance.
        let prefetch = tokens <= 4 ? PrefetchTuner.shared.begin(matrix: w.data, bytes: w.rows * w.rowBytes) : (distance: Int32(0), timed: false)
        let started = prefetch.timed ? DispatchTime.now().uptimeNanoseconds : 0
        defer {
            if prefetch.timed {
                PrefetchTuner.shared.record(matrix: w.data, distance: prefetch.distance,
                                            nanoseconds: DispatchTime.now().uptimeNanoseconds &- started)
            }
        }
        let scratchFloats = kTypes || tokens == 1 ? 1 : Int(llk_q8_scratch_bytes(blocks)) / 4
        // Rows first..<end in their file layout, by the row kernels of the type's family.
        let rowKernels = { (first: Int, end: Int, scratch: UnsafeMutablePointer<Float>) in
            let rows = w.data + first * w.rowBytes, count = Int64(end - first)
            if kTypes {
                llk_qk_matmul(type, rows, Int64(w.rowBytes), count, activations.pointer, Int64(tokens), blocks,
                              output.pointer + first, Int64(w.rows))
            } else {
                llk_q8_matmul(type, rows, Int64(w.rowBytes), count, activations.pointer, Int64(tokens), blocks,
                              output.pointer + first, Int64(w.rows), scratch)
            }
        }
        if let groups = w.groups {
            // AVX-512 VNNI prompt tiles: the tokens interleaved 16 at a time first.
            var tiles: SendablePointer<UInt8>?
            if llk_x8_tiled(type, Int64(tokens)) != 0 {
                let bytes = Int(llk_x8_tiles_bytes(type, blocks, Int64(tokens)))
                let buffer = SendablePointer(UnsafeMutableRawPointer(workspace.tiles.ensure((bytes + 3) / 4)).assumingMemoryBound(to: UInt8.self))
                let count = (tokens + 15) / 16, parts = min(threads, count)
                pool.run(parts) { part in
                    llk_x8_interleave(type, activations.pointer, Int64(tokens), blocks, Int64(count * part / parts),
                                      Int64(count * (part + 1) / parts), buffer.pointer)
                }
                tiles = buffer
            }
            // Runs of whole groups, four per thread, claimed as threads come free: a thread whose
            // core another process takes holds up one run, not a fixed share. The rows past the
            // last group go with the last run.
            let workers = max(1, min(4 * threads, groups.count))
            pool.run(workers) { worker in
                let first = groups.count * worker / workers, end = groups.count * (worker + 1) / workers
                if end > first, let tiles {
                    llk_x8_matmul_tiled(type, groups.base + first * groups.groupBytes, Int64(end - first), tiles.pointer,
                                        Int64(tokens), blocks, output.pointer + 8 * first, Int64(w.rows))
                } else if end > first {
                    llk_x8_matmul(type, groups.base + first * groups.groupBytes, Int64(end - first), activations.pointer,
                                  Int64(tokens), blocks, output.pointer + 8 * first, Int64(w.rows))
                }
                let tail = 8 * groups.count
                guard worker == workers - 1, tail < w.rows else { return }
                rowKernels(tail, w.rows, workspace.workers[0].ensure(scratchFloats))
            }
            return
        }
        let quads = (w.rows + 3) / 4
        let workers = max(1, min(threads, quads))
        pool.run(workers) { worker in
            let first = min(w.rows, quads * worker / workers * 4), end = min(w.rows, quads * (worker + 1) / workers * 4)
            guard end > first else { return }
            rowKernels(first, end, workspace.workers[worker].ensure(scratchFloats))
        }
    }

    /// One output of `multiply` computed with llama.cpp's arithmetic: for Q4_0, Q4_1, Q5_0,
    /// Q5_1 and Q8_0, integer dot products of the weight blocks with 8-bit activation blocks,
    /// scaled per block (offsets through the activation block's half-precision sum); for other
    /// types, the float product of the dequantized row and the rounded activations.
    public static func multiplyReference(_ w: WeightMatrix, row: Int, _ x: UnsafePointer<Float>) -> Float {
        let cols = w.columns
        let wrow = w.data + row * w.rowBytes
        guard w.activation.isBlockQuantized else {
            let a = UnsafeMutablePointer<Float>.allocate(capacity: cols), b = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            defer { a.deallocate(); b.deallocate() }
            w.dequantizeRow(row, into: a)
            Quantize.activations(x, count: cols, format: w.activation, into: UnsafeMutableRawPointer(b))
            return Dot.f32(a, b, cols)
        }
        let blocks = UnsafeMutableRawPointer.allocate(byteCount: Quantize.preparedBytes(count: cols, format: w.activation), alignment: 4)
        defer { blocks.deallocate() }
        Quantize.activations(x, count: cols, format: w.activation, into: blocks)
        let n = cols / 32
        switch w.type {
        case .q4_0: return Dot.nibbles(.q4_0, wrow, blocks, blocks: n)
        case .q4_1: return Dot.nibbles(.q4_1, wrow, blocks, blocks: n)
        case .q5_0: return Dot.nibbles(.q5_0, wrow, blocks, blocks: n)
        case .q5_1: return Dot.nibbles(.q5_1, wrow, blocks, blocks: n)
        default: return Dot.q8_0(wrow, blocks, blocks: n)
        }
    }
}

/// A pointer handed to worker threads that write disjoint parts of it.
public struct SendablePointer<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

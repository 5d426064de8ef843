import CKernels

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
    /// The type id the C kernels multiply straight from the blocks, if any.
    let fusedTypeID: Int32?

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
        fusedTypeID = [GGMLType.q4_0, .q4_1, .q8_0].contains(type) ? Int32(type.id) : nil
    }

    /// Row `r` as floats.
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let row = data + r * rowBytes
        switch type {
        case .f16: if llk_dequantize(1, row, out, Int64(columns)) != 0 { return }
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: if llk_dequantize(Int32(type.id), row, out, Int64(columns / 32)) != 0 { return }
        default: break
        }
        // The type was checked in init, so this cannot throw.
        try? Dequantize.row(type, row, out, count: columns)
    }
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

/// Buffers for `MatMul.multiply`: the prepared activations, and each worker's dequantized tile.
public final class MatMulWorkspace: @unchecked Sendable {
    let prepared = ScratchBuffer()
    let sumErrors = ScratchBuffer()
    let workers: [(scratch: ScratchBuffer, offsets: ScratchBuffer, correction: ScratchBuffer)]

    public init(threads: Int) {
        workers = (0..<max(1, threads)).map { _ in (ScratchBuffer(), ScratchBuffer(), ScratchBuffer()) }
    }
}

public enum MatMul {
    /// `y[t][r] = sum over c of W[r][c] * x[t][c]` for `tokens` rows of x (each `W.columns` floats)
    /// into `tokens` rows of y (each `W.rows` floats), split by weight rows over `threads` threads.
    ///
    /// Activations are first rounded through the weight type's partner format, as llama.cpp does
    /// (8-bit blocks for quantized weights, half precision for F16). Each weight row is then
    /// dequantized once and multiplied with every token in float, which gives llama.cpp's integer
    /// block products up to float rounding (`multiplyReference` is that arithmetic, for tests).
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, tokens: Int,
                                pool: ThreadPool, workspace: MatMulWorkspace) {
        let cols = w.columns
        let prepared = workspace.prepared.ensure(cols * tokens)
        // Offset weights (Q4_1, Q5_1) also need the activation blocks' half-precision sums.
        let offsetAt: Int? = w.activation == .q8_1 ? 2 : nil
        let blocks = cols / 32
        let sumErrors = workspace.sumErrors.ensure(blocks * tokens)
        for t in 0..<tokens {
            Quantize.roundedActivations(x + t * cols, count: cols, format: w.activation, into: prepared + t * cols,
                                        sumError: sumErrors + t * blocks)
        }
        let rows = w.rows
        let tile = 16
        let tiles = (rows + tile - 1) / tile
        let workers = max(1, min(pool.threads, tiles, workspace.workers.count))
        let input = SendablePointer(prepared)
        let errors = SendablePointer(sumErrors)
        let output = SendablePointer(y)
        pool.run(workers) { worker in
            // Each worker takes whole tiles of rows: dequantize them once, multiply with every token.
            let buffers = workspace.workers[worker]
            let scratch = buffers.scratch.ensure(tile * cols)
            let offsets = buffers.offsets.ensure(tile * blocks)
            let correction = buffers.correction.ensure(tile * tokens)
            for tileIndex in stride(from: worker, to: tiles, by: workers) {
                let first = tileIndex * tile, count = min(tile, rows - first)
                if tokens == 1, let fused = w.fusedTypeID {
                    // One token: dequantize and multiply in one pass, never writing the floats
                    // (the offset correction is part of the fused product).
                    for r in first..<(first + count) {
                        output.pointer[r] = llk_dot_blocks(fused, w.data + r * w.rowBytes, input.pointer, Int64(blocks), errors.pointer, scratch)
                    }
                    continue
                }
                let weights: UnsafePointer<Float>
                if w.type == .f32 {
                    weights = (w.data + first * w.rowBytes).assumingMemoryBound(to: Float.self)
                } else {
                    for i in 0..<count { w.dequantizeRow(first + i, into: scratch + i * cols) }
                    weights = UnsafePointer(scratch)
                }
                llk_gemm_f32(weights, Int64(count), input.pointer, Int64(tokens), Int64(cols), output.pointer + first, Int64(rows))
                guard let offsetAt else { continue }
                // Offset term with llama.cpp's half-precision activation sums: y += mins . errors.
                for i in 0..<count {
                    let row = w.data + (first + i) * w.rowBytes
                    for b in 0..<blocks {
                        offsets[i * blocks + b] = HalfFloat.toFloat(row.loadUnaligned(fromByteOffset: b * w.type.bytesPerBlock + offsetAt, as: UInt16.self))
                    }
                }
                llk_gemm_f32(offsets, Int64(count), errors.pointer, Int64(tokens), Int64(blocks), correction, Int64(count))
                for t in 0..<tokens {
                    for i in 0..<count { output.pointer[t * rows + first + i] += correction[t * count + i] }
                }
            }
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
            Quantize.roundedActivations(x, count: cols, format: w.activation, into: b)
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

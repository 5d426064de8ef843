import Dispatch

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
    }

    /// Row `r` as floats.
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        // The type was checked in init, so this cannot throw.
        try? Dequantize.row(type, data + r * rowBytes, out, count: columns)
    }
}

public enum MatMul {
    /// `y[t][r] = sum over c of W[r][c] * x[t][c]` for `tokens` rows of x (each `W.columns` floats)
    /// into `tokens` rows of y (each `W.rows` floats), split by weight rows over `threads` threads.
    /// Activations are first rounded to the weight type's partner format, as llama.cpp does.
    public static func multiply(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, tokens: Int, threads: Int) {
        let cols = w.columns
        let format = w.activation
        let stride = Quantize.preparedBytes(count: cols, format: format)
        let prepared = UnsafeMutableRawPointer.allocate(byteCount: max(1, stride * tokens), alignment: 64)
        defer { prepared.deallocate() }
        for t in 0..<tokens {
            Quantize.activations(x + t * cols, count: cols, format: format, into: prepared + t * stride)
        }
        let rows = w.rows
        let workers = max(1, min(threads, rows / 16))
        let input = SendablePointer(prepared.assumingMemoryBound(to: UInt8.self))
        let output = SendablePointer(y)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let preparedRows = UnsafeRawPointer(input.pointer)
            let start = rows * worker / workers, end = rows * (worker + 1) / workers
            if format.isBlockQuantized {
                let blocks = cols / 32
                for r in start..<end {
                    let row = w.data + r * w.rowBytes
                    for t in 0..<tokens {
                        output.pointer[t * rows + r] = blockDot(w.type, row, preparedRows + t * stride, blocks: blocks)
                    }
                }
            } else {
                // Dequantize each weight row once and reuse it for every token.
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: cols)
                defer { scratch.deallocate() }
                let xs = preparedRows.assumingMemoryBound(to: Float.self)
                for r in start..<end {
                    let wrow: UnsafePointer<Float>
                    if w.type == .f32 {
                        wrow = (w.data + r * w.rowBytes).assumingMemoryBound(to: Float.self)
                    } else {
                        w.dequantizeRow(r, into: scratch)
                        wrow = UnsafePointer(scratch)
                    }
                    for t in 0..<tokens {
                        output.pointer[t * rows + r] = Dot.f32(wrow, xs + t * cols, cols)
                    }
                }
            }
        }
    }

    @inline(__always)
    static func blockDot(_ type: GGMLType, _ w: UnsafeRawPointer, _ x: UnsafeRawPointer, blocks: Int) -> Float {
        switch type {
        case .q4_0: Dot.q4_0(w, x, blocks: blocks)
        case .q4_1: Dot.q4_1(w, x, blocks: blocks)
        case .q5_0: Dot.q5_0(w, x, blocks: blocks)
        case .q5_1: Dot.q5_1(w, x, blocks: blocks)
        default: Dot.q8_0(w, x, blocks: blocks)
        }
    }
}

/// A pointer handed to worker threads that write disjoint parts of it.
public struct SendablePointer<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

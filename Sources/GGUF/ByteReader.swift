/// A bounds-checked little-endian cursor over the mapped file. Every read checks the remaining
/// length first and throws a `GGUFError` naming the offset; nothing is read past the end.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset: Int = 0

    var remaining: Int { bytes.count - offset }

    func error(_ problem: GGUFError.Problem, at position: Int? = nil) -> GGUFError {
        GGUFError(path: path, offset: UInt64(position ?? offset), problem: problem)
    }

    mutating func require(_ count: Int, _ what: String) throws(GGUFError) {
        guard count <= remaining else {
            throw error(.truncated(reading: what, needed: UInt64(count), available: UInt64(remaining)))
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String) throws(GGUFError) -> T {
        try require(MemoryLayout<T>.size, what)
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: value)
    }

    mutating func readFloat(_ what: String) throws(GGUFError) -> Float {
        Float(bitPattern: try read(UInt32.self, what))
    }

    mutating func readDouble(_ what: String) throws(GGUFError) -> Double {
        Double(bitPattern: try read(UInt64.self, what))
    }

    /// Checks that `count` items of at least `minimumSize` bytes each can fit in the rest of the
    /// file, so that a corrupt count can never cause a huge allocation or a long loop.
    func checkCount(_ count: UInt64, minimumSize: Int, _ what: String, at position: Int) throws(GGUFError) -> Int {
        let available = UInt64(remaining)
        let (needed, overflow) = count.multipliedReportingOverflow(by: UInt64(minimumSize))
        guard !overflow, needed <= available else {
            throw error(.countExceedsFile(what: what, count: count, available: available), at: position)
        }
        return Int(count)
    }

    /// A GGUF string: a 64-bit byte length, then UTF-8 bytes (invalid sequences are repaired).
    mutating func readString(_ what: String) throws(GGUFError) -> String {
        let start = offset
        let length = try read(UInt64.self, "\(what) length")
        let n = try checkCount(length, minimumSize: 1, "\(what) length", at: start)
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]), as: UTF8.self)
        offset += n
        return text
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a GGUF (version 3) file: metadata in insertion order, then the tensor index, then
/// the tensor data, each tensor aligned to `general.alignment` (32 unless set).
///
/// Tensors either carry their bytes (`addTensor(name:shape:type:data:)`) or are only declared
/// (`declareTensor`) and produced one at a time while the file is written, so that writing a
/// model of many gigabytes never holds more than one tensor in memory.
public struct GGUFWriter: Sendable {
    public private(set) var metadata: [(key: String, value: GGUFValue)] = []
    private var tensors: [(name: String, shape: [Int], type: GGMLType, byteCount: Int, data: [UInt8]?)] = []

    public init() {}

    public var alignment: Int {
        if let value = metadata.first(where: { $0.key == "general.alignment" })?.value.intValue, value > 0 { return value }
        return GGUFFile.defaultAlignment
    }

    /// Sets a key, replacing an earlier value of the same key in place.
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) {
            metadata[i].value = value
        } else {
            metadata.append((key, value))
        }
    }

    /// Adds a tensor. `shape` is in ggml order (row length first); `data` must hold exactly its bytes.
    public mutating func addTensor(name: String, shape: [Int], type: GGMLType, data: [UInt8]) throws(GGUFError) {
        let expected = try Self.byteCount(name: name, shape: shape, type: type)
        guard data.count == expected else {
            throw GGUFError(path: name, offset: 0, problem: .invalidTensorData(tensor: name, expectedBytes: expected, found: data.count))
        }
        tensors.append((name, shape, type, expected, data))
    }

    /// Declares a tensor whose bytes the `tensorData` closure of `write(to:tensorData:)` supplies.
    /// Returns the tensor's index, which that closure receives.
    @discardableResult
    public mutating func declareTensor(name: String, shape: [Int], type: GGMLType) throws(GGUFError) -> Int {
        tensors.append((name, shape, type, try Self.byteCount(name: name, shape: shape, type: type), nil))
        return tensors.count - 1
    }

    private static func byteCount(name: String, shape: [Int], type: GGMLType) throws(GGUFError) -> Int {
        let elements = shape.reduce(1, *)
        guard let rowBytes = type.rowBytes(elements: shape.first ?? 1) else {
            throw GGUFError(path: name, offset: 0, problem: .invalidShape(tensor: name, shape: shape.map(UInt64.init), reason: "row length is not a multiple of the block size"))
        }
        return rowBytes * (elements / max(shape.first ?? 1, 1))
    }

    /// Header, metadata and tensor index, padded to the alignment: everything before the data.
    private func header() -> [UInt8] {
        var out = ByteSink()
        out.append(contentsOf: GGUFFile.magic)
        out.integer(UInt32(3))
        out.integer(UInt64(tensors.count))
        out.integer(UInt64(metadata.count))
        for (key, value) in metadata {
            out.string(key)
            out.integer(value.type.rawValue)
            out.value(value)
        }
        let align = alignment
        var offset = 0
        for tensor in tensors {
            out.string(tensor.name)
            out.integer(UInt32(tensor.shape.count))
            for d in tensor.shape { out.integer(UInt64(d)) }
            out.integer(tensor.type.id)
            out.integer(UInt64(offset))
            offset = (offset + tensor.byteCount + align - 1) / align * align
        }
        out.pad(to: align)
        return out.bytes
    }

    /// The complete file as bytes (declared tensors without data are written as zeros).
    public func serialized() -> [UInt8] {
        var out = ByteSink()
        out.bytes = header()
        for tensor in tensors {
            out.append(contentsOf: tensor.data ?? [UInt8](repeating: 0, count: tensor.byteCount))
            out.pad(to: alignment)
        }
        return out.bytes
    }

    /// Writes the file to `path` through a temporary file and a rename, so a failed write
    /// never leaves a half-written model behind.
    public func write(to path: String) throws(GGUFError) {
        do {
            try write(to: path) { index in tensors[index].data ?? [UInt8](repeating: 0, count: tensors[index].byteCount) }
        } catch let error as GGUFError {
            throw error
        } catch {
            throw GGUFError(path: path, offset: 0, problem: .writeFailed(reason: "\(error)"))
        }
    }

    /// Writes the file, asking `tensorData` for each declared tensor's bytes in file order (tensors
    /// added with data are written as given). An error from `tensorData` removes the partial file
    /// and is rethrown.
    public func write(to path: String, tensorData: (Int) throws -> [UInt8]) throws {
        let temporary = path + ".partial"
        guard let file = fopen(temporary, "wb") else {
            throw GGUFError(path: path, offset: 0, problem: .writeFailed(reason: String(cString: strerror(errno))))
        }
        var written = 0
        func put(_ bytes: [UInt8]) throws(GGUFError) {
            let count = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            written += count
            guard count == bytes.count else {
                throw GGUFError(path: path, offset: UInt64(written), problem: .writeFailed(reason: String(cString: strerror(errno))))
            }
        }
        do {
            try put(header())
            let align = alignment
            for (index, tensor) in tensors.enumerated() {
                let bytes = try tensor.data ?? tensorData(index)
                guard bytes.count == tensor.byteCount else {
                    throw GGUFError(path: tensor.name, offset: 0, problem: .invalidTensorData(tensor: tensor.name, expectedBytes: tensor.byteCount, found: bytes.count))
                }
                try put(bytes)
                try put([UInt8](repeating: 0, count: (align - written % align) % align))
            }
        } catch {
            fclose(file)
            unlink(temporary)
            throw error
        }
        guard fclose(file) == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw GGUFError(path: path, offset: UInt64(written), problem: .writeFailed(reason: reason))
        }
    }
}

/// Little-endian serialization of GGUF values.
struct ByteSink {
    var bytes: [UInt8] = []

    mutating func append(contentsOf other: [UInt8]) { bytes.append(contentsOf: other) }

    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ s: String) {
        integer(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    mutating func pad(to alignment: Int) {
        let extra = (alignment - bytes.count % alignment) % alignment
        bytes.append(contentsOf: repeatElement(0, count: extra))
    }

    mutating func value(_ value: GGUFValue) {
        switch value {
        case .uint8(let v): integer(v)
        case .int8(let v): integer(v)
        case .uint16(let v): integer(v)
        case .int16(let v): integer(v)
        case .uint32(let v): integer(v)
        case .int32(let v): integer(v)
        case .uint64(let v): integer(v)
        case .int64(let v): integer(v)
        case .float32(let v): integer(v.bitPattern)
        case .float64(let v): integer(v.bitPattern)
        case .bool(let v): integer(UInt8(v ? 1 : 0))
        case .string(let s): string(s)
        case .array(let a): array(a)
        }
    }

    mutating func array(_ array: GGUFArray) {
        integer(array.elementType.rawValue)
        integer(UInt64(array.count))
        switch array {
        case .uint8(let a): a.forEach { integer($0) }
        case .int8(let a): a.forEach { integer($0) }
        case .uint16(let a): a.forEach { integer($0) }
        case .int16(let a): a.forEach { integer($0) }
        case .uint32(let a): a.forEach { integer($0) }
        case .int32(let a): a.forEach { integer($0) }
        case .uint64(let a): a.forEach { integer($0) }
        case .int64(let a): a.forEach { integer($0) }
        case .float32(let a): a.forEach { integer($0.bitPattern) }
        case .float64(let a): a.forEach { integer($0.bitPattern) }
        case .bool(let a): a.forEach { integer(UInt8($0 ? 1 : 0)) }
        case .string(let a): a.forEach { string($0) }
        case .array(let a): a.forEach { self.array($0) }
        }
    }
}

/// Where one tensor's data lives in the file and how it is laid out.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions in ggml order: `shape[0]` is the row length (contiguous), `shape[1]` the row count.
    public let shape: [Int]
    public let type: GGMLType
    /// Byte offset of the data from the start of the file.
    public let fileOffset: Int
    public let byteCount: Int
    /// Which file of a split model holds the data (0 for a single file).
    public var shard = 0

    public init(name: String, shape: [Int], type: GGMLType, fileOffset: Int, byteCount: Int, shard: Int = 0) {
        self.name = name
        self.shape = shape
        self.type = type
        self.fileOffset = fileOffset
        self.byteCount = byteCount
        self.shard = shard
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A parsed, validated, memory-mapped GGUF file (versions 2 and 3), or a model split over several
/// (llama.cpp's `name-00001-of-00003.gguf`, with `split.*` keys), read as one.
///
/// Parsing reads only the header, metadata and tensor index; tensor data stays in the mapping
/// until touched. Every count, length, offset and size is checked against the file length first.
public final class GGUFFile: Sendable {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let defaultAlignment = 32
    /// How deep arrays of arrays may nest before the file is called corrupt.
    static let maximumArrayDepth = 8

    public let path: String
    public let version: UInt32
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Offset of the tensor data section from the start of the file.
    public let dataOffset: Int
    /// Bytes of the file, or of all the files of a split model.
    public let fileSize: Int

    private let index: [String: Int]
    private let tensorIndex: [String: Int]
    /// The file, or a split model's files in order.
    public let mappings: [MappedFile]

    /// Opens a file; given any file of a split model, opens all of them as one.
    public convenience init(path: String) throws(GGUFError) {
        try self.init(withParts: MappedFile(path: path))
    }

    /// A mapped file, with the other files of its split model (found beside it) where it is one.
    public convenience init(withParts mapping: MappedFile) throws(GGUFError) {
        let path = mapping.path
        let first = try GGUFFile(mapping: mapping)
        guard let split = try first.splitInfo(), split.count > 1 else {
            try self.init(shards: [first])
            return
        }
        var shards: [GGUFFile] = []
        for i in 0..<split.count {
            if i == split.index {
                shards.append(first)
                continue
            }
            guard let shardPath = Self.shardPath(path, index: i, count: split.count) else {
                throw GGUFError(path: path, offset: 0, problem: .split("split.count is \(split.count) but the name does not end in -\(GGUFSplit.five(split.index + 1))-of-\(GGUFSplit.five(split.count)).gguf, so the other files cannot be found"))
            }
            shards.append(try GGUFFile(mapping: MappedFile(path: shardPath)))
        }
        try self.init(shards: shards)
    }

    /// One file, as it is (a split model's file alone).
    public convenience init(mapping: MappedFile) throws(GGUFError) {
        try self.init(parsing: mapping)
    }

    /// A split model's files in order, as one: the first one's metadata, every file's tensors.
    private init(shards: [GGUFFile]) throws(GGUFError) {
        let first = shards[0]
        var tensors: [GGUFTensorInfo] = []
        var tensorIndex: [String: Int] = [:]
        var size = 0
        for (i, shard) in shards.enumerated() {
            if shards.count > 1 {
                let split = try shard.splitInfo()
                guard split?.index == i, split?.count == shards.count else {
                    throw GGUFError(path: shard.path, offset: 0, problem: .split("this file should be part \(i + 1) of \(shards.count) (split.no \(i)), but its split keys say \(split.map { "part \($0.index + 1) of \($0.count)" } ?? "nothing")"))
                }
            }
            for var tensor in shard.tensors {
                guard tensorIndex[tensor.name] == nil else {
                    throw GGUFError(path: shard.path, offset: 0, problem: .duplicateTensor(tensor.name))
                }
                tensor.shard = i
                tensorIndex[tensor.name] = tensors.count
                tensors.append(tensor)
            }
            size += shard.fileSize
        }
        if shards.count > 1, let expected = first.int("split.tensors.count"), expected != tensors.count {
            throw GGUFError(path: first.path, offset: 0, problem: .split("split.tensors.count is \(expected) but the \(shards.count) files hold \(tensors.count) tensors"))
        }
        path = first.path
        version = first.version
        metadata = first.metadata
        index = first.index
        alignment = first.alignment
        dataOffset = first.dataOffset
        fileSize = size
        self.tensors = tensors
        self.tensorIndex = tensorIndex
        mappings = shards.flatMap(\.mappings)
    }

    /// `split.no` (from 0) and `split.count` where the file has them, checked.
    private func splitInfo() throws(GGUFError) -> (index: Int, count: Int)? {
        guard let count = int("split.count") else { return nil }
        guard let index = int("split.no"), count >= 1, count <= 9999, index >= 0, index < count else {
            throw GGUFError(path: path, offset: 0, problem: .split("split.no \(int("split.no").map(String.init) ?? "missing") and split.count \(count) do not make sense"))
        }
        return (index, count)
    }

    /// The path of part `index` (from 0) beside `path`, named as llama.cpp's gguf-split names them.
    static func shardPath(_ path: String, index: Int, count: Int) -> String? {
        let suffix = "-\(GGUFSplit.five(count)).gguf"
        guard path.hasSuffix(suffix), path.count > suffix.count + 9 else { return nil }
        let stem = path.dropLast(suffix.count)  // ...name-0000i-of
        guard stem.hasSuffix("-of"), stem.dropLast(3).suffix(6).first == "-" else { return nil }
        return String(stem.dropLast(9)) + "-\(GGUFSplit.five(index + 1))-of-\(GGUFSplit.five(count)).gguf"
    }

    private init(parsing mapping: MappedFile) throws(GGUFError) {
        self.mappings = [mapping]
        self.path = mapping.path
        self.fileSize = mapping.count
        var reader = ByteReader(bytes: mapping.bytes, path: mapping.path)

        try reader.require(4, "magic")
        let magic = Array(UnsafeRawBufferPointer(rebasing: mapping.bytes[0..<4]))
        guard magic == GGUFFile.magic else { throw reader.error(.badMagic(found: magic)) }
        reader.offset = 4
        let versionOffset = reader.offset
        version = try reader.read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            throw reader.error(.unsupportedVersion(version), at: versionOffset)
        }

        let tensorCountOffset = reader.offset
        let tensorCount = try reader.read(UInt64.self, "tensor count")
        let kvCountOffset = reader.offset
        let kvCount = try reader.read(UInt64.self, "metadata count")

        // Smallest key/value: 8-byte key length + 4-byte type + 1-byte value.
        let kvs = try reader.checkCount(kvCount, minimumSize: 13, "metadata count", at: kvCountOffset)
        var metadata: [(key: String, value: GGUFValue)] = []
        metadata.reserveCapacity(kvs)
        var index: [String: Int] = [:]
        for _ in 0..<kvs {
            let keyOffset = reader.offset
            let key = try reader.readString("metadata key")
            let value = try GGUFFile.readValue(&reader, key: key)
            guard index[key] == nil else { throw reader.error(.duplicateKey(key), at: keyOffset) }
            index[key] = metadata.count
            metadata.append((key, value))
        }
        self.metadata = metadata
        self.index = index

        var alignment = GGUFFile.defaultAlignment
        if let value = index["general.alignment"].map({ metadata[$0].value }) {
            guard case .uint32(let a) = value else {
                throw reader.error(.wrongValueType(key: "general.alignment", expected: "uint32", found: "\(value.type)"), at: 0)
            }
            guard a > 0, a & (a - 1) == 0 else { throw reader.error(.invalidAlignment(UInt64(a)), at: 0) }
            alignment = Int(a)
        }
        self.alignment = alignment

        // Smallest tensor entry: 8-byte name length + 4-byte n_dims + 4-byte type + 8-byte offset.
        let count = try reader.checkCount(tensorCount, minimumSize: 24, "tensor count", at: tensorCountOffset)
        var entries: [(name: String, shape: [Int], type: GGMLType, offset: UInt64, at: Int)] = []
        entries.reserveCapacity(count)
        var tensorIndex: [String: Int] = [:]
        for _ in 0..<count {
            let entryOffset = reader.offset
            let name = try reader.readString("tensor name")
            let dimsOffset = reader.offset
            let dimCount = try reader.read(UInt32.self, "dimension count of '\(name)'")
            guard dimCount <= 4 else { throw reader.error(.tooManyDimensions(tensor: name, count: dimCount), at: dimsOffset) }
            var dims: [UInt64] = []
            for _ in 0..<dimCount { dims.append(try reader.read(UInt64.self, "dimensions of '\(name)'")) }
            let typeOffset = reader.offset
            let typeID = try reader.read(UInt32.self, "type of '\(name)'")
            let dataOffset = try reader.read(UInt64.self, "data offset of '\(name)'")
            guard let type = GGMLType(id: typeID) else {
                throw reader.error(.unknownTensorType(tensor: name, typeID: typeID), at: typeOffset)
            }
            let shape = try GGUFFile.checkedShape(dims, name: name, type: type, reader: reader, at: dimsOffset)
            guard tensorIndex[name] == nil else { throw reader.error(.duplicateTensor(name), at: entryOffset) }
            tensorIndex[name] = entries.count
            entries.append((name, shape, type, dataOffset, entryOffset))
        }
        self.tensorIndex = tensorIndex

        // The data section starts at the next multiple of the alignment after the index.
        let dataStart = (reader.offset + alignment - 1) / alignment * alignment
        self.dataOffset = dataStart
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(entries.count)
        for entry in entries {
            let elements = entry.shape.reduce(1, *)
            let bytes = elements / entry.type.blockSize * entry.type.bytesPerBlock
            guard entry.offset % UInt64(alignment) == 0 else {
                throw reader.error(.misalignedTensor(tensor: entry.name, offset: entry.offset, alignment: alignment), at: entry.at)
            }
            let start = UInt64(dataStart).addingReportingOverflow(entry.offset)
            let end = start.partialValue.addingReportingOverflow(UInt64(bytes))
            guard !start.overflow, !end.overflow, end.partialValue <= UInt64(mapping.count) else {
                throw reader.error(.tensorOutOfRange(tensor: entry.name, start: start.partialValue, size: UInt64(bytes), fileSize: UInt64(mapping.count)), at: entry.at)
            }
            tensors.append(GGUFTensorInfo(name: entry.name, shape: entry.shape, type: entry.type,
                                          fileOffset: Int(start.partialValue), byteCount: bytes))
        }
        self.tensors = tensors
    }

    /// Validates dimensions: each positive, the product without overflow, rows a whole number of blocks.
    private static func checkedShape(_ dims: [UInt64], name: String, type: GGMLType, reader: ByteReader, at position: Int) throws(GGUFError) -> [Int] {
        var product: UInt64 = 1
        for d in dims {
            guard d > 0 else {
                throw reader.error(.invalidShape(tensor: name, shape: dims, reason: "a dimension is zero"), at: position)
            }
            let (p, overflow) = product.multipliedReportingOverflow(by: d)
            // No tensor can hold more elements than the file has bits; this also keeps byte sizes in range.
            guard !overflow, p <= UInt64(Int.max) / 64 else {
                throw reader.error(.invalidShape(tensor: name, shape: dims, reason: "element count overflows"), at: position)
            }
            product = p
        }
        if let first = dims.first, first % UInt64(type.blockSize) != 0 {
            throw reader.error(.invalidShape(tensor: name, shape: dims, reason: "row length is not a multiple of the \(type.name) block size \(type.blockSize)"), at: position)
        }
        return dims.map { Int($0) }
    }

    private static func readValue(_ reader: inout ByteReader, key: String) throws(GGUFError) -> GGUFValue {
        let typeOffset = reader.offset
        let raw = try reader.read(UInt32.self, "type of '\(key)'")
        guard let type = GGUFValueType(rawValue: raw) else { throw reader.error(.unknownValueType(raw), at: typeOffset) }
        return try readValue(&reader, type: type, key: key, depth: 0)
    }

    private static func readValue(_ reader: inout ByteReader, type: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try reader.read(UInt8.self, key))
        case .int8: return .int8(try reader.read(Int8.self, key))
        case .uint16: return .uint16(try reader.read(UInt16.self, key))
        case .int16: return .int16(try reader.read(Int16.self, key))
        case .uint32: return .uint32(try reader.read(UInt32.self, key))
        case .int32: return .int32(try reader.read(Int32.self, key))
        case .uint64: return .uint64(try reader.read(UInt64.self, key))
        case .int64: return .int64(try reader.read(Int64.self, key))
        case .float32: return .float32(try reader.readFloat(key))
        case .float64: return .float64(try reader.readDouble(key))
        case .bool: return .bool(try reader.read(UInt8.self, key) != 0)
        case .string: return .string(try reader.readString(key))
        case .array: return .array(try readArray(&reader, key: key, depth: depth + 1))
        }
    }

    private static func readArray(_ reader: inout ByteReader, key: String, depth: Int) throws(GGUFError) -> GGUFArray {
        guard depth <= maximumArrayDepth else { throw reader.error(.arrayNestingTooDeep(depth: depth)) }
        let typeOffset = reader.offset
        let raw = try reader.read(UInt32.self, "element type of '\(key)'")
        guard let type = GGUFValueType(rawValue: raw) else { throw reader.error(.unknownValueType(raw), at: typeOffset) }
        let countOffset = reader.offset
        let rawCount = try reader.read(UInt64.self, "element count of '\(key)'")
        let n = try reader.checkCount(rawCount, minimumSize: type.minimumSize, "array '\(key)' element count", at: countOffset)

        func fixed<T: FixedWidthInteger>(_: T.Type) throws(GGUFError) -> [T] {
            // checkCount above guarantees these n values are inside the file.
            let values = (0..<n).map { i in
                T(littleEndian: reader.bytes.loadUnaligned(fromByteOffset: reader.offset + i * MemoryLayout<T>.size, as: T.self))
            }
            reader.offset += n * MemoryLayout<T>.size
            return values
        }

        switch type {
        case .uint8: return .uint8(try fixed(UInt8.self))
        case .int8: return .int8(try fixed(Int8.self))
        case .uint16: return .uint16(try fixed(UInt16.self))
        case .int16: return .int16(try fixed(Int16.self))
        case .uint32: return .uint32(try fixed(UInt32.self))
        case .int32: return .int32(try fixed(Int32.self))
        case .uint64: return .uint64(try fixed(UInt64.self))
        case .int64: return .int64(try fixed(Int64.self))
        case .float32: return .float32(try fixed(UInt32.self).map(Float.init(bitPattern:)))
        case .float64: return .float64(try fixed(UInt64.self).map(Double.init(bitPattern:)))
        case .bool: return .bool(try fixed(UInt8.self).map { $0 != 0 })
        case .string:
            var strings: [String] = []
            strings.reserveCapacity(n)
            for _ in 0..<n { strings.append(try reader.readString("element of '\(key)'")) }
            return .string(strings)
        case .array:
            var arrays: [GGUFArray] = []
            arrays.reserveCapacity(n)
            for _ in 0..<n { arrays.append(try readArray(&reader, key: key, depth: depth + 1)) }
            return .array(arrays)
        }
    }

    // MARK: Lookup

    public subscript(key: String) -> GGUFValue? {
        index[key].map { metadata[$0].value }
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The bytes of a tensor's data, straight from the mapping (no copy). Valid while this file lives.
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mappings[tensor.shard].bytes[tensor.fileOffset..<tensor.fileOffset + tensor.byteCount])
    }

    public func string(_ key: String) -> String? { self[key]?.stringValue }
    public func int(_ key: String) -> Int? { self[key]?.intValue }
    public func double(_ key: String) -> Double? { self[key]?.doubleValue }
    public func bool(_ key: String) -> Bool? { self[key]?.boolValue }
    public func array(_ key: String) -> GGUFArray? { self[key]?.arrayValue }
}

/// Everything that can be wrong with a GGUF file, with the file and the byte offset where it was found.
public struct GGUFError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Problem: Sendable, Equatable {
        case cannotOpen(reason: String)
        /// The file ends before `needed` bytes could be read (`available` were left).
        case truncated(reading: String, needed: UInt64, available: UInt64)
        case badMagic(found: [UInt8])
        case unsupportedVersion(UInt32)
        /// A count or length that cannot fit in what is left of the file.
        case countExceedsFile(what: String, count: UInt64, available: UInt64)
        case unknownValueType(UInt32)
        case arrayNestingTooDeep(depth: Int)
        case duplicateKey(String)
        case wrongValueType(key: String, expected: String, found: String)
        case invalidAlignment(UInt64)
        case tooManyDimensions(tensor: String, count: UInt32)
        case invalidShape(tensor: String, shape: [UInt64], reason: String)
        case unknownTensorType(tensor: String, typeID: UInt32)
        case duplicateTensor(String)
        case misalignedTensor(tensor: String, offset: UInt64, alignment: Int)
        case tensorOutOfRange(tensor: String, start: UInt64, size: UInt64, fileSize: UInt64)
        case writeFailed(reason: String)
        case invalidTensorData(tensor: String, expectedBytes: Int, found: Int)
        /// The files of a split model do not fit together.
        case split(String)
    }

    public var path: String
    public var offset: UInt64
    public var problem: Problem

    public init(path: String, offset: UInt64, problem: Problem) {
        self.path = path
        self.offset = offset
        self.problem = problem
    }

    public var description: String {
        "\(path): at byte \(offset): \(problemText)"
    }

    private var problemText: String {
        switch problem {
        case .cannotOpen(let reason):
            return "cannot open file: \(reason)"
        case .truncated(let what, let needed, let available):
            return "file is truncated: reading \(what) needs \(needed) bytes but only \(available) remain (was the download interrupted?)"
        case .badMagic(let found):
            let hex = found.map { String($0, radix: 16, uppercase: true) }.joined(separator: " ")
            return "not a GGUF file (magic bytes are [\(hex)], expected 'GGUF')"
        case .unsupportedVersion(let version):
            return "unsupported GGUF version \(version) (versions 2 and 3 are supported)"
        case .countExceedsFile(let what, let count, let available):
            return "\(what) of \(count) cannot fit in the \(available) bytes left in the file (corrupt file?)"
        case .unknownValueType(let type):
            return "unknown metadata value type \(type)"
        case .arrayNestingTooDeep(let depth):
            return "metadata arrays nested \(depth) deep (corrupt file?)"
        case .duplicateKey(let key):
            return "metadata key '\(key)' appears twice"
        case .wrongValueType(let key, let expected, let found):
            return "metadata key '\(key)' should be \(expected) but is \(found)"
        case .invalidAlignment(let value):
            return "general.alignment = \(value) is not a power of two"
        case .tooManyDimensions(let tensor, let count):
            return "tensor '\(tensor)' has \(count) dimensions (at most 4 are allowed)"
        case .invalidShape(let tensor, let shape, let reason):
            return "tensor '\(tensor)' has invalid shape \(shape): \(reason)"
        case .unknownTensorType(let tensor, let typeID):
            return "tensor '\(tensor)' has unknown ggml type id \(typeID) (a newer llama.cpp format?)"
        case .duplicateTensor(let name):
            return "tensor '\(name)' appears twice"
        case .misalignedTensor(let tensor, let offset, let alignment):
            return "tensor '\(tensor)' data offset \(offset) is not a multiple of the alignment \(alignment)"
        case .tensorOutOfRange(let tensor, let start, let size, let fileSize):
            return "tensor '\(tensor)' data (\(size) bytes at byte \(start)) runs past the end of the \(fileSize)-byte file (truncated download?)"
        case .writeFailed(let reason):
            return "cannot write file: \(reason)"
        case .invalidTensorData(let tensor, let expected, let found):
            return "tensor '\(tensor)' needs \(expected) bytes of data but \(found) were given"
        case .split(let reason):
            return "split model: \(reason)"
        }
    }
}

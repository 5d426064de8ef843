import Foundation
import GGUF
import Testing
import TestSupport

/// Every way a GGUF file can be broken gives a typed error naming the file, the offset and the
/// problem: never a crash, a hang or a huge allocation.
@Suite struct GGUFBadInputTests {
    /// A small valid file: one string and one array of metadata, two tensors.
    static func validFile() throws -> [UInt8] {
        var writer = GGUFWriter()
        writer.set("general.name", .string("tiny"))
        writer.set("tokenizer.ggml.tokens", .array(.string(["a", "b", "c"])))
        try writer.addTensor(name: "first", shape: [8], type: .f32, data: [UInt8](repeating: 1, count: 32))
        try writer.addTensor(name: "second", shape: [32, 2], type: .q8_0, data: [UInt8](repeating: 2, count: 68))
        return writer.serialized()
    }

    /// Layout facts of `validFile()`, found from the bytes themselves.
    struct Layout {
        let bytes: [UInt8]
        func index(of text: String) -> Int {
            let needle = Array(text.utf8)
            return (0...(bytes.count - needle.count)).first { bytes[$0..<$0 + needle.count].elementsEqual(needle) }!
        }
        /// Where the first metadata key's length is.
        var firstKeyLength: Int { 24 }
        /// The 8-byte length of the "tiny" string value.
        var nameValueLength: Int { index(of: "general.name") + "general.name".utf8.count + 4 }
        /// The 8-byte element count of the token array.
        var tokenArrayCount: Int { index(of: "tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".utf8.count + 4 + 4 }
        /// Start of the tensor index entry for a tensor named `name` with `dims` dimensions.
        func tensorEntry(_ name: String) -> Int { index(of: name) - 8 }
        func dimensionCount(_ name: String) -> Int { index(of: name) + name.utf8.count }
        func typeField(_ name: String, dims: Int) -> Int { dimensionCount(name) + 4 + 8 * dims }
        func offsetField(_ name: String, dims: Int) -> Int { typeField(name, dims: dims) + 4 }
    }

    static func patched(_ bytes: [UInt8], at offset: Int, _ value: some FixedWidthInteger) -> [UInt8] {
        var copy = bytes
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, b) in raw.enumerated() { copy[offset + i] = b }
        }
        return copy
    }

    /// Opens the bytes as a file and returns the error it must give.
    static func error(opening bytes: [UInt8], _ name: String) throws -> GGUFError {
        let path = try TemporaryFile.write(bytes, name)
        do {
            _ = try GGUFFile(path: path)
        } catch {
            #expect(error.path == path)
            #expect(error.description.contains(path))
            #expect(error.description.contains("at byte \(error.offset)"))
            return error
        }
        Issue.record("\(name) opened without an error")
        throw FixtureError("no error")
    }

    @Test func theValidFileOpens() throws {
        let path = try TemporaryFile.write(Self.validFile(), "valid.gguf")
        let file = try GGUFFile(path: path)
        #expect(file.tensors.count == 2)
        #expect(file.string("general.name") == "tiny")
    }

    @Test func truncatedInTheHeader() throws {
        let error = try Self.error(opening: Array(Self.validFile().prefix(12)), "cut-header.gguf")
        guard case .truncated(let what, let needed, let available) = error.problem else { Issue.record("\(error)"); return }
        #expect(what == "tensor count")
        #expect(error.offset == 8 && needed == 8 && available == 4)
    }

    @Test func truncatedInTheMetadata() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let cut = layout.tokenArrayCount + 10  // inside the token strings
        let error = try Self.error(opening: Array(bytes.prefix(cut)), "cut-metadata.gguf")
        // The array count (3 strings of at least 8 bytes) no longer fits.
        guard case .countExceedsFile(let what, let count, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(what.contains("tokenizer.ggml.tokens"))
        #expect(count == 3)
        #expect(error.offset == UInt64(layout.tokenArrayCount))
    }

    @Test func truncatedInsideAMetadataString() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let error = try Self.error(opening: Array(bytes.prefix(layout.nameValueLength + 8 + 2)), "cut-string.gguf")
        guard case .countExceedsFile = error.problem else { Issue.record("\(error)"); return }
        #expect(error.offset == UInt64(layout.nameValueLength))
    }

    @Test func truncatedInTheTensorIndex() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let cut = layout.typeField("second", dims: 2) + 2
        let error = try Self.error(opening: Array(bytes.prefix(cut)), "cut-index.gguf")
        guard case .truncated(let what, _, let available) = error.problem else { Issue.record("\(error)"); return }
        #expect(what == "type of 'second'")
        #expect(available == 2)
        #expect(error.offset == UInt64(layout.typeField("second", dims: 2)))
    }

    @Test func truncatedInTheTensorData() throws {
        let bytes = try Self.validFile()
        let error = try Self.error(opening: Array(bytes.dropLast(40)), "cut-data.gguf")
        guard case .tensorOutOfRange(let tensor, _, let size, let fileSize) = error.problem else { Issue.record("\(error)"); return }
        #expect(tensor == "second")
        #expect(size == 68)
        #expect(fileSize == UInt64(bytes.count - 40))
        #expect(error.description.contains("truncated"))
    }

    @Test func emptyFile() throws {
        let error = try Self.error(opening: [], "empty.gguf")
        guard case .truncated(let what, _, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(what == "magic")
    }

    @Test func badMagic() throws {
        var bytes = try Self.validFile()
        bytes[0] = UInt8(ascii: "X")
        let error = try Self.error(opening: bytes, "magic.gguf")
        #expect(error.problem == .badMagic(found: Array("XGUF".utf8)))
        #expect(error.offset == 0)
    }

    @Test(arguments: [UInt32(1), 4, 0xFFFF_FFFF])
    func unknownVersion(version: UInt32) throws {
        let bytes = Self.patched(try Self.validFile(), at: 4, version)
        let error = try Self.error(opening: bytes, "version-\(version).gguf")
        #expect(error.problem == .unsupportedVersion(version))
        #expect(error.offset == 4)
    }

    @Test func absurdTensorCount() throws {
        let bytes = Self.patched(try Self.validFile(), at: 8, UInt64(1) << 62)
        let error = try Self.error(opening: bytes, "tensor-count.gguf")
        guard case .countExceedsFile(let what, let count, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(what == "tensor count" && count == 1 << 62)
        #expect(error.offset == 8)
    }

    @Test func absurdMetadataCount() throws {
        let bytes = Self.patched(try Self.validFile(), at: 16, UInt64.max)
        let error = try Self.error(opening: bytes, "kv-count.gguf")
        guard case .countExceedsFile(let what, _, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(what == "metadata count")
        #expect(error.offset == 16)
    }

    @Test func absurdStringLength() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let error = try Self.error(opening: Self.patched(bytes, at: layout.nameValueLength, UInt64(1) << 60), "string-length.gguf")
        guard case .countExceedsFile(_, let count, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(count == 1 << 60)
        #expect(error.offset == UInt64(layout.nameValueLength))
    }

    @Test func absurdKeyLength() throws {
        let bytes = Self.patched(try Self.validFile(), at: Layout(bytes: []).firstKeyLength, UInt64(1) << 60)
        let error = try Self.error(opening: bytes, "key-length.gguf")
        guard case .countExceedsFile(let what, _, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(what == "metadata key length")
        #expect(error.offset == 24)
    }

    @Test func absurdArrayCount() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let error = try Self.error(opening: Self.patched(bytes, at: layout.tokenArrayCount, UInt64(1) << 61), "array-count.gguf")
        guard case .countExceedsFile(_, let count, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(count == 1 << 61)
    }

    @Test func unknownMetadataValueType() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let typeOffset = layout.nameValueLength - 4
        let error = try Self.error(opening: Self.patched(bytes, at: typeOffset, UInt32(99)), "value-type.gguf")
        #expect(error.problem == .unknownValueType(99))
        #expect(error.offset == UInt64(typeOffset))
    }

    @Test func arraysNestedTooDeep() throws {
        var inner: GGUFArray = .int32([1])
        for _ in 0..<20 { inner = .array([inner]) }
        var writer = GGUFWriter()
        writer.set("deep", .array(inner))
        let error = try Self.error(opening: writer.serialized(), "deep.gguf")
        guard case .arrayNestingTooDeep = error.problem else { Issue.record("\(error)"); return }
    }

    @Test func misalignedTensorOffset() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let field = layout.offsetField("second", dims: 2)
        let error = try Self.error(opening: Self.patched(bytes, at: field, UInt64(33)), "misaligned.gguf")
        #expect(error.problem == .misalignedTensor(tensor: "second", offset: 33, alignment: 32))
        #expect(error.offset == UInt64(layout.tensorEntry("second")))
    }

    @Test func tensorOffsetPastTheEnd() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        for (offset, name) in [(UInt64(1) << 40, "far"), (UInt64.max - 31, "overflow")] {
            let error = try Self.error(opening: Self.patched(bytes, at: layout.offsetField("first", dims: 1), offset), "offset-\(name).gguf")
            guard case .tensorOutOfRange(let tensor, _, _, _) = error.problem else { Issue.record("\(error)"); continue }
            #expect(tensor == "first")
        }
    }

    @Test func unknownTensorType() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let field = layout.typeField("first", dims: 1)
        let error = try Self.error(opening: Self.patched(bytes, at: field, UInt32(77)), "tensor-type.gguf")
        #expect(error.problem == .unknownTensorType(tensor: "first", typeID: 77))
        #expect(error.offset == UInt64(field))
    }

    @Test func tooManyDimensions() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let field = layout.dimensionCount("first")
        let error = try Self.error(opening: Self.patched(bytes, at: field, UInt32(1000)), "dims.gguf")
        #expect(error.problem == .tooManyDimensions(tensor: "first", count: 1000))
    }

    @Test func overflowingShape() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        // second is [32, 2]: make it [32, 2^62], whose element count overflows.
        let rows = layout.dimensionCount("second") + 4 + 8
        let error = try Self.error(opening: Self.patched(bytes, at: rows, UInt64(1) << 62), "shape.gguf")
        guard case .invalidShape(let tensor, _, _) = error.problem else { Issue.record("\(error)"); return }
        #expect(tensor == "second")
    }

    @Test func rowNotAWholeNumberOfBlocks() throws {
        let bytes = try Self.validFile()
        let layout = Layout(bytes: bytes)
        let error = try Self.error(opening: Self.patched(bytes, at: layout.dimensionCount("second") + 4, UInt64(33)), "blocks.gguf")
        guard case .invalidShape(_, _, let reason) = error.problem else { Issue.record("\(error)"); return }
        #expect(reason.contains("block size"))
    }

    @Test func duplicateKey() throws {
        var writer = GGUFWriter()
        writer.set("general.name", .string("tiny"))
        writer.set("general.namX", .string("tiny"))
        var raw = writer.serialized()
        raw[Layout(bytes: raw).index(of: "general.namX") + 11] = UInt8(ascii: "e")
        let error = try Self.error(opening: raw, "duplicate.gguf")
        #expect(error.problem == .duplicateKey("general.name"))
    }

    @Test func missingFile() {
        #expect(throws: GGUFError.self) { try GGUFFile(path: "/nonexistent/model.gguf") }
        do {
            _ = try GGUFFile(path: "/nonexistent/model.gguf")
        } catch {
            #expect(error.description.contains("/nonexistent/model.gguf"))
        }
    }

    @Test func directoryIsNotAModel() {
        #expect(throws: GGUFError.self) { try GGUFFile(path: TemporaryFile.directory) }
    }
}

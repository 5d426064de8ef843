import Foundation
import GGUF
import Testing
import TestSupport

@Suite struct GGUFRoundTripTests {
    static func everyValueType() -> [(String, GGUFValue)] {
        [
            ("t.u8", .uint8(200)), ("t.i8", .int8(-100)), ("t.u16", .uint16(60000)), ("t.i16", .int16(-30000)),
            ("t.u32", .uint32(4_000_000_000)), ("t.i32", .int32(-2_000_000_000)),
            ("t.u64", .uint64(UInt64.max)), ("t.i64", .int64(Int64.min)),
            ("t.f32", .float32(3.25)), ("t.f64", .float64(-1e300)), ("t.bool", .bool(true)),
            ("t.string", .string("héllo 🦙")), ("t.empty", .string("")),
            ("t.a.u8", .array(.uint8([1, 2, 255]))), ("t.a.i8", .array(.int8([-1, 0, 1]))),
            ("t.a.u16", .array(.uint16([1, 65535]))), ("t.a.i16", .array(.int16([-5]))),
            ("t.a.u32", .array(.uint32([7, 8]))), ("t.a.i32", .array(.int32([-7, 8]))),
            ("t.a.u64", .array(.uint64([1 << 40]))), ("t.a.i64", .array(.int64([-(1 << 40)]))),
            ("t.a.f32", .array(.float32([0.5, -0.25]))), ("t.a.f64", .array(.float64([1e-300]))),
            ("t.a.bool", .array(.bool([true, false]))), ("t.a.string", .array(.string(["a", "", "▁b"]))),
            ("t.a.empty", .array(.int32([]))),
            ("t.a.nested", .array(.array([.int32([1, 2]), .string(["x"]), .array([.float32([1])]), .uint8([])]))),
        ]
    }

    @Test func metadataAndTensorsSurviveARoundTrip() throws {
        var writer = GGUFWriter()
        for (key, value) in Self.everyValueType() { writer.set(key, value) }
        let f32 = (0..<12).flatMap { i in withUnsafeBytes(of: Float(i).bitPattern.littleEndian, Array.init) }
        let q8 = (0..<(2 * 34)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let odd = [UInt8](repeating: 9, count: 3 * 2)
        try writer.addTensor(name: "a.weight", shape: [4, 3], type: .f32, data: f32)
        try writer.addTensor(name: "b.weight", shape: [32, 2], type: .q8_0, data: q8)
        try writer.addTensor(name: "c", shape: [3], type: .f16, data: odd)
        let path = TemporaryFile.path("roundtrip.gguf")
        try writer.write(to: path)

        let file = try GGUFFile(path: path)
        #expect(file.version == 3)
        #expect(file.metadata.map(\.key) == Self.everyValueType().map(\.0))
        for (key, value) in Self.everyValueType() {
            #expect(file[key] == value, "\(key)")
        }
        #expect(file.tensors.map(\.name) == ["a.weight", "b.weight", "c"])
        #expect(file.tensors.map(\.shape) == [[4, 3], [32, 2], [3]])
        #expect(file.tensors.map(\.type) == [.f32, .q8_0, .f16])
        #expect(Array(file.data(of: file.tensors[0])) == f32)
        #expect(Array(file.data(of: file.tensors[1])) == q8)
        #expect(Array(file.data(of: file.tensors[2])) == odd)
        for t in file.tensors { #expect(t.fileOffset % 32 == 0) }
    }

    /// Declared tensors are produced one at a time while the file is written (how quantize keeps
    /// only one tensor in memory), and the result is the same file as with all data given up front.
    @Test func streamedTensorsMatchTheInMemoryWriter() throws {
        let data: [[UInt8]] = [(0..<16).map { UInt8($0) }, (0..<34).map { UInt8($0 * 3 % 256) }, [1, 2, 3, 4, 5, 6]]
        let layout: [(String, [Int], GGMLType)] = [("a", [4], .f32), ("b", [32], .q8_0), ("c", [3], .f16)]
        var streamed = GGUFWriter(), whole = GGUFWriter()
        streamed.set("k", .string("v"))
        whole.set("k", .string("v"))
        for (i, (name, shape, type)) in layout.enumerated() {
            #expect(try streamed.declareTensor(name: name, shape: shape, type: type) == i)
            try whole.addTensor(name: name, shape: shape, type: type, data: data[i])
        }
        var asked: [Int] = []
        let path = TemporaryFile.path("streamed.gguf")
        try streamed.write(to: path) { index in
            asked.append(index)
            return data[index]
        }
        #expect(asked == [0, 1, 2])
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == whole.serialized())
    }

    /// A producer that fails, or gives the wrong number of bytes, leaves no file behind.
    @Test func failedStreamLeavesNoFile() throws {
        var writer = GGUFWriter()
        try writer.declareTensor(name: "a", shape: [4], type: .f32)
        try writer.declareTensor(name: "b", shape: [4], type: .f32)
        let path = TemporaryFile.path("failed.gguf")
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try writer.write(to: path) { index in
                if index == 1 { throw Stop() }
                return [UInt8](repeating: 0, count: 16)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(!FileManager.default.fileExists(atPath: path + ".partial"))
        #expect(throws: GGUFError.self) { try writer.write(to: path) { _ in [1, 2, 3] } }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    /// Version 2 has the same layout as version 3 (which only added big-endian files).
    @Test func version2FilesOpen() throws {
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("llama"))
        try writer.addTensor(name: "x", shape: [2], type: .f32, data: [0, 0, 128, 63, 0, 0, 0, 64])
        var bytes = writer.serialized()
        bytes[4] = 2
        let file = try GGUFFile(path: TemporaryFile.write(bytes, "v2.gguf"))
        #expect(file.version == 2)
        #expect(file.string("general.architecture") == "llama")
        #expect(Array(file.data(of: file.tensors[0])) == [0, 0, 128, 63, 0, 0, 0, 64])
    }

    @Test func customAlignmentIsHonoured() throws {
        var writer = GGUFWriter()
        writer.set("general.alignment", .uint32(64))
        try writer.addTensor(name: "x", shape: [1], type: .f32, data: [0, 0, 128, 63])
        try writer.addTensor(name: "y", shape: [1], type: .f32, data: [0, 0, 0, 64])
        let file = try GGUFFile(path: TemporaryFile.write(writer.serialized(), "aligned.gguf"))
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0)
        #expect(file.tensors.allSatisfy { $0.fileOffset % 64 == 0 })
        #expect(Array(file.data(of: file.tensor(named: "y")!)) == [0, 0, 0, 64])
    }

    /// The writer reproduces a real GGUF file (written by llama.cpp's gguf-py) byte for byte.
    @Test func rewritingARealModelGivesTheSameBytes() throws {
        let original = try GGUFFile(path: Fixtures.path("tiny260K/tiny260K.gguf"))
        #expect(original.tensors.count == 48)
        #expect(original.string("general.architecture") == "llama")
        #expect(original.int("llama.embedding_length") == 64)
        #expect(original.array("tokenizer.ggml.tokens")?.count == 512)
        var writer = GGUFWriter()
        for (key, value) in original.metadata { writer.set(key, value) }
        for t in original.tensors {
            try writer.addTensor(name: t.name, shape: t.shape, type: t.type, data: Array(original.data(of: t)))
        }
        let rewritten = writer.serialized()
        let bytes = try #require(FileManager.default.contents(atPath: original.path))
        #expect(rewritten.count == bytes.count)
        #expect(rewritten == [UInt8](bytes))
    }

    @Test func writerRefusesDataOfTheWrongSize() {
        var writer = GGUFWriter()
        #expect(throws: GGUFError.self) { try writer.addTensor(name: "x", shape: [32], type: .q4_0, data: [0]) }
        #expect(throws: GGUFError.self) { try writer.addTensor(name: "x", shape: [31], type: .q4_0, data: [UInt8](repeating: 0, count: 18)) }
    }

    @Test func typeTableKnowsEveryAssignedID() {
        #expect(GGMLType(id: 12)?.name == "Q4_K")
        #expect(GGMLType(id: 30) == .bf16)
        #expect(GGMLType(id: 4) == nil)
        #expect(GGMLType(name: "q6_k")?.bytesPerBlock == 210)
        #expect(GGMLType.all.count == Set(GGMLType.all.map(\.id)).count)
    }
}

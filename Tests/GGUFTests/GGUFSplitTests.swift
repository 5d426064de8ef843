import Foundation
import GGUF
import Testing
import TestSupport

/// Split models: written by GGUFSplit as llama.cpp's gguf-split names and keys them, read back as
/// one from any of their files; files that do not fit together are refused with a clear error.
@Suite struct GGUFSplitTests {
    /// A small model-like file: metadata and five tensors of different sizes.
    static func whole(_ name: String) throws -> GGUFFile {
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("llama"))
        writer.set("general.name", .string(name))
        for (i, rows) in [1, 7, 2, 9, 3].enumerated() {
            let bytes = (0..<(rows * 34)).map { UInt8(truncatingIfNeeded: $0 * (i + 3)) }
            try writer.addTensor(name: "t\(i).weight", shape: [32, rows], type: .q8_0, data: bytes)
        }
        let path = TemporaryFile.path("\(name).gguf")
        try writer.write(to: path)
        return try GGUFFile(path: path)
    }

    @Test(arguments: [1, 2, 3, 5])
    func readsBackAsOneFromAnyPart(parts: Int) throws {
        let whole = try Self.whole("split-\(parts)")
        let paths = try GGUFSplit.write(whole, parts: parts, stem: TemporaryFile.path("split-\(parts)-out"))
        #expect(paths.count == parts)
        #expect(paths.last?.hasSuffix("-\(String(format: "%05d", parts))-of-\(String(format: "%05d", parts)).gguf") == true)
        for path in paths {
            let file = try GGUFFile(path: path)
            #expect(file.mappings.count == parts)
            #expect(file.string("general.name") == "split-\(parts)")
            #expect(file.tensors.map(\.name) == whole.tensors.map(\.name))
            for tensor in whole.tensors {
                let read = try #require(file.tensor(named: tensor.name))
                #expect(Array(file.data(of: read)) == Array(whole.data(of: tensor)), "\(tensor.name)")
            }
        }
        // Every part holds at least one tensor, and the first the metadata.
        for (i, path) in paths.enumerated() {
            let alone = try GGUFFile(mapping: MappedFile(path: path))
            #expect(!alone.tensors.isEmpty)
            #expect(alone.int("split.no") == i && alone.int("split.count") == parts && alone.int("split.tensors.count") == 5)
            #expect((alone.string("general.name") != nil) == (i == 0))
        }
    }

    @Test func aMissingPartIsNamed() throws {
        let paths = try GGUFSplit.write(try Self.whole("gone"), parts: 3, stem: TemporaryFile.path("gone-out"))
        try FileManager.default.removeItem(atPath: paths[1])
        let error = try #require(throws: GGUFError.self) { try GGUFFile(path: paths[0]) }
        #expect(error.path == paths[1])
    }

    @Test func partsThatDoNotFitTogetherAreRefused() throws {
        let a = try GGUFSplit.write(try Self.whole("a"), parts: 2, stem: TemporaryFile.path("fit-a"))
        let b = try GGUFSplit.write(try Self.whole("b"), parts: 3, stem: TemporaryFile.path("fit-b"))
        // The second part of a 3-way split put where a 2-way split's second part should be.
        let mixed = TemporaryFile.path("fit-mixed")
        try? FileManager.default.removeItem(atPath: mixed + "-00001-of-00002.gguf")
        try? FileManager.default.removeItem(atPath: mixed + "-00002-of-00002.gguf")
        try FileManager.default.copyItem(atPath: a[0], toPath: mixed + "-00001-of-00002.gguf")
        try FileManager.default.copyItem(atPath: b[1], toPath: mixed + "-00002-of-00002.gguf")
        let error = try #require(throws: GGUFError.self) { try GGUFFile(path: mixed + "-00001-of-00002.gguf") }
        guard case .split(let reason) = error.problem else { Issue.record("\(error)"); return }
        #expect(reason.contains("part 2 of 2"))
        // A part renamed so its name no longer tells where the others are.
        let renamed = TemporaryFile.path("renamed.gguf")
        try? FileManager.default.removeItem(atPath: renamed)
        try FileManager.default.copyItem(atPath: a[0], toPath: renamed)
        #expect(throws: GGUFError.self) { try GGUFFile(path: renamed) }
    }

    @Test func hostileSplitKeysAreRefused() throws {
        for (no, count) in [(5, 2), (-1, 2), (0, 0), (0, 100_000)] as [(Int32, Int32)] {
            var writer = GGUFWriter()
            writer.set("split.no", .int32(no))
            writer.set("split.count", .int32(count))
            let path = TemporaryFile.path("hostile-00001-of-00002.gguf")
            try writer.write(to: path)
            #expect(throws: GGUFError.self, "split.no \(no) count \(count)") { try GGUFFile(path: path) }
        }
    }
}

import Foundation
import GGUF
import Llama
import Testing
import TestSupport

/// A split model (three files, written by GGUFSplit as llama.cpp's gguf-split lays them out) is
/// the same model: loaded from any of its files, it gives the whole file's logits bit for bit.
@Suite struct SplitModelTests {
    @Test func aSplitModelGivesTheWholeFilesLogits() throws {
        let wholePath = try DefaultModel.locate()
        let parts = try GGUFSplit.write(try GGUFFile(path: wholePath), parts: 3, stem: TemporaryFile.path("smollm2-split"))
        defer { for path in parts { try? FileManager.default.removeItem(atPath: path) } }
        let tokens: [TokenID] = [1, 9690, 2114, 253, 655, 28, 665, 1344]
        func logits(_ path: String) throws -> [Float] {
            let model = try LlamaModel.load(path: path)
            let context = LlamaContext(model: model, contextSize: 64, threads: 2)
            return try context.evaluate(tokens, logitsFor: .all)
        }
        let expected = try logits(wholePath)
        #expect(try logits(parts[0]) == expected)
        #expect(try logits(parts[2]) == expected)
        let info = ModelInfo(file: try GGUFFile(path: parts[1]))
        #expect(info.fileSize > 98_000_000)
        #expect(info.architecture == "llama")
    }
}

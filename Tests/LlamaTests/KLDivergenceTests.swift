import Foundation
import GGUF
import Llama
import Testing
import TestSupport

/// `llama perplexity --kl-divergence-base`: llama.cpp's logits file format, read and written.
@Suite struct KLDivergenceTests {
    static let stories = Fixtures.path("tiny260K/tiny260K.gguf")

    /// A base file written by llama.cpp's llama-perplexity (Scripts/make_golden_architectures.py).
    @Test func readsLlamaCppsFile() throws {
        let base = try LogitsFile(path: Fixtures.projectRoot + "/Tests/LlamaTests/Golden/tiny260K-llamacpp.kld")
        #expect(base.contextSize == 64 && base.chunks == 2 && base.vocabularySize == 512)
        let model = try LlamaModel.load(path: Self.stories)
        let context = LlamaContext(model: model, contextSize: 64, batchSize: 64, threads: 1)
        let r = try context.klDivergence(against: base)
        #expect(r.count == 2 * 31)
        #expect(r.meanKLD < 0.001, "KLD \(r.meanKLD)")
        #expect(r.sameTop > 0.95)
        #expect(abs(r.perplexityRatio - 1) < 0.01)
    }

    /// What we write, we read back: against itself the divergence is only the 16-bit rounding.
    @Test func roundTrip() throws {
        let model = try LlamaModel.load(path: Self.stories)
        let text = try Fixtures.text("text/news.txt")
        let tokens = model.tokenizer.encode(String(text.prefix(4000)))
        let context = LlamaContext(model: model, contextSize: 64, batchSize: 64, threads: 1)
        let path = TemporaryFile.path("roundtrip.kld")
        let measured = try context.perplexity(of: tokens, maxChunks: 3, saveLogits: LogitsFileWriter(path: path))
        let base = try LogitsFile(path: path)
        #expect(base.chunks == 3 && base.tokens == Array(tokens[0..<(3 * 64)]))
        let r = try context.klDivergence(against: base)
        #expect(r.meanKLD < 1e-5 && r.sameTop == 1)
        #expect(abs(r.perplexity / measured.perplexity - 1) < 1e-4)
        #expect(abs(r.basePerplexity / measured.perplexity - 1) < 1e-3)
    }

    /// A damaged or hostile file is a clear error, never a crash or a huge allocation.
    @Test func badFilesAreClearErrors() throws {
        func refused(_ bytes: [UInt8], _ words: String) {
            let path = TemporaryFile.path("bad.kld")
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
            #expect(throws: ModelError.self) { try LogitsFile(path: path) }
            do { _ = try LogitsFile(path: path) } catch { #expect(String(describing: error).contains(words), "\(error)") }
        }
        func header(_ ctx: Int32, _ vocab: Int32, _ chunks: Int32) -> [UInt8] {
            Array("_logits_".utf8) + [ctx, vocab, chunks].flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        }
        refused(Array("not logits at all".utf8), "not a logits file")
        refused(header(64, 512, 2), "truncated")
        refused(header(1 << 20, 1 << 24, 1 << 20), "truncated")
        refused(header(-5, 512, 2), "out of range")
        refused(header(64, 0, 2), "out of range")
        // A file for another context size or vocabulary is refused when compared.
        let base = try LogitsFile(path: Fixtures.projectRoot + "/Tests/LlamaTests/Golden/tiny260K-llamacpp.kld")
        let context = LlamaContext(model: try LlamaModel.load(path: Self.stories), contextSize: 128, threads: 1)
        #expect(throws: ModelError.self) { try context.klDivergence(against: base) }
    }
}

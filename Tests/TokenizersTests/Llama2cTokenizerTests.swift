import Foundation
import Llama
import Testing
import TestSupport

/// llama2.c's tokenizer.bin format loads into the same SentencePiece tokenizer.
@Suite struct Llama2cTokenizerTests {
    @Test func tok512EncodeVectors() throws {
        let tokenizer = try Tokenizer(.llama2c(contentsOf: Fixtures.path("tiny260K/tok512.bin")))
        #expect(tokenizer.vocabularySize == 512)
        let vectors = try Tiny260KVectors.load()
        #expect(!vectors.encodeVectors.isEmpty)
        for v in vectors.encodeVectors {
            #expect(tokenizer.encode(v.text) == v.ids, "\(v.text.debugDescription)")
            #expect(Array(tokenizer.decode(tokenizer.encode(v.text)).utf8) == Array(v.text.utf8))
        }
        #expect(tokenizer.encode(vectors.prompt) == vectors.promptIds)
    }

    @Test func tok512MatchesTheGGUFVocabularyOfTheSameModel() throws {
        let fromBin = try Tokenizer(.llama2c(contentsOf: Fixtures.path("tiny260K/tok512.bin")))
        let fromGGUF = try Fixtures.tokenizer(gguf: "tiny260K/tiny260K.gguf")
        for text in try Fixtures.vocabInputs() {
            #expect(fromBin.encode(text) == fromGGUF.encode(text), "\(text.debugDescription)")
        }
    }

    /// llama2.c's export of the Llama 2 vocabulary encodes like llama.cpp's Llama 2 GGUF vocabulary.
    @Test func llama2TokenizerBinMatchesTheLlamaCppVectors() throws {
        let tokenizer = try Tokenizer(.llama2c(contentsOf: Fixtures.path("llama2-tokenizer/tokenizer.bin")))
        #expect(tokenizer.vocabularySize == 32000)
        let inputs = try Fixtures.vocabInputs()
        let expected = try Fixtures.expectedIDs("llamacpp-vocab/ggml-vocab-llama-spm.gguf.out", count: inputs.count)
        for (text, ids) in zip(inputs, expected) {
            #expect(tokenizer.encode(text, addSpecial: false) == ids, "\(text.debugDescription)")
        }
    }

    @Test func truncatedFileIsAnError() throws {
        let data = try #require(FileManager.default.contents(atPath: Fixtures.path("tiny260K/tok512.bin")))
        let cut = [UInt8](data.prefix(data.count - 3))
        #expect(throws: TokenizerError.self) { try TokenizerDefinition.llama2c(bytes: cut) }
        #expect(throws: TokenizerError.self) { try TokenizerDefinition.llama2c(bytes: [1, 0]) }
    }
}

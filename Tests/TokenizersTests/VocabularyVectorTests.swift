import Foundation
import Llama
import Testing
import TestSupport

/// llama.cpp's own tokenizer test vectors (verified there against sentencepiece and Hugging Face
/// `tokenizers`), and the SmolLM2 vocabulary on the same strings (made with `tokenizers`).
@Suite struct VocabularyVectorTests {
    static let llamaCppVocabularies = ["ggml-vocab-llama-spm", "ggml-vocab-llama-bpe", "ggml-vocab-gpt-2"]

    @Test(arguments: llamaCppVocabularies)
    func llamaCppVectors(vocabulary: String) throws {
        let tokenizer = try Fixtures.tokenizer(gguf: "llamacpp-vocab/\(vocabulary).gguf")
        let inputs = try Fixtures.vocabInputs(vocabulary)
        let expected = try Fixtures.expectedIDs("llamacpp-vocab/\(vocabulary).gguf.out", count: inputs.count)
        #expect(inputs.count == 47)
        #expect(expected.count == inputs.count)
        for (text, ids) in zip(inputs, expected) {
            #expect(tokenizer.encode(text, addSpecial: false) == ids, "\(vocabulary): \(text.debugDescription)")
        }
    }

    @Test(arguments: llamaCppVocabularies)
    func decodeInvertsEncode(vocabulary: String) throws {
        let tokenizer = try Fixtures.tokenizer(gguf: "llamacpp-vocab/\(vocabulary).gguf")
        for text in try Fixtures.vocabInputs(vocabulary) {
            #expect(Array(tokenizer.decode(tokenizer.encode(text)).utf8) == Array(text.utf8), "\(vocabulary): \(text.debugDescription)")
        }
    }

    @Test func smolLM2Vectors() throws {
        let tokenizer = try Tokenizer(gguf: Fixtures.defaultModel())
        let inputs = try Fixtures.vocabInputs()
        let expected = try Fixtures.expectedIDs("smollm2/smollm2-vocab.gguf.out", count: inputs.count)
        #expect(expected.count == inputs.count)
        for (text, ids) in zip(inputs, expected) {
            #expect(tokenizer.encode(text, addSpecial: false) == ids, "smollm2: \(text.debugDescription)")
            #expect(Array(tokenizer.decode(tokenizer.encode(text)).utf8) == Array(text.utf8), "smollm2 round trip: \(text.debugDescription)")
        }
    }

    @Test func addSpecialFollowsTheVocabulary() throws {
        let spm = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-spm.gguf")
        #expect(spm.encode("Hello world") == [1, 15043, 3186])
        #expect(spm.encode("Hello world", addSpecial: false) == [15043, 3186])
        #expect(spm.encode("") == [1])
        let llama3 = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-bpe.gguf")
        #expect(llama3.encode("Hello").first == 128000)
        let smol = try Tokenizer(gguf: Fixtures.defaultModel())
        #expect(smol.encode("Hello") == smol.encode("Hello", addSpecial: false))  // add_bos_token = false
    }
}

import Foundation
import Llama
import Testing
import TestSupport

@Suite struct ModelInfoTests {
    @Test func defaultModelHyperparameters() throws {
        let info = ModelInfo(file: try Fixtures.defaultModel())
        #expect(info.architecture == "llama")
        #expect(info.fileType == "Q4_1")
        let h = info.hyperparameters
        #expect(h.blockCount == 30 && h.embeddingLength == 576 && h.feedForwardLength == 1536)
        #expect(h.headCount == 9 && h.headCountKV == 3 && h.ropeDimensionCount == 64)
        #expect(h.ropeFreqBase == 100_000 && h.contextLength == 8192 && h.vocabularySize == 49152)
        #expect(info.tokenizer?.model == "gpt2")
        #expect(info.tokenizer?.preTokenizer == "smollm")
        #expect(info.tokenizer?.addBOS == false)
        #expect(info.tokenizer?.chatTemplate == true)
        #expect(info.tensorCount == 272)
        #expect(info.tensorTypes == ["Q4_1": 210, "F32": 61, "Q8_0": 1])
        #expect(info.fileSize == DefaultModel.byteCount)
        // Tied output: the parameter count is that of the tensors in the file.
        #expect(info.parameterCount == 134_515_008)
    }

    @Test func tiny260K() throws {
        let info = ModelInfo(file: try GGUFFile(path: Fixtures.path("tiny260K/tiny260K.gguf")))
        #expect(info.hyperparameters.embeddingLength == 64)
        #expect(info.hyperparameters.headCount == 8 && info.hyperparameters.headCountKV == 4)
        #expect(info.tokenizer?.size == 512)
        #expect(info.tokenizer?.kind == "SentencePiece BPE")
        #expect(info.tensorTypes == ["F32": 48])
    }

    @Test func vocabularyOnlyFile() throws {
        let info = ModelInfo(file: try GGUFFile(path: Fixtures.path("llamacpp-vocab/ggml-vocab-llama-bpe.gguf")))
        #expect(info.tensorCount == 0 && info.parameterCount == 0)
        #expect(info.tokenizer?.size == 128256)
        #expect(info.tokenizer?.addBOS == true)
    }
}

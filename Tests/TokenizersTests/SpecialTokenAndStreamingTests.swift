import Foundation
import Llama
import Testing
import TestSupport

@Suite struct SpecialTokenAndStreamingTests {
    @Test func controlTokensAreRecognisedOnlyWhenAsked() throws {
        let smol = try Tokenizer(gguf: Fixtures.defaultModel())
        let text = "<|im_start|>user\nHi<|im_end|>"
        let parsed = smol.encode(text, parseSpecial: true)
        #expect(parsed.first == 1)
        #expect(parsed.last == 2)
        #expect(Array(parsed[1..<parsed.count - 1]) == smol.encode("user\nHi", addSpecial: false))
        let plain = smol.encode(text, parseSpecial: false)
        #expect(!plain.contains(1) && !plain.contains(2))
        #expect(smol.decode(plain) == text)
        #expect(smol.decode(parsed) == "user\nHi")
        #expect(smol.decode(parsed, renderSpecial: true) == text)
    }

    @Test func sentencePieceSpecialTokensAndPrefix() throws {
        let spm = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-spm.gguf")
        // As llama.cpp: text after a special token gets the dummy-prefix space again.
        #expect(spm.encode("<s>Hello", addSpecial: false, parseSpecial: true) == [1, 15043])
        #expect(spm.encode("Hello</s>", addSpecial: false, parseSpecial: true) == [15043, 2])
        #expect(spm.encode("<s>", addSpecial: false, parseSpecial: false).count > 1)
    }

    @Test func streamingDecodeWaitsForWholeCharacters() throws {
        let spm = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-spm.gguf")
        // 🦙 is not a token of the Llama 2 vocabulary: it becomes four byte tokens.
        let tokens = spm.encode("a🦙b", addSpecial: false)
        #expect(tokens.count >= 6)
        var decoder = StreamingDecoder(tokenizer: spm)
        var chunks: [String] = []
        for token in tokens { chunks.append(decoder.append(token)) }
        chunks.append(decoder.finish())
        #expect(chunks.joined() == "a🦙b")
        #expect(!chunks.contains { $0.contains("\u{FFFD}") })
        // The byte tokens before the last one of the emoji yield nothing.
        #expect(chunks.filter { $0.isEmpty }.count >= 3)
        #expect(chunks.contains("🦙"))
    }

    @Test func streamingDecodeOfByteLevelTokens() throws {
        let gpt2 = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-gpt-2.gguf")
        let text = "日本語のテキスト 🦙🦙 done"
        var decoder = StreamingDecoder(tokenizer: gpt2)
        var out = ""
        for token in gpt2.encode(text) {
            let chunk = decoder.append(token)
            #expect(!chunk.contains("\u{FFFD}"))
            out += chunk
        }
        #expect(out + decoder.finish() == text)
    }

    @Test func incompleteTailIsHeldAndInvalidBytesAreReplaced() {
        #expect(StreamingDecoder.completePrefixLength([0x61, 0xF0, 0x9F]) == 1)
        #expect(StreamingDecoder.completePrefixLength([0x61, 0xF0, 0x9F, 0xA6, 0x99]) == 5)
        #expect(StreamingDecoder.completePrefixLength([0xE4, 0xB8]) == 0)
        #expect(StreamingDecoder.completePrefixLength([0xFF]) == 1)
        #expect(StreamingDecoder.completePrefixLength([0x80, 0x80, 0x80, 0x80, 0x80]) == 5)
    }
}

/// Tokens are matched byte for byte, never by Unicode canonical equivalence (which Swift's
/// String equality uses).
@Suite struct ExactMatchingTests {
    @Test func compatibilityIdeographIsNotItsCanonicalTwin() throws {
        let spm = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-spm.gguf")
        // U+7701 is a token; U+F96D decomposes to it canonically but is not in the vocabulary,
        // so it must fall back to its three UTF-8 bytes (as sentencepiece does).
        let twin = spm.encode("\u{7701}", addSpecial: false)
        let compatibility = spm.encode("\u{F96D}", addSpecial: false)
        #expect(twin.count == 2)
        #expect(compatibility.count == 4)
        #expect(compatibility.dropFirst().allSatisfy { spm.tokenType($0) == .byte })
        #expect(Array(spm.decode(compatibility).unicodeScalars) == ["\u{F96D}"])
    }

    @Test func precomposedAndDecomposedAccentsStayDistinct() throws {
        let gpt2 = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-gpt-2.gguf")
        let composed = gpt2.encode("caf\u{E9}"), decomposed = gpt2.encode("cafe\u{301}")
        #expect(composed != decomposed)
        #expect(Array(gpt2.decode(decomposed).utf8) == Array("cafe\u{301}".utf8))
    }
}

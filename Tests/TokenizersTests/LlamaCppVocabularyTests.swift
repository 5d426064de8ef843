import Foundation
import GGUF
import Llama
import Testing
import TestSupport

/// Every tokenizer test of llama.cpp's own (`models/ggml-vocab-*.gguf` with `.inp`/`.out`, as the
/// llama-cpp-python sdist on PyPI vendors them; Scripts/fetch_vocabularies.py, run by
/// Scripts/test) whose vocabulary is SentencePiece BPE or byte-level BPE: 100% of the vectors.
@Suite struct LlamaCppVocabularyTests {
    static let folder: String = {
        if let dir = ProcessInfo.processInfo.environment["LLAMA_VOCABULARIES"], !dir.isEmpty { return dir }
        return DefaultModel.cacheDirectory + "/llamacpp-vocab-0.3.36"
    }()

    /// Vocabularies of other tokenizer kinds (WordPiece, Unigram, Gemma 4's) are not run.
    static let vocabularies: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(".gguf.inp") }.map { String($0.dropLast(4)) }.sorted().filter { name in
            guard let file = try? GGUFFile(path: folder + "/" + name) else { return true }
            return ["llama", "gpt2"].contains(file.string("tokenizer.ggml.model") ?? "")
        }
    }()

    @Test func theVocabulariesAreThere() {
        // The sdist of 0.3.36 has 13 (of 15 with test vectors; bert-bge is WordPiece and gemma-4 its own
        // kind); fewer means the fetch went wrong.
        #expect(Self.vocabularies.count >= 13, "found \(Self.vocabularies) in \(Self.folder); run Scripts/fetch_vocabularies.py")
    }

    @Test(arguments: vocabularies)
    func everyVector(vocabulary: String) throws {
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: Self.folder + "/" + vocabulary))
        let inputs = String(decoding: try Data(contentsOf: URL(fileURLWithPath: Self.folder + "/" + vocabulary + ".inp")), as: UTF8.self)
            .components(separatedBy: "\n__ggml_vocab_test__\n")
        var lines = String(decoding: try Data(contentsOf: URL(fileURLWithPath: Self.folder + "/" + vocabulary + ".out")), as: UTF8.self)
            .components(separatedBy: "\n")
        while lines.count > inputs.count, lines.last == "" { lines.removeLast() }
        try #require(lines.count == inputs.count)
        var passed = 0
        for (text, line) in zip(inputs, lines) {
            let expected = line.split(separator: " ").map { TokenID($0)! }
            let ours = tokenizer.encode(text, addSpecial: false)
            #expect(ours == expected, "\(vocabulary): \(text.debugDescription)")
            if ours == expected { passed += 1 }
        }
        print("\(vocabulary): \(passed)/\(inputs.count)")
    }
}

/// Mistral Nemo's "tekken" split (case changes inside words, `/` after punctuation, whole-word
/// tokens), against llama.cpp's llama-tokenize on the Llama 3 vocabulary with that pre-tokenizer
/// (Scripts/make_golden_tekken.py).
@Suite struct TekkenTests {
    struct Golden: Decodable {
        struct Case: Decodable {
            let text: String
            let ids: [TokenID]
        }
        let cases: [Case]
    }

    @Test func matchesLlamaCpp() throws {
        let url = URL(fileURLWithPath: Fixtures.projectRoot + "/Tests/TokenizersTests/Golden/tekken.json")
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
        let original = try GGUFFile(path: LlamaCppVocabularyTests.folder + "/ggml-vocab-llama-bpe.gguf")
        var writer = GGUFWriter()
        for (key, value) in original.metadata { writer.set(key, key == "tokenizer.ggml.pre" ? .string("tekken") : value) }
        let path = TemporaryFile.path("tekken-vocab.gguf")
        try writer.write(to: path)
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: path))
        #expect(golden.cases.count > 200)
        for c in golden.cases {
            #expect(tokenizer.encode(c.text, addSpecial: false) == c.ids, "\(c.text.debugDescription)")
        }
        #expect(tokenizer.definition.addBOS)
    }
}

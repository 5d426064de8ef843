import Foundation
import Llama
import Testing
import TestSupport

@Suite struct QuantizeCLITests {
    static let stories = Fixtures.path("tiny260K/tiny260K.gguf")

    @Test(arguments: ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
    func quantizedModelLoadsAndGenerates(typeName: String) throws {
        let out = TemporaryFile.path("stories-\(typeName).gguf")
        let r = try CLI.run(["quantize", Self.stories, out, typeName])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("[  48/  48]"))
        let file = try GGUFFile(path: out)
        let target = try #require(GGMLType(name: typeName))
        #expect(file.tensor(named: "blk.0.attn_q.weight")?.type == target)
        #expect(file.tensor(named: "blk.0.attn_norm.weight")?.type == .f32)       // vectors stay
        #expect(file.tensor(named: "blk.0.ffn_down.weight")?.type == .f16)        // rows of 172: not whole blocks, F16 as llama.cpp
        #expect(file.tensor(named: "token_embd.weight")?.type == target)
        #expect(file.tensor(named: "output.weight")?.type == .q8_0)               // the output matrix
        #expect(file.int("general.file_type") == Int(QuantizeCommandFileTypes.values[typeName]!))
        // Random weights (tiny260K) say nothing in any type; the quantized file must still load and
        // generate every token asked for. Quality is held to llama.cpp by the KL tests elsewhere.
        let run = try CLI.run(["generate", "-m", out, "--temp", "0", "-n", "8"])
        #expect(run.status == 0 && run.stderr.contains("generated: 8 tokens") && !run.stdout.isEmpty, "\(run.stderr)")
    }

    @Test func unsupportedTargetAndQuantizedInputAreErrors() throws {
        let bad = try CLI.run(["quantize", Self.stories, TemporaryFile.path("x.gguf"), "Q3_K_XL"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("Q3_K_XL") && bad.stderr.contains("Q4_K_M"))
        let q8 = TemporaryFile.path("stories-q8-for-requantize.gguf")
        #expect(try CLI.run(["quantize", Self.stories, q8, "Q8_0"]).status == 0)
        let again = try CLI.run(["quantize", q8, TemporaryFile.path("y.gguf"), "Q4_0"])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already Q8_0"))
    }
}

/// llama.cpp's `general.file_type` numbers, written out independently of the command's table.
enum QuantizeCommandFileTypes {
    static let values: [String: Int] = ["Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9]
}

@Suite struct BenchCLITests {
    @Test func tableAndJSON() throws {
        let model = Fixtures.path("tiny260K/tiny260K.gguf")
        let md = try CLI.run(["bench", "-m", model, "-p", "16,32", "-n", "4", "-r", "2", "-t", "1,2"])
        #expect(md.status == 0, "\(md.stderr)")
        let rows = md.stdout.split(separator: "\n")
        #expect(rows.first?.hasPrefix("| model | size | params | backend | threads | test | t/s |") == true)
        #expect(rows.count == 2 + 2 * 3)  // header, rule, (pp16, pp32, tg4) x 2 thread counts
        #expect(md.stdout.contains("| pp16 |") && md.stdout.contains("| pp32 |") && md.stdout.contains("| tg4 |"))
        let json = try CLI.run(["bench", "-m", model, "-p", "16", "-n", "0", "-r", "1", "-o", "json"])
        let results = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(results.count == 1)
        #expect(results[0]["test"] as? String == "pp16")
        #expect((results[0]["tokens_per_second"] as? Double ?? 0) > 0)
    }

    @Test func defaultModelWithoutDashM() throws {
        _ = try Fixtures.defaultModel()
        let r = try CLI.run(["bench", "-p", "8", "-n", "0", "-r", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("llama 135M Q4_1"))
    }

    /// Depth: the label says it; a depth whose context could not be allocated is refused up front.
    @Test func depth() throws {
        _ = try Fixtures.defaultModel()
        let r = try CLI.run(["bench", "-p", "8", "-n", "2", "-d", "0,16", "-r", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("pp8 @ d16") && r.stdout.contains("tg2 @ d16") && r.stdout.contains("| pp8 |"))
        let huge = try CLI.run(["bench", "-p", "8", "-n", "0", "-d", "9223372036854775807"])
        #expect(huge.status != 0 && huge.stderr.contains("-d takes at most"), "\(huge.stderr)")
    }
}

@Suite struct RandomModelCLITests {
    /// The benchmark helper writes a model of a real shape that loads and runs.
    @Test func stories110MShape() throws {
        let out = TemporaryFile.path("random-110M.gguf")
        let r = try CLI.run(["random-model", "stories110M", "Q4_0", out, "--vocab", Fixtures.path("llamacpp-vocab/ggml-vocab-llama-spm.gguf")])
        #expect(r.status == 0, "\(r.stderr)")
        let info = try CLI.run(["info", "-m", out, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
        #expect((object["hyperparameters"] as? [String: Any])?["embedding_length"] as? Int == 768)
        #expect((object["tensor_types"] as? [String: Int])?["Q4_0"] == 1 + 12 * 7)
        let run = try CLI.run(["generate", "-m", out, "-p", "Hello", "-n", "3", "--temp", "0"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("prompt: 2 tokens"))
        try? FileManager.default.removeItem(atPath: out)
    }

    /// Without --vocab, a made-up vocabulary of Llama 2's size, with its special and byte tokens,
    /// so the benchmark script needs no vocabulary file.
    @Test func madeUpVocabulary() throws {
        let out = TemporaryFile.path("random-vocab.gguf")
        let r = try CLI.run(["random-model", "stories110M", "Q8_0", out])
        #expect(r.status == 0, "\(r.stderr)")
        let file = try GGUFFile(path: out)
        #expect(file.array("tokenizer.ggml.tokens")?.count == 32000)
        #expect(file.string("tokenizer.ggml.model") == "llama")
        let tokenizer = try Tokenizer(gguf: file)
        #expect(tokenizer.bos == 1 && tokenizer.eos == 2)
        #expect(tokenizer.decode(tokenizer.encode("tea tin 🦙", addSpecial: false)).trimmingCharacters(in: .whitespaces) == "tea tin 🦙")  // byte fallback for the llama
        let run = try CLI.run(["generate", "-m", out, "-p", "tea", "-n", "3", "--temp", "0"])
        #expect(run.status == 0, "\(run.stderr)")
        try? FileManager.default.removeItem(atPath: out)
    }
}

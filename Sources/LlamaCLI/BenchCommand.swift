import ArgumentParser
import Foundation
import Kernels
import Llama
import LlamaHub

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure prompt processing and generation speed, as llama.cpp's llama-bench does.",
        discussion: """
            ppN evaluates N prompt tokens in one batch from an empty cache; tgN generates N tokens one at a \
            time. With -d D, both start after D tokens already in the cache (the fill is not timed; "pp512 @ \
            d4096" as llama-bench). Each test runs once to warm up, then -r times; the table shows the mean \
            tokens per second and its standard deviation. Options take comma-separated lists, as in \
            llama-bench. The backend column names the kernel path (LLAMA_CPU_PATH=avx2 forces one).
            """)

    @Option(name: [.short, .customLong("model")], help: ArgumentHelp("GGUF model file(s), comma-separated. Default: the default model.", valueName: "files"))
    var models: String?

    @Option(name: [.customLong("hf", withSingleDash: true), .customLong("hf-repo")],
            help: ArgumentHelp("Models on Hugging Face, user/repo[:QUANT], comma-separated (see `llama pull --help`).", valueName: "repos"))
    var hubModels: String?

    @Flag(help: "With -hf: use the cached copies only, never the network.")
    var offline = false

    @Option(name: [.customShort("p"), .customLong("n-prompt")], help: "Prompt lengths to test (0 to skip).")
    var prompts: String = "512"

    @Option(name: [.customShort("n"), .customLong("n-gen")], help: "Generation lengths to test (0 to skip).")
    var generations: String = "128"

    @Option(name: [.customShort("d"), .customLong("n-depth")], help: "Tokens already in the cache before each test.")
    var depths: String = "0"

    @Option(name: [.short, .customLong("threads")], help: "Thread counts to test. Default: the number of physical cores.")
    var threads: String?

    @Option(name: [.short, .customLong("repetitions")], help: "Runs of each test.")
    var repetitions: Int = 5

    @Option(name: [.short, .customLong("output")], help: "md (a table) or json.")
    var output: String = "md"

    @OptionGroup var cache: CacheTypeOptions

    struct Result: Codable {
        var model: String
        var modelPath: String
        var sizeBytes: Int
        var parameters: Int
        var threads: Int
        var depth: Int
        var backend: String
        var typeK: String
        var typeV: String
        var test: String
        var tokensPerSecond: Double
        var standardDeviation: Double
        var samples: [Double]
    }

    static func numbers(_ text: String, _ name: String) throws -> [Int] {
        try text.split(separator: ",").map { part in
            guard let n = Int(part.trimmingCharacters(in: .whitespaces)), n >= 0 else {
                throw ValidationError("\(name) takes comma-separated non-negative numbers, not '\(text)'")
            }
            return n
        }
    }

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("-r must be at least 1") }
        guard ["md", "json"].contains(output) else { throw ValidationError("-o takes md or json") }
        _ = try Self.numbers(prompts, "-p")
        _ = try Self.numbers(generations, "-n")
        // Bounded so that depth + prompt + generation (the context allocated) cannot overflow or ask for terabytes.
        for (list, name) in [(prompts, "-p"), (generations, "-n"), (depths, "-d")] where try Self.numbers(list, name).contains(where: { $0 > 1 << 20 }) {
            throw ValidationError("\(name) takes at most \(1 << 20) tokens")
        }
        if let threads, try Self.numbers(threads, "-t").contains(0) { throw ValidationError("-t must be at least 1") }
    }

    func run() async throws {
        var paths = models.map { $0.split(separator: ",").map(String.init) } ?? []
        for reference in hubModels?.split(separator: ",") ?? [] {
            paths.append(try await HubModels.pull(String(reference), offline: offline).path)
        }
        if paths.isEmpty { paths = [try DefaultModel.locate { message in Console.error(message) }] }
        let threadCounts = try threads.map { try Self.numbers($0, "-t") } ?? [SystemInfo.physicalCores]
        var results: [Result] = []
        let backend = "CPU (\(LlamaModel.kernelPath))"
        // As llama-bench: the cache types get columns when they are not the default.
        let types = cache.types
        let typeColumns = types == .f16 ? "" : " type_k | type_v |"
        if output == "md" {
            let header = "| model | size | params | backend | threads |\(typeColumns) test | t/s |\n| --- | ---: | ---: | --- | ---: |"
                + (types == .f16 ? "" : " ---: | ---: |") + " ---: | ---: |\n"
            FileHandle.standardOutput.write(Data(header.utf8))
        }
        for path in paths {
            guard FileManager.default.fileExists(atPath: path) else { throw CLIError("model file '\(path)' does not exist") }
            let file = try GGUFFile(path: path)
            let info = ModelInfo(file: file)
            let model = try LlamaModel.load(gguf: file)
            _ = try cache.checked(model)
            var tests: [(String, Int, Int)] = []
            for p in try Self.numbers(prompts, "-p") where p > 0 { tests.append(("pp\(p)", p, 0)) }
            for n in try Self.numbers(generations, "-n") where n > 0 { tests.append(("tg\(n)", 0, n)) }
            let vocab = model.configuration.vocabularySize
            var random = SystemRandomNumberGenerator()
            func randomTokens(_ n: Int) -> [TokenID] { (0..<n).map { _ in Int32.random(in: 0..<Int32(vocab), using: &random) } }
            for t in threadCounts {
                for depth in try Self.numbers(depths, "-d") {
                    for (name, promptLength, genLength) in tests {
                        let label = depth > 0 ? "\(name) @ d\(depth)" : name
                        let contextSize = depth + promptLength + genLength
                        if contextSize > model.configuration.contextLength {
                            // As llama-bench: speed is measured past the trained context (the text would degrade, the cost does not).
                            Console.error("note: \(label) uses \(contextSize) positions, past the model's trained context of \(model.configuration.contextLength)")
                        }
                        let context = LlamaContext(model: model, contextSize: max(contextSize, 16),
                                                   batchSize: max(promptLength, 1, min(depth, 512)), threads: t, kvCache: types)
                        let prompt = randomTokens(promptLength)
                        // The depth is filled once; each run rewinds to it.
                        if depth > 0 { try context.evaluate(randomTokens(depth), logitsFor: .none) }
                        func once() throws -> Double {
                            if context.truncate(to: depth) != depth {
                                context.reset()
                                if depth > 0 { try context.evaluate(randomTokens(depth), logitsFor: .none) }
                            }
                            let start = Date()
                            if promptLength > 0 {
                                try context.evaluate(prompt, logitsFor: .last)
                            } else {
                                var token = model.tokenizer.bos ?? 0
                                for _ in 0..<genLength {
                                    let logits = try context.evaluate([token], logitsFor: .last)
                                    token = Int32(logits.indices.max { logits[$0] < logits[$1] } ?? 0)
                                }
                            }
                            return Double(promptLength + genLength) / Date().timeIntervalSince(start)
                        }
                        _ = try once()  // warm-up
                        let samples = try (0..<repetitions).map { _ in try once() }
                        let mean = samples.reduce(0, +) / Double(samples.count)
                        let sd = samples.count > 1
                            ? (samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(samples.count - 1)).squareRoot() : 0
                        let result = Result(model: Self.describe(info), modelPath: path, sizeBytes: info.fileSize, parameters: info.parameterCount,
                                            threads: t, depth: depth, backend: backend, typeK: types.keys.rawValue,
                                            typeV: types.values.rawValue, test: label, tokensPerSecond: mean,
                                            standardDeviation: sd, samples: samples)
                        results.append(result)
                        if output == "md" {
                            let row = "| \(result.model) | \(String(format: "%.2f MiB", Double(info.fileSize) / 1_048_576)) | \(Self.shortCount(info.parameterCount)) | \(backend) | \(t) |\(types == .f16 ? "" : " \(types.keys.rawValue) | \(types.values.rawValue) |") \(label) | \(String(format: "%.2f ± %.2f", mean, sd)) |\n"
                            FileHandle.standardOutput.write(Data(row.utf8))
                        }
                    }
                }
            }
        }
        if let distance = PrefetchTuner.shared.choice {
            Console.error("note: weights prefetched \(distance == 0 ? "block by block" : "\(distance) bytes ahead") (\(PrefetchTuner.shared.fixedByEnvironment ? "LLAMA_PREFETCH" : "measured on the first generated tokens"))")
        }
        if output == "json" {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
        }
    }

    /// "llama 135M Q4_1", as llama-bench names models.
    static func describe(_ info: ModelInfo) -> String {
        let size = info.parameterCount >= 1_000_000_000
            ? String(format: "%.0fB", Double(info.parameterCount) / 1e9) : String(format: "%.0fM", Double(info.parameterCount) / 1e6)
        return "\(info.architecture ?? "?") \(size) \(info.fileType ?? "")"
    }

    static func shortCount(_ n: Int) -> String {
        n >= 1_000_000_000 ? String(format: "%.2f B", Double(n) / 1e9) : String(format: "%.2f M", Double(n) / 1e6)
    }
}

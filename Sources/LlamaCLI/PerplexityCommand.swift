import ArgumentParser
import Foundation
import Llama

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Measure how well a model predicts a text (lower is better), as llama.cpp's llama-perplexity does.",
        discussion: """
            The text is cut into chunks of the context size (-c, default 512); each chunk is evaluated \
            on its own and only its second half is scored. Progress is printed per chunk; the last line \
            reads `Final estimate: PPL = X +/- Y`.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.short, .customLong("file")], help: ArgumentHelp("The text to measure (e.g. wiki.test.raw).", valueName: "file"))
    var file: String

    @Option(name: [.short, .customLong("ctx-size")], help: "Tokens per chunk.")
    var contextSize: Int = 512

    @Option(name: [.short, .customLong("threads")], help: "Threads to use. Default: the number of physical cores.")
    var threads: Int?

    @Option(name: .customLong("cache-type"), help: "Precision of the KV cache: f16 (as llama.cpp's default) or f32.")
    var cacheType: LlamaContext.KVCacheType = .f16

    @Option(help: "Measure only the first N chunks.")
    var chunks: Int?

    @Option(help: ArgumentHelp("The tokenizer.bin of a llama2.c checkpoint. Default: tokenizer.bin beside it.", valueName: "file"))
    var tokenizer: String?

    func validate() throws {
        if contextSize < 4 { throw ValidationError("-c must be at least 4") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("-t must be at least 1") }
    }

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read '\(file)'") }
        let model: LlamaModel
        do {
            model = try LlamaModel.load(path: modelOptions.resolvedPath(), tokenizer: tokenizer)
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
        let text = String(decoding: data, as: UTF8.self)
        Console.error("tokenizing \(data.count) bytes...")
        let tokens = model.tokenizer.encode(text, addSpecial: true, parseSpecial: false)
        let context = LlamaContext(model: model, contextSize: contextSize, batchSize: contextSize,
                                   threads: threads ?? SystemInfo.physicalCores, kvCacheType: cacheType)
        let total = min(chunks ?? Int.max, tokens.count / contextSize)
        Console.error("\(tokens.count) tokens, \(total) chunks of \(contextSize)")
        let result = try context.perplexity(of: tokens, maxChunks: chunks) { chunk, of, estimate, seconds in
            let remaining = Double(of - chunk) * seconds
            Console.error(String(format: "[%d/%d] %.4f  (%.1f s/chunk, about %.0f s left)", chunk, of, estimate, seconds, remaining))
        }
        print(result.runningEstimates.enumerated().map { String(format: "[%d]%.4f", $0.offset + 1, $0.element) }.joined(separator: ","))
        print(String(format: "Final estimate: PPL = %.4f +/- %.5f", result.perplexity, result.error))
    }
}

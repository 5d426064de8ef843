import ArgumentParser
import Foundation
import Llama

extension LlamaContext.KVCacheType: ExpressibleByArgument {}

/// Options every command that runs a model shares.
struct RunOptions: ParsableArguments {
    @Option(name: [.short, .customLong("ctx-size")], help: "Context size in tokens. Default: the model's training context.")
    var contextSize: Int?

    @Option(name: [.short, .customLong("threads")], help: "Threads to use. Default: the number of physical cores.")
    var threads: Int?

    @Option(help: ArgumentHelp("The tokenizer.bin of a llama2.c checkpoint. Default: tokenizer.bin beside it.", valueName: "file"))
    var tokenizer: String?

    @Option(name: .customLong("cache-type"), help: "Precision of the KV cache: f16 (as llama.cpp's default) or f32.")
    var cacheType: LlamaContext.KVCacheType = .f16

    func validate() throws {
        if let contextSize, contextSize < 1 { throw ValidationError("-c must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("-t must be at least 1") }
    }

    func loadModel(_ modelOptions: ModelOptions) throws -> LlamaModel {
        do {
            return try LlamaModel.load(path: modelOptions.resolvedPath(), tokenizer: tokenizer)
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
    }

    func makeContext(_ model: LlamaModel, batchSize: Int = 512) -> LlamaContext {
        LlamaContext(model: model, contextSize: contextSize, batchSize: batchSize, threads: threads ?? SystemInfo.physicalCores,
                     kvCacheType: cacheType)
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a prompt with the model, streaming the text as it is generated.",
        discussion: """
            The prompt (and then the continuation) goes to standard output; statistics go to standard error. \
            Special tokens written in the prompt, such as <|im_start|> or <s>, are read as special tokens. \
            Sampling runs in llama2.c's order: repeat penalty, temperature, then top-k, min-p and top-p. \
            --temp 0 is greedy.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var runOptions: RunOptions

    @Option(name: [.short, .customLong("prompt")], help: "The prompt. Default: none (the text starts from BOS).")
    var prompt: String?

    @Option(name: [.short, .customLong("file")], help: ArgumentHelp("Read the prompt from a file.", valueName: "file"))
    var file: String?

    @Option(name: [.customShort("n"), .customLong("n-predict")], help: "Tokens to generate; -1 means until the end of the text or of the context.")
    var count: Int = -1

    @Option(name: .customLong("temp"), help: "Temperature; 0 picks the most likely token every time.")
    var temperature: Float = 0.8

    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0 = all).")
    var topK: Int = 40

    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens that make up probability p (1 = all).")
    var topP: Float = 0.95

    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than min-p times the most likely one (0 = off).")
    var minP: Float = 0.05

    @Option(name: .customLong("repeat-penalty"), help: "Penalty for repeating recent tokens (1 = off).")
    var repeatPenalty: Float = 1.0

    @Option(name: .customLong("repeat-last-n"), help: "How many recent tokens the repeat penalty considers (-1 = all).")
    var repeatLastN: Int = 64

    @Option(name: [.short, .customLong("seed")], help: "Random seed, for a reproducible run. Default: random.")
    var seed: UInt64?

    @Flag(help: "If the prompt does not fit in the context, keep its end instead of failing.")
    var truncate = false

    @Flag(name: .customLong("no-display-prompt"), help: "Print only the generated text, not the prompt.")
    var noDisplayPrompt = false

    func validate() throws {
        if prompt != nil, file != nil { throw ValidationError("give the prompt one way only: -p or -f") }
        if temperature < 0 { throw ValidationError("--temp cannot be negative") }
        if !(0...1).contains(topP) { throw ValidationError("--top-p must be between 0 and 1") }
        if !(0...1).contains(minP) { throw ValidationError("--min-p must be between 0 and 1") }
        if repeatPenalty <= 0 { throw ValidationError("--repeat-penalty must be positive") }
    }

    func run() throws {
        let text: String
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read '\(file)'") }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = prompt ?? ""
        }
        let model = try runOptions.loadModel(modelOptions)
        let context = runOptions.makeContext(model)
        var tokens = model.tokenizer.encode(text, addSpecial: true, parseSpecial: true)
        if tokens.isEmpty, let bos = model.tokenizer.bos { tokens = [bos] }
        guard !tokens.isEmpty else {
            throw CLIError("the prompt is empty and this vocabulary has no BOS token to start from; give a prompt with -p")
        }
        if tokens.count > context.contextSize {
            guard truncate else {
                throw CLIError("the prompt is \(tokens.count) tokens but the context holds \(context.contextSize); use a larger context (-c), a shorter prompt, or --truncate to keep its end")
            }
            let keepBOS = tokens.first == model.tokenizer.bos && model.tokenizer.bos != nil
            let tail = tokens.suffix(context.contextSize - (keepBOS ? 1 : 0))
            tokens = (keepBOS ? [tokens[0]] : []) + tail
            Console.error("warning: the prompt was cut to its last \(tokens.count) tokens to fit the context")
        }

        let out = FileHandle.standardOutput
        if !noDisplayPrompt { out.write(Data(text.utf8)) }
        var settings = SamplerSettings()
        settings.temperature = temperature
        settings.topK = topK
        settings.topP = topP
        settings.minP = minP
        settings.repeatPenalty = repeatPenalty
        settings.repeatLastN = repeatLastN
        if let seed { settings.seed = seed }
        var sampler = Sampler(settings)
        // With no prompt text the first piece's leading space is dropped, as after BOS in llama2.c.
        var decoder = StreamingDecoder(tokenizer: model.tokenizer, atStartOfText: text.isEmpty)
        let stats = try context.generate(prompt: tokens, maxTokens: count, sampler: &sampler, stopTokens: model.stopTokens) { token in
            let piece = decoder.append(token)
            if !piece.isEmpty { out.write(Data(piece.utf8)) }
            return true
        }
        let rest = decoder.finish()
        if !rest.isEmpty { out.write(Data(rest.utf8)) }
        out.write(Data("\n".utf8))
        Console.error(String(format: "\nprompt: %d tokens, %.1f tokens/s; generated: %d tokens, %.1f tokens/s; seed %llu",
                             stats.promptTokens, stats.promptTokensPerSecond, stats.generatedTokens, stats.generationTokensPerSecond, settings.seed))
    }
}

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

    /// Says so when the model's training context is too large for memory and a smaller default is used.
    func noteContext(_ model: LlamaModel, sequences: Int = 1) {
        guard contextSize == nil, let notice = LlamaContext.defaultContextNotice(model: model, sequences: sequences, kvCacheType: cacheType) else { return }
        Console.error(notice)
    }

    func makeSession(_ model: LlamaModel) -> Session {
        noteContext(model)
        return Session(model: model, contextSize: contextSize, threads: threads ?? SystemInfo.physicalCores, kvCacheType: cacheType)
    }

    func makeContext(_ model: LlamaModel, batchSize: Int = 512) -> LlamaContext {
        noteContext(model)
        return LlamaContext(model: model, contextSize: contextSize, batchSize: batchSize, threads: threads ?? SystemInfo.physicalCores,
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
            Sampling runs in llama2.c's order: logit bias and penalties, temperature, then top-k, typical, \
            min-p and top-p (or Mirostat v2). --temp 0 is greedy. --grammar, --grammar-file and --json-schema \
            constrain the output; --stop ends it at a text.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var runOptions: RunOptions

    @Option(name: [.short, .customLong("prompt")], help: "The prompt. Default: none (the text starts from BOS).")
    var prompt: String?

    @Option(name: [.short, .customLong("file")], help: ArgumentHelp("Read the prompt from a file.", valueName: "file"))
    var file: String?

    @OptionGroup var sampling: SamplingOptions

    @Flag(help: "If the prompt does not fit in the context, keep its end instead of failing.")
    var truncate = false

    @Flag(name: .customLong("no-display-prompt"), help: "Print only the generated text, not the prompt.")
    var noDisplayPrompt = false

    func validate() throws {
        if prompt != nil, file != nil { throw ValidationError("give the prompt one way only: -p or -f") }
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
        let session = runOptions.makeSession(model)
        var tokens = model.tokenizer.encode(text, addSpecial: true, parseSpecial: true)
        if tokens.isEmpty, let bos = model.tokenizer.bos { tokens = [bos] }
        guard !tokens.isEmpty else {
            throw CLIError("the prompt is empty and this vocabulary has no BOS token to start from; give a prompt with -p")
        }
        if tokens.count >= session.contextSize {
            guard truncate else {
                throw CLIError("the prompt is \(tokens.count) tokens but the context holds \(session.contextSize) (with room for the answer); use a larger context (-c), a shorter prompt, or --truncate to keep its end")
            }
            let keepBOS = tokens.first == model.tokenizer.bos && model.tokenizer.bos != nil
            let tail = tokens.suffix(session.contextSize - 1 - (keepBOS ? 1 : 0))  // one position left to generate into
            tokens = (keepBOS ? [tokens[0]] : []) + tail
            Console.error("warning: the prompt was cut to its last \(tokens.count) tokens to fit the context")
        }

        let out = FileHandle.standardOutput
        if !noDisplayPrompt { out.write(Data(text.utf8)) }
        let parameters = try sampling.parameters()
        // With no prompt text the first piece's leading space is dropped, as after BOS in llama2.c.
        let summary = try session.run(prompt: tokens, parameters: parameters, startOfAnswer: text.isEmpty) { event in
            if case .text(let piece) = event { out.write(Data(piece.utf8)) }
        }
        out.write(Data("\n".utf8))
        let stats = summary.statistics
        Console.error(String(format: "\nprompt: %d tokens, %.1f tokens/s; generated: %d tokens, %.1f tokens/s; seed %llu",
                             stats.promptTokens, stats.promptTokensPerSecond, stats.generatedTokens, stats.generationTokensPerSecond, parameters.sampler.seed))
    }
}

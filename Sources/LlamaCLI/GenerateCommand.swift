import ArgumentParser
import Foundation
import Llama

extension LlamaContext.KVCacheType: ExpressibleByArgument {}

/// How the KV cache is stored, with llama.cpp's option names.
struct CacheTypeOptions: ParsableArguments {
    @Option(name: [.customLong("cache-type-k"), .customLong("ctk", withSingleDash: true)],
            help: "How cached keys are stored: f16 (the default, as llama.cpp), f32, q8_0 (about half of f16's memory) or q4_0 (a quarter).")
    var keys: LlamaContext.KVCacheType?

    @Option(name: [.customLong("cache-type-v"), .customLong("ctv", withSingleDash: true)],
            help: "How cached values are stored: f16, f32, q8_0 or q4_0.")
    var values: LlamaContext.KVCacheType?

    @Option(name: .customLong("cache-type"), help: "Both at once (-ctk and -ctv override it).")
    var both: LlamaContext.KVCacheType?

    var types: LlamaContext.KVCacheTypes {
        LlamaContext.KVCacheTypes(keys: keys ?? both ?? .f16, values: values ?? both ?? .f16)
    }

    /// The types, or an error saying what to use when the model's heads cannot be stored so.
    func checked(_ model: LlamaModel) throws -> LlamaContext.KVCacheTypes {
        do {
            try types.check(model)
        } catch {
            throw CLIError(error.description)
        }
        return types
    }

    /// "KV cache q8_0: 11.0 KiB per token, 44.0 MiB for 4096 tokens", for start-up output.
    static func summary(_ model: LlamaModel, _ types: LlamaContext.KVCacheTypes, bytes: Int, contextSize: Int, sequences: Int = 1) -> String {
        let perToken = model.configuration.kvBytesPerPosition(types)
        let rotations = types.rotations(headSize: model.configuration.headDimension)
        return "KV cache \(types.description): \(shortBytes(perToken)) per token, \(shortBytes(bytes)) for \(contextSize) tokens"
            + (sequences > 1 ? " x \(sequences) sequences" : "")
            + (rotations.keys != nil || rotations.values != nil ? " (Hadamard-rotated, as llama.cpp)" : "")
    }

    /// "11.0 KiB".
    static func shortBytes(_ n: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n), unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(n) bytes" : String(format: "%.1f %@", value, units[unit])
    }
}

/// Options every command that runs a model shares.
struct RunOptions: ParsableArguments {
    @Option(name: [.short, .customLong("ctx-size")], help: "Context size in tokens. Default: the model's training context.")
    var contextSize: Int?

    @Option(name: [.short, .customLong("threads")], help: "Threads to use. Default: the number of physical cores.")
    var threads: Int?

    @Option(help: ArgumentHelp("The tokenizer.bin of a llama2.c checkpoint. Default: tokenizer.bin beside it.", valueName: "file"))
    var tokenizer: String?

    @OptionGroup var cache: CacheTypeOptions

    func validate() throws {
        if let contextSize, contextSize < 1 { throw ValidationError("-c must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("-t must be at least 1") }
    }

    func loadModel(_ modelOptions: ModelOptions) async throws -> LlamaModel {
        let path = try await modelOptions.resolvedPath()
        do {
            return try LlamaModel.load(path: path, tokenizer: tokenizer)
        } catch {
            throw CLIError(error.description)
        }
    }

    /// Says so when the model's training context is too large for memory and a smaller default is used.
    func noteContext(_ model: LlamaModel, sequences: Int = 1) {
        guard contextSize == nil, let notice = LlamaContext.defaultContextNotice(model: model, sequences: sequences, kvCache: cache.types) else { return }
        Console.error(notice)
    }

    func makeSession(_ model: LlamaModel) throws -> Session {
        let types = try cache.checked(model)
        noteContext(model)
        return Session(model: model, contextSize: contextSize, threads: threads ?? SystemInfo.physicalCores, kvCache: types)
    }

    func makeContext(_ model: LlamaModel, batchSize: Int = 512) throws -> LlamaContext {
        let types = try cache.checked(model)
        noteContext(model)
        return LlamaContext(model: model, contextSize: contextSize, batchSize: batchSize, threads: threads ?? SystemInfo.physicalCores,
                            kvCache: types)
    }
}

struct GenerateCommand: AsyncParsableCommand {
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

    func run() async throws {
        let text: String
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read '\(file)'") }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = prompt ?? ""
        }
        let model = try await runOptions.loadModel(modelOptions)
        let session = try runOptions.makeSession(model)
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
        Console.error(CacheTypeOptions.summary(model, session.kvCache, bytes: session.kvCacheBytes, contextSize: session.contextSize))
    }
}

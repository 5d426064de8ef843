import ArgumentParser
import Foundation
import Llama

struct PerplexityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Measure how well a model predicts a text (lower is better), as llama.cpp's llama-perplexity does.",
        discussion: """
            The text is cut into chunks of the context size (-c, default 512); each chunk is evaluated \
            on its own and only its second half is scored. Progress is printed per chunk; the last line \
            reads `Final estimate: PPL = X +/- Y`.

            Fidelity, as llama.cpp judges it: `--kl-divergence-base FILE` saves the scored tokens' \
            log-probabilities to FILE (llama.cpp's format, so llama-perplexity can read it, and it can \
            read llama-perplexity's); `--kl-divergence-base FILE --kl-divergence` compares this model \
            against FILE over FILE's own tokens (no -f needed) and prints the KL divergence, how often \
            the top token is the same, and the perplexity ratio. Use it to judge a quantization, or an \
            implementation against llama.cpp.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.short, .customLong("file")], help: ArgumentHelp("The text to measure (e.g. wiki.test.raw). Not needed with --kl-divergence.", valueName: "file"))
    var file: String?

    @Option(name: .customLong("kl-divergence-base"), help: ArgumentHelp("Save the base log-probabilities to this file, or with --kl-divergence, compare against it.", valueName: "file"))
    var klDivergenceBase: String?

    @Flag(name: .customLong("kl-divergence"), help: "Compare against the --kl-divergence-base file instead of saving it.")
    var klDivergence = false

    @Option(name: [.short, .customLong("ctx-size")], help: "Tokens per chunk.")
    var contextSize: Int = 512

    @Option(name: [.short, .customLong("threads")], help: "Threads to use. Default: the number of physical cores.")
    var threads: Int?

    @OptionGroup var cache: CacheTypeOptions

    @Option(help: "Measure only the first N chunks.")
    var chunks: Int?

    @Option(help: ArgumentHelp("The tokenizer.bin of a llama2.c checkpoint. Default: tokenizer.bin beside it.", valueName: "file"))
    var tokenizer: String?

    func validate() throws {
        if klDivergence && klDivergenceBase == nil { throw ValidationError("--kl-divergence needs --kl-divergence-base FILE (the saved base logits)") }
        if !klDivergence && file == nil { throw ValidationError("give the text to measure with -f FILE") }
        if contextSize < 4 { throw ValidationError("-c must be at least 4") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("-t must be at least 1") }
    }

    func run() async throws {
        let model: LlamaModel
        let path = try await modelOptions.resolvedPath()
        do {
            model = try LlamaModel.load(path: path, tokenizer: tokenizer)
        } catch {
            throw CLIError(error.description)
        }
        do {
            if klDivergence, let klDivergenceBase { return try compare(model, base: klDivergenceBase) }
            try measure(model)
        } catch let error as ModelError {
            throw CLIError(error.description)
        }
    }

    private func measure(_ model: LlamaModel) throws {
        guard let file, let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read '\(file ?? "")'") }
        let text = String(decoding: data, as: UTF8.self)
        Console.error("tokenizing \(data.count) bytes...")
        let tokens = model.tokenizer.encode(text, addSpecial: true, parseSpecial: false)
        let context = LlamaContext(model: model, contextSize: contextSize, batchSize: contextSize,
                                   threads: threads ?? SystemInfo.physicalCores, kvCache: try cache.checked(model))
        let total = min(chunks ?? Int.max, tokens.count / contextSize)
        Console.error("\(tokens.count) tokens, \(total) chunks of \(contextSize); "
                      + CacheTypeOptions.summary(model, context.kvCache, bytes: context.kvCacheBytes, contextSize: contextSize))
        let writer = try klDivergenceBase.map { path in
            Console.error("saving the scored log-probabilities to \(path)")
            return try LogitsFileWriter(path: path)
        }
        let result = try context.perplexity(of: tokens, maxChunks: chunks, saveLogits: writer) { chunk, of, estimate, seconds in
            let remaining = Double(of - chunk) * seconds
            Console.error(String(format: "[%d/%d] %.4f  (%.1f s/chunk, about %.0f s left)", chunk, of, estimate, seconds, remaining))
        }
        print(result.runningEstimates.enumerated().map { String(format: "[%d]%.4f", $0.offset + 1, $0.element) }.joined(separator: ","))
        print(String(format: "Final estimate: PPL = %.4f +/- %.5f", result.perplexity, result.error))
    }

    private func compare(_ model: LlamaModel, base path: String) throws {
        let base = try LogitsFile(path: path)
        let context = LlamaContext(model: model, contextSize: base.contextSize, batchSize: base.contextSize,
                                   threads: threads ?? SystemInfo.physicalCores, kvCache: try cache.checked(model))
        Console.error("comparing with \(path): \(base.chunks) chunks of \(base.contextSize)")
        print("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p")
        let r = try context.klDivergence(against: base, maxChunks: chunks) { chunk, _, p, _ in
            print(String(format: "%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%",
                         chunk, p.perplexity, p.perplexityError, p.logPerplexityRatio, p.logPerplexityRatioError,
                         p.meanKLD, p.meanKLDError, 100 * p.rmsDeltaP, 0.0, 100 * p.sameTop, 100 * p.sameTopError))
        }
        print("")
        print("====== Perplexity statistics ======")
        print(String(format: "Mean PPL(Q)                   : %10.6f ± %10.6f", r.perplexity, r.perplexityError))
        print(String(format: "Mean PPL(base)                : %10.6f ± %10.6f", r.basePerplexity, r.basePerplexityError))
        print(String(format: "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%", 100 * r.correlation))
        print(String(format: "Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f", r.logPerplexityRatio, r.logPerplexityRatioError))
        print(String(format: "Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f", r.perplexityRatio, r.perplexityRatioError))
        print("")
        print("====== KL divergence statistics ======")
        print(String(format: "Mean    KLD: %10.6f ± %10.6f", r.meanKLD, r.meanKLDError))
        print(String(format: "Maximum KLD: %10.6f", r.maxKLD))
        for (f, label) in [(0.999, "99.9%"), (0.99, "99.0%"), (0.95, "95.0%"), (0.90, "90.0%")] {
            print(String(format: "%@   KLD: %10.6f", label, r.kldPercentiles[f] ?? 0))
        }
        print(String(format: "Median  KLD: %10.6f", r.medianKLD))
        for (f, label) in [(0.10, "10.0%"), (0.05, " 5.0%"), (0.01, " 1.0%"), (0.001, " 0.1%")] {
            print(String(format: "%@   KLD: %10.6f", label, r.kldPercentiles[f] ?? 0))
        }
        print(String(format: "Minimum KLD: %10.6f", r.minKLD))
        print("")
        print("====== Token probability statistics ======")
        print(String(format: "Mean    Δp: %6.3f %%", 100 * r.meanDeltaP))
        print(String(format: "Maximum Δp: %6.3f%%", 100 * r.maxDeltaP))
        print(String(format: "RMS Δp    : %6.3f %%", 100 * r.rmsDeltaP))
        print(String(format: "Same top p: %6.3f ± %5.3f %%", 100 * r.sameTop, 100 * r.sameTopError))
    }
}

import ArgumentParser
import Foundation
import Llama

/// Sampling, stopping and grammar options shared by `generate` and `chat`.
struct SamplingOptions: ParsableArguments {
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

    @Option(name: .customLong("typical"), help: "Locally typical sampling: keep the most typical tokens up to mass p (1 = off).")
    var typicalP: Float = 1

    @Option(name: .customLong("repeat-penalty"), help: "Penalty for repeating recent tokens (1 = off).")
    var repeatPenalty: Float = 1.0

    @Option(name: .customLong("repeat-last-n"), help: "How many recent tokens the penalties consider (-1 = all).")
    var repeatLastN: Int = 64

    @Option(name: .customLong("frequency-penalty"), help: "Subtract this times a token's count in the recent tokens (0 = off).")
    var frequencyPenalty: Float = 0

    @Option(name: .customLong("presence-penalty"), help: "Subtract this from tokens present in the recent tokens (0 = off).")
    var presencePenalty: Float = 0

    @Option(help: "Mirostat sampling: 0 off, 2 for Mirostat v2 (replaces top-k, typical, min-p and top-p).")
    var mirostat: Int = 0

    @Option(name: .customLong("mirostat-ent"), help: "Mirostat's target surprise (tau).")
    var mirostatTau: Float = 5

    @Option(name: .customLong("mirostat-lr"), help: "Mirostat's learning rate (eta).")
    var mirostatEta: Float = 0.1

    @Option(name: .customLong("logit-bias"), help: ArgumentHelp("Add a bias to a token's logit, as TOKEN_ID+BIAS or TOKEN_ID-BIAS (repeatable; -inf bans it).", valueName: "id±bias"))
    var logitBias: [String] = []

    @Option(name: [.short, .customLong("seed")], help: "Random seed, for a reproducible run. Default: random.")
    var seed: UInt64?

    @Option(name: .customLong("stop"), help: "Stop where this text appears (repeatable); the text itself is not printed.")
    var stop: [String] = []

    @Option(help: "A GBNF grammar the output must follow.")
    var grammar: String?

    @Option(name: .customLong("grammar-file"), help: ArgumentHelp("Read the GBNF grammar from a file.", valueName: "file"))
    var grammarFile: String?

    @Option(name: [.customShort("j"), .customLong("json-schema")], help: "Constrain the output to JSON matching this JSON Schema ('{}' for any JSON object).")
    var jsonSchema: String?

    func validate() throws {
        if temperature < 0 { throw ValidationError("--temp cannot be negative") }
        if !(0...1).contains(topP) { throw ValidationError("--top-p must be between 0 and 1") }
        if !(0...1).contains(minP) { throw ValidationError("--min-p must be between 0 and 1") }
        if !(0...1).contains(typicalP) || typicalP == 0 { throw ValidationError("--typical must be in (0, 1]") }
        if repeatPenalty <= 0 { throw ValidationError("--repeat-penalty must be positive") }
        if ![0, 2].contains(mirostat) { throw ValidationError("--mirostat takes 0 (off) or 2 (Mirostat v2)") }
        if [grammar != nil, grammarFile != nil, jsonSchema != nil].filter({ $0 }).count > 1 {
            throw ValidationError("give one of --grammar, --grammar-file and --json-schema")
        }
        _ = try biases()
    }

    func biases() throws -> [TokenID: Float] {
        var out: [TokenID: Float] = [:]
        for item in logitBias {
            guard let sign = item.dropFirst().firstIndex(where: { $0 == "+" || $0 == "-" }),
                  let id = TokenID(item[..<sign]), let bias = Float(item[sign...].replacingOccurrences(of: "inf", with: "infinity")) else {
                throw ValidationError("--logit-bias takes TOKEN_ID+BIAS or TOKEN_ID-BIAS (for example 15043+1 or 2-inf), not '\(item)'")
            }
            out[id] = bias
        }
        return out
    }

    /// The parameters for the library, reading grammar files and converting a JSON schema.
    func parameters() throws -> GenerationParameters {
        var s = SamplerSettings()
        s.temperature = temperature
        s.topK = topK
        s.topP = topP
        s.minP = minP
        s.typicalP = typicalP
        s.repeatPenalty = repeatPenalty
        s.repeatLastN = repeatLastN
        s.frequencyPenalty = frequencyPenalty
        s.presencePenalty = presencePenalty
        s.mirostat = mirostat
        s.mirostatTau = mirostatTau
        s.mirostatEta = mirostatEta
        s.logitBias = try biases()
        if let seed { s.seed = seed }
        var p = GenerationParameters(maxTokens: count, sampler: s, stop: stop)
        if let grammar { p.grammar = grammar }
        if let grammarFile {
            guard let data = FileManager.default.contents(atPath: grammarFile) else { throw CLIError("cannot read the grammar file '\(grammarFile)'") }
            p.grammar = String(decoding: data, as: UTF8.self)
        }
        if let jsonSchema {
            do {
                let trimmed = jsonSchema.trimmingCharacters(in: .whitespaces)
                p.grammar = trimmed == "{}" ? JSONGrammar.anyObject : try JSONGrammar.grammar(schemaJSON: jsonSchema)
            } catch {
                throw CLIError("--json-schema: \(error)")
            }
        }
        if let grammar = p.grammar {
            do { _ = try Grammar(grammar) } catch { throw CLIError("the grammar does not parse: \(error)") }
        }
        return p
    }
}

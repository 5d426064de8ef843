import Foundation
import Jinja
import Llama

/// Ollama's request fields that differ from OpenAI's: `options`, `format`.
package enum OllamaRequest {
    /// Ollama's `options` and `format` as generation parameters, with Ollama's defaults.
    package static func parameters(_ fields: JSONFields, contextSize: Int) throws -> GenerationParameters {
        var parameters = GenerationParameters()
        var sampler = SamplerSettings()
        sampler.topP = 0.9
        sampler.minP = 0
        sampler.repeatPenalty = 1.1
        if let options = try fields.object("options") {
            if let t = try options.number("temperature", in: 0...100) { sampler.temperature = Float(t) }
            if let k = try options.integer("top_k", atLeast: 0) { sampler.topK = k }
            if let p = try options.number("top_p", in: 0...1) { sampler.topP = Float(p) }
            if let p = try options.number("min_p", in: 0...1) { sampler.minP = Float(p) }
            if let p = try options.number("typical_p", in: 0...1) { sampler.typicalP = Float(p) }
            if let r = try options.number("repeat_penalty", in: 0...10) { sampler.repeatPenalty = Float(r) }
            if let n = try options.integer("repeat_last_n", atLeast: -1) { sampler.repeatLastN = n < 0 ? contextSize : n }
            if let p = try options.number("presence_penalty", in: -2...2) { sampler.presencePenalty = Float(p) }
            if let p = try options.number("frequency_penalty", in: -2...2) { sampler.frequencyPenalty = Float(p) }
            if let m = try options.integer("mirostat", atLeast: 0) {
                guard m <= 2 else { throw APIError.badRequest("'mirostat' must be 0, 1 or 2", param: "options") }
                sampler.mirostat = m
            }
            if let tau = try options.number("mirostat_tau", in: 0...100) { sampler.mirostatTau = Float(tau) }
            if let eta = try options.number("mirostat_eta", in: 0...1) { sampler.mirostatEta = Float(eta) }
            if let seed = try options.integer("seed") { sampler.seed = UInt64(bitPattern: Int64(seed)) }
            // -1: until the model stops or the context is full; -2: fill the context.
            if let n = try options.integer("num_predict", atLeast: -2) { parameters.maxTokens = n < 0 ? -1 : n }
            if let value = options["stop"] {
                guard case .array(let items) = value, items.count <= 64 else { throw JSONFields.mistyped("stop", "an array of at most 64 strings", value) }
                parameters.stop = try items.map { item in
                    guard case .string(let s) = item else { throw APIError.badRequest("'stop' must be an array of strings", param: "options") }
                    return s
                }
            }
        }
        parameters.sampler = sampler
        switch fields["format"] {
        case nil, .string("")?: break
        case .string("json")?: parameters.grammar = JSONGrammar.anyObject
        case .object?:
            do {
                parameters.grammar = try JSONGrammar.grammar(schema: fields["format"]!)
            } catch {
                throw APIError.badRequest("the JSON schema in 'format' cannot be followed: \(error)", param: "format")
            }
        case let other?:
            throw JSONFields.mistyped("format", "\"json\" or a JSON schema object", other)
        }
        return parameters
    }
}

/// How long a model stays loaded after its last request: Ollama's `keep_alive`.
public enum KeepAlive: Sendable, Equatable {
    case forever
    case duration(Duration)

    /// A number of seconds, or a Go duration ("5m", "1h30m", "90s", "500ms"); negative means forever.
    package init(json value: JinjaValue) throws {
        let seconds: Double
        switch value {
        case .int(let n): seconds = Double(n)
        case .double(let n): seconds = n
        case .string(let text):
            if let n = Double(text) {
                seconds = n
            } else {
                guard let parsed = Self.goDuration(text) else {
                    throw APIError.badRequest("'keep_alive' must be a number of seconds or a duration such as \"5m\" or \"1h30m\"; '\(text.prefix(40))' is neither", param: "keep_alive")
                }
                seconds = parsed
            }
        default:
            throw JSONFields.mistyped("keep_alive", "a number of seconds or a duration string", value)
        }
        guard seconds.isFinite else { throw APIError.badRequest("'keep_alive' must be finite", param: "keep_alive") }
        self = seconds < 0 ? .forever : .duration(.milliseconds(Int64(min(seconds, 1e9) * 1000)))
    }

    /// "1h30m", "-1s", "2.5m": signed decimal numbers with the units ns, us, µs, ms, s, m, h.
    static func goDuration(_ text: String) -> Double? {
        var rest = Substring(text)
        var sign = 1.0
        if rest.first == "-" || rest.first == "+" {
            if rest.first == "-" { sign = -1 }
            rest = rest.dropFirst()
        }
        guard !rest.isEmpty, rest.count <= 64 else { return nil }
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        var total = 0.0
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !digits.isEmpty, let number = Double(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            // The longest unit that matches ("ms" before "m").
            guard let (unit, scale) = units.filter({ rest.hasPrefix($0.0) }).max(by: { $0.0.count < $1.0.count }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += number * scale
        }
        return sign * total
    }
}

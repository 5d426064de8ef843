import Foundation
import Jinja
import Llama

/// A request body's JSON object, read field by field with errors that name the field. JSON is
/// parsed with key order kept (a JSON schema's properties keep their order in the grammar).
package struct JSONFields {
    package let pairs: [(String, JinjaValue)]

    package init(body: String) throws {
        let value: JinjaValue
        do {
            value = try JinjaValue(json: body)
        } catch {
            throw APIError.badRequest("the request body is not valid JSON: \(error)")
        }
        guard case .object(let pairs) = value else { throw APIError.badRequest("the request body must be a JSON object") }
        self.pairs = pairs
    }

    package init(pairs: [(String, JinjaValue)]) { self.pairs = pairs }

    /// A field's value; nil when absent or null.
    package subscript(key: String) -> JinjaValue? {
        guard let value = pairs.last(where: { $0.0 == key })?.1 else { return nil }
        if case .none = value { return nil }
        return value
    }

    package static func typeName(_ value: JinjaValue) -> String {
        switch value {
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        default: return "null"
        }
    }

    package static func mistyped(_ key: String, _ expected: String, _ value: JinjaValue) -> APIError {
        .badRequest("'\(key)' must be \(expected), not \(typeName(value))", param: key)
    }

    package func string(_ key: String) throws -> String? {
        guard let value = self[key] else { return nil }
        guard case .string(let s) = value else { throw Self.mistyped(key, "a string", value) }
        return s
    }

    package func bool(_ key: String) throws -> Bool? {
        guard let value = self[key] else { return nil }
        guard case .bool(let b) = value else { throw Self.mistyped(key, "a boolean", value) }
        return b
    }

    package func number(_ key: String, in range: ClosedRange<Double>? = nil) throws -> Double? {
        guard let value = self[key] else { return nil }
        let number: Double
        switch value {
        case .int(let i): number = Double(i)
        case .double(let d): number = d
        default: throw Self.mistyped(key, "a number", value)
        }
        if let range, !range.contains(number) {
            throw APIError.badRequest("'\(key)' must be between \(range.lowerBound.compact) and \(range.upperBound.compact); it is \(number.compact)", param: key)
        }
        return number
    }

    package func integer(_ key: String, atLeast minimum: Int? = nil) throws -> Int? {
        guard let value = self[key] else { return nil }
        let integer: Int
        switch value {
        case .int(let i): integer = i
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: integer = Int(d)
        default: throw Self.mistyped(key, "an integer", value)
        }
        if let minimum, integer < minimum {
            throw APIError.badRequest("'\(key)' must be at least \(minimum); it is \(integer)", param: key)
        }
        return integer
    }

    package func object(_ key: String) throws -> JSONFields? {
        guard let value = self[key] else { return nil }
        guard case .object(let pairs) = value else { throw Self.mistyped(key, "an object", value) }
        return JSONFields(pairs: pairs)
    }
}

extension Double {
    package var compact: String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}

/// What every text-generating request shares: sampling, limits, stops, format, streaming.
package struct GenerationRequest {
    package var model: String?
    package var parameters = GenerationParameters()
    package var stream = false
    package var includeUsage = false
    /// Answers to generate for the prompt (`n`), each in a slot of its own.
    package var choices = 1

    /// Reads the OpenAI fields (and llama.cpp's top_k, min_p, repeat_penalty), validating each.
    /// `chat` picks the chat form of `logprobs` (a boolean, with `top_logprobs`) over the
    /// completions form (the number of alternatives).
    package init(_ fields: JSONFields, vocabularySize: Int, chat: Bool) throws {
        model = try fields.string("model")
        var sampler = SamplerSettings()
        if let t = try fields.number("temperature", in: 0...2) { sampler.temperature = Float(t) }
        if let p = try fields.number("top_p", in: 0...1) { sampler.topP = Float(p) }
        if let k = try fields.integer("top_k", atLeast: 0) { sampler.topK = k }
        if let p = try fields.number("min_p", in: 0...1) { sampler.minP = Float(p) }
        if let p = try fields.number("typical_p", in: 0...1) { sampler.typicalP = Float(p) }
        if let r = try fields.number("repeat_penalty", in: 0...10) { sampler.repeatPenalty = Float(r) }
        if let p = try fields.number("presence_penalty", in: -2...2) { sampler.presencePenalty = Float(p) }
        if let p = try fields.number("frequency_penalty", in: -2...2) { sampler.frequencyPenalty = Float(p) }
        if let seed = try fields.integer("seed") { sampler.seed = UInt64(bitPattern: Int64(seed)) }
        if let bias = try fields.object("logit_bias") {
            for (key, value) in bias.pairs {
                guard let id = Int(key), id >= 0, id < vocabularySize else {
                    throw APIError.badRequest("'logit_bias' keys must be token ids below \(vocabularySize); '\(key)' is not", param: "logit_bias")
                }
                let b: Double
                switch value {
                case .int(let i): b = Double(i)
                case .double(let d): b = d
                default: throw APIError.badRequest("'logit_bias' values must be numbers", param: "logit_bias")
                }
                guard (-100...100).contains(b) else {
                    throw APIError.badRequest("'logit_bias' values must be between -100 and 100; token \(key) has \(b.compact)", param: "logit_bias")
                }
                // OpenAI: -100 bans the token, 100 makes it the only choice.
                sampler.logitBias[TokenID(id)] = b <= -100 ? -.infinity : Float(b)
            }
        }
        parameters.sampler = sampler

        // max_completion_tokens is the newer name; either may come.
        if let n = try fields.integer("max_completion_tokens", atLeast: 0) ?? fields.integer("max_tokens", atLeast: 0) ?? fields.integer("n_predict") {
            parameters.maxTokens = n
        }
        if let value = fields["stop"] {
            switch value {
            case .string(let s): parameters.stop = [s]
            case .array(let items):
                parameters.stop = try items.map { item in
                    guard case .string(let s) = item else { throw APIError.badRequest("'stop' must be a string or an array of strings", param: "stop") }
                    return s
                }
            default: throw JSONFields.mistyped("stop", "a string or an array of strings", value)
            }
        }
        if let n = try fields.integer("n", atLeast: 1) {
            guard n <= 16 else { throw APIError.badRequest("'n' must be at most 16", param: "n") }
            choices = n
        }
        _ = try fields.string("user")  // accepted, as OpenAI does, for the caller's own tracking

        if let format = try fields.object("response_format") {
            switch try format.string("type") {
            case "text", nil: break
            case "json_object":
                parameters.grammar = JSONGrammar.anyObject
            case "json_schema":
                guard let wrapper = try format.object("json_schema"), let schema = wrapper["schema"] else {
                    throw APIError.badRequest("'response_format' of type json_schema needs 'json_schema': {\"name\": ..., \"schema\": {...}}", param: "response_format")
                }
                do {
                    parameters.grammar = try JSONGrammar.grammar(schema: schema)
                } catch {
                    throw APIError.badRequest("the JSON schema cannot be followed: \(error)", param: "response_format")
                }
            case let other?:
                throw APIError.badRequest("'response_format' type '\(other)' is not one of text, json_object, json_schema", param: "response_format")
            }
        }
        if let grammar = try fields.string("grammar") { parameters.grammar = grammar }

        if chat {
            let top = try fields.integer("top_logprobs", atLeast: 0)
            if let top, top > 20 { throw APIError.badRequest("'top_logprobs' must be at most 20", param: "top_logprobs") }
            if try fields.bool("logprobs") == true {
                parameters.logprobs = top ?? 0
            } else if top != nil {
                throw APIError.badRequest("'top_logprobs' needs 'logprobs': true", param: "top_logprobs")
            }
        } else if let top = try fields.integer("logprobs", atLeast: 0) {
            guard top <= 20 else { throw APIError.badRequest("'logprobs' must be at most 20", param: "logprobs") }
            parameters.logprobs = top
        }

        stream = try fields.bool("stream") ?? false
        if let options = try fields.object("stream_options") {
            includeUsage = try options.bool("include_usage") ?? false
        }
    }
}

/// The messages of a chat request: roles and text content (plain or as text parts).
package func chatMessages(_ fields: JSONFields) throws -> [ChatMessage] {
    guard let value = fields["messages"] else { throw APIError.badRequest("'messages' is required", param: "messages") }
    guard case .array(let items) = value, !items.isEmpty else {
        throw APIError.badRequest("'messages' must be a non-empty array of {\"role\", \"content\"}", param: "messages")
    }
    return try items.enumerated().map { index, item in
        guard case .object(let pairs) = item else { throw APIError.badRequest("messages[\(index)] must be an object", param: "messages") }
        let message = JSONFields(pairs: pairs)
        guard let role = try message.string("role") else { throw APIError.badRequest("messages[\(index)] has no 'role'", param: "messages") }
        guard ["system", "developer", "user", "assistant", "tool"].contains(role) else {
            throw APIError.badRequest("messages[\(index)].role '\(role)' is not one of system, developer, user, assistant, tool", param: "messages")
        }
        var text = ""
        switch message["content"] {
        case nil: break
        case .string(let s)?: text = s
        case .array(let parts)?:
            for part in parts {
                guard case .object(let p) = part, let type = try JSONFields(pairs: p).string("type") else {
                    throw APIError.badRequest("messages[\(index)].content parts must be objects with a 'type'", param: "messages")
                }
                guard type == "text", let partText = try JSONFields(pairs: p).string("text") else {
                    throw APIError.badRequest("messages[\(index)] has a content part of type '\(type)'; only text is supported", param: "messages")
                }
                text += partText
            }
        case let other?:
            throw APIError.badRequest("messages[\(index)].content must be a string or an array of parts, not \(JSONFields.typeName(other))", param: "messages")
        }
        if case .array(let images)? = message["images"], !images.isEmpty {
            throw APIError.badRequest("messages[\(index)] has images; this server runs text models only", param: "messages")
        }
        var calls: [ToolCall]? = nil
        if let value = message["tool_calls"] {
            guard case .array(let list) = value else { throw JSONFields.mistyped("messages[\(index)].tool_calls", "an array", value) }
            calls = try list.enumerated().map { j, item in
                let bad = APIError.badRequest("messages[\(index)].tool_calls[\(j)] must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}", param: "messages")
                guard case .object(let pairs) = item else { throw bad }
                let call = JSONFields(pairs: pairs)
                guard let function = try call.object("function"), let name = try function.string("name") else { throw bad }
                let arguments: String
                switch function["arguments"] {
                case .string(let s)?: arguments = s
                case nil: arguments = "{}"
                case let other?: arguments = other.jsonText
                }
                return ToolCall(id: try call.string("id") ?? "call_\(index)_\(j)", name: name, arguments: arguments)
            }
        }
        // Templates know system, not OpenAI's newer name for it.
        return ChatMessage(role: role == "developer" ? "system" : role, content: text, toolCalls: calls,
                           toolCallID: try message.string("tool_call_id"), name: try message.string("name") ?? message.string("tool_name"))
    }
}

/// A chat request's tools (`tools`, `tool_choice`, `parallel_tool_calls`) for the model's
/// template, checked (each schema must make a grammar); nil when there are none.
package func toolUse(_ fields: JSONFields, template: ChatTemplate) throws -> ToolUse? {
    var tools: [ToolSpec] = []
    if let value = fields["tools"] {
        guard case .array(let items) = value else { throw JSONFields.mistyped("tools", "an array", value) }
        guard items.count <= 256 else { throw APIError.badRequest("'tools' may hold at most 256 tools", param: "tools") }
        for (i, item) in items.enumerated() {
            let bad = APIError.badRequest("tools[\(i)] must be {\"type\": \"function\", \"function\": {\"name\": ..., \"description\": ..., \"parameters\": {...}}}", param: "tools")
            guard case .object(let pairs) = item else { throw bad }
            let tool = JSONFields(pairs: pairs)
            let type = try tool.string("type") ?? "function"
            guard type == "function" else { throw APIError.badRequest("tools[\(i)] has type '\(type)'; only function tools are supported", param: "tools") }
            guard let function = try tool.object("function"), let name = try function.string("name"), !name.isEmpty else { throw bad }
            let parameters = function["parameters"] ?? ["type": "object", "properties": [:]]
            guard case .object = parameters else { throw APIError.badRequest("tools[\(i)].function.parameters must be a JSON schema object", param: "tools") }
            tools.append(ToolSpec(name: name, description: try function.string("description"), parameters: parameters))
        }
    }
    var choice = ToolChoice.auto
    switch fields["tool_choice"] {
    case nil, .string("auto")?: break
    case .string("none")?: choice = .none
    case .string("required")?: choice = .required
    case .object(let pairs)?:
        guard let function = try JSONFields(pairs: pairs).object("function"), let name = try function.string("name") else {
            throw APIError.badRequest("'tool_choice' as an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}", param: "tool_choice")
        }
        choice = .function(name)
    default:
        throw APIError.badRequest("'tool_choice' must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": ...}}", param: "tool_choice")
    }
    let parallel = try fields.bool("parallel_tool_calls") ?? true
    let use = ToolUse(tools: tools, choice: choice, parallel: parallel, template: template)
    do {
        try use.validate()
    } catch {
        throw APIError.badRequest(error.description, param: "tool_choice")
    }
    guard !tools.isEmpty else { return nil }
    do {
        _ = try use.grammar()
    } catch {
        throw APIError.badRequest("a tool's parameters cannot be followed: \(error)", param: "tools")
    }
    return use
}

/// A completion prompt: a string, one string in an array, or token ids.
/// `checkText` sees each text before it is tokenized (to refuse one far too long).
package func completionPrompt(_ fields: JSONFields, tokenizer: Tokenizer, checkText: (String) throws -> Void = { _ in }) throws -> [TokenID] {
    func text(_ s: String) throws -> [TokenID] {
        try checkText(s)
        var tokens = tokenizer.encode(s, addSpecial: true, parseSpecial: true)
        if tokens.isEmpty, let bos = tokenizer.bos { tokens = [bos] }
        return tokens
    }
    let invalid = APIError.badRequest("'prompt' must be a string, an array of one string, or an array of token ids", param: "prompt")
    switch fields["prompt"] {
    case nil: throw APIError.badRequest("'prompt' is required", param: "prompt")
    case .string(let s)?: return try text(s)
    case .array(let items)?:
        if items.count == 1, case .string(let s) = items[0] { return try text(s) }
        if items.count == 1, case .array(let inner) = items[0] { return try tokenIDs(inner, param: "prompt") }
        if items.count > 1, items.allSatisfy({ if case .string = $0 { true } else { false } }) {
            throw APIError.badRequest("several prompts in one request are not supported; send one request per prompt", param: "prompt")
        }
        return try tokenIDs(items, param: "prompt", invalid: invalid)
    default: throw invalid
    }
}

package func tokenIDs(_ items: [JinjaValue], param: String, invalid: APIError? = nil) throws -> [TokenID] {
    try items.map { item in
        guard case .int(let id) = item, let token = TokenID(exactly: id) else {
            throw invalid ?? APIError.badRequest("'\(param)' must hold token ids (integers)", param: param)
        }
        return token
    }
}

/// Embedding inputs: a string, strings, token ids, or arrays of token ids.
/// At most `maxInputs` inputs; `checkText` sees each text before it is tokenized.
package func embeddingInputs(_ fields: JSONFields, tokenizer: Tokenizer, maxInputs: Int = .max, checkText: (String) throws -> Void = { _ in }) throws -> [[TokenID]] {
    func text(_ s: String) throws -> [TokenID] {
        try checkText(s)
        return tokenizer.encode(s, addSpecial: true, parseSpecial: false)
    }
    let invalid = APIError.badRequest("'input' must be a string, an array of strings, token ids, or arrays of token ids", param: "input")
    switch fields["input"] {
    case nil: throw APIError.badRequest("'input' is required", param: "input")
    case .string(let s)?: return [try text(s)]
    case .array(let items)?:
        guard !items.isEmpty else { throw invalid }
        guard items.count <= maxInputs || items.allSatisfy({ if case .int = $0 { true } else { false } }) else {
            throw APIError.badRequest("'input' holds \(items.count) inputs; at most \(maxInputs) are allowed in one request", param: "input")
        }
        if items.allSatisfy({ if case .int = $0 { true } else { false } }) { return [try tokenIDs(items, param: "input")] }
        return try items.map { item in
            switch item {
            case .string(let s): return try text(s)
            case .array(let ids): return try tokenIDs(ids, param: "input", invalid: invalid)
            default: throw invalid
            }
        }
    default: throw invalid
    }
}

/// Every route's request decoding at once, for fuzzing: a body is read as a chat, completion,
/// embeddings and Anthropic Messages request would read it. Throws what the first decoder
/// refuses with (as a 400).
public enum RequestDecoding {
    /// The template Messages requests are prepared with (their tools go through `ToolUse`).
    static let template = ChatTemplate(format: .chatml)

    public static func decodeAll(body: String, tokenizer: Tokenizer, vocabularySize: Int) throws {
        let fields = try JSONFields(body: body)
        var errors: [Error] = []
        func attempt(_ work: () throws -> Void) {
            do { try work() } catch { errors.append(error) }
        }
        attempt {
            let request = try GenerationRequest(fields, vocabularySize: vocabularySize, chat: true)
            if let grammar = request.parameters.grammar { _ = GrammarMatcher(try Grammar(grammar)) }
            try request.parameters.sampler.validate()
        }
        attempt { _ = try GenerationRequest(fields, vocabularySize: vocabularySize, chat: false) }
        attempt { _ = try chatMessages(fields) }
        attempt { _ = try completionPrompt(fields, tokenizer: tokenizer) }
        attempt { _ = try embeddingInputs(fields, tokenizer: tokenizer, maxInputs: RequestLimits.maxEmbeddingInputs) }
        attempt {  // Ollama's /api/chat and /api/generate
            let parameters = try OllamaRequest.parameters(fields, contextSize: 4096)
            if let grammar = parameters.grammar { _ = GrammarMatcher(try Grammar(grammar)) }
            try parameters.sampler.validate()
            _ = try fields["keep_alive"].map(KeepAlive.init(json:))
        }
        for counting in [false, true] {  // /v1/messages and /v1/messages/count_tokens
            attempt { _ = try AnthropicRequest(fields, counting: counting, template: template, reasoningBudget: nil, keptSpecialTokens: []) }
        }
        for error in errors where !(error is APIError) { throw error }
    }
}


/// Bounds on what one request may ask for.
package enum RequestLimits {
    /// Inputs in one embeddings request (OpenAI allows 2048).
    package static let maxEmbeddingInputs = 2048
}

import Foundation
import Hummingbird
import Jinja
import Llama

/// Anthropic's Messages API over the same engine, for agents that speak it: `POST /v1/messages`
/// (system prompt, text, `tool_use` and `tool_result` blocks, thinking, whole or as its event
/// stream) and `POST /v1/messages/count_tokens`. Errors take its shape (see `APIError.anthropicJSON`).
extension Routes {
    struct AnthropicRequest {
        var model: String?
        var messages: [ChatMessage]
        var parameters = GenerationParameters()
        var stream = false
        var tools: ToolUse?
    }

    /// The text of a `{"type": "text", "text": ...}` block.
    static func text(ofBlock block: JinjaValue, _ place: String) throws -> String {
        guard case .object(let pairs) = block, let type = try JSONFields(pairs: pairs).string("type"), type == "text",
              let text = try JSONFields(pairs: pairs).string("text") else {
            throw APIError.badRequest("\(place) must hold text blocks: {\"type\": \"text\", \"text\": ...}", param: place)
        }
        return text
    }

    /// Reads and checks a Messages request (`counting`: for count_tokens, which needs no max_tokens).
    func anthropicRequest(_ fields: JSONFields, counting: Bool) throws -> AnthropicRequest {
        try Self.anthropicRequest(fields, counting: counting, template: engine.chatTemplate, reasoningBudget: reasoningBudget,
                                  keptSpecialTokens: model.specialTokens(ToolUse.formatTags))
    }

    /// The same, apart from a running server (its template, budget and the model's format tags).
    static func anthropicRequest(_ fields: JSONFields, counting: Bool, template: ChatTemplate, reasoningBudget: Int?,
                                 keptSpecialTokens: Set<TokenID>) throws -> AnthropicRequest {
        var request = AnthropicRequest(model: try fields.string("model"), messages: [])
        if !counting {
            guard let maxTokens = try fields.integer("max_tokens", atLeast: 1) else {
                throw APIError.badRequest("'max_tokens' (an integer of at least 1) is required", param: "max_tokens")
            }
            request.parameters.maxTokens = maxTokens
        }
        var sampler = SamplerSettings()
        sampler.temperature = 1  // Anthropic's default
        if let t = try fields.number("temperature", in: 0...1) { sampler.temperature = Float(t) }
        if let p = try fields.number("top_p", in: 0...1) { sampler.topP = Float(p) }
        if let k = try fields.integer("top_k", atLeast: 0) { sampler.topK = k }
        request.parameters.sampler = sampler
        if let value = fields["stop_sequences"] {
            guard case .array(let items) = value else { throw JSONFields.mistyped("stop_sequences", "an array of strings", value) }
            request.parameters.stop = try items.map { item in
                guard case .string(let s) = item else { throw APIError.badRequest("'stop_sequences' must be an array of strings", param: "stop_sequences") }
                return s
            }
        }
        request.stream = try fields.bool("stream") ?? false
        _ = try fields.object("metadata")

        switch fields["system"] {
        case nil: break
        case .string(let s)?: if !s.isEmpty { request.messages.append(.system(s)) }
        case .array(let blocks)?: request.messages.append(.system(try blocks.map { try Self.text(ofBlock: $0, "system") }.joined(separator: "\n")))
        case let other?: throw JSONFields.mistyped("system", "a string or an array of text blocks", other)
        }
        guard case .array(let items)? = fields["messages"], !items.isEmpty else {
            throw APIError.badRequest("'messages' must be a non-empty array of {\"role\", \"content\"}", param: "messages")
        }
        var callNames: [String: String] = [:]
        for (i, item) in items.enumerated() {
            guard case .object(let pairs) = item else { throw APIError.badRequest("messages[\(i)] must be an object", param: "messages") }
            let message = JSONFields(pairs: pairs)
            guard let role = try message.string("role"), role == "user" || role == "assistant" else {
                throw APIError.badRequest("messages[\(i)].role must be user or assistant", param: "messages")
            }
            switch message["content"] {
            case .string(let s)?:
                request.messages.append(ChatMessage(role: role, content: s))
            case .array(let blocks)?:
                var text = "", calls: [ToolCall] = [], results: [ChatMessage] = []
                for (j, block) in blocks.enumerated() {
                    let place = "messages[\(i)].content[\(j)]"
                    guard case .object(let blockPairs) = block, let type = try JSONFields(pairs: blockPairs).string("type") else {
                        throw APIError.badRequest("\(place) must be an object with a 'type'", param: "messages")
                    }
                    let b = JSONFields(pairs: blockPairs)
                    switch type {
                    case "text":
                        text += try b.string("text") ?? ""
                    case "tool_use" where role == "assistant":
                        guard let id = try b.string("id"), let name = try b.string("name") else {
                            throw APIError.badRequest("\(place): a tool_use block needs 'id', 'name' and 'input'", param: "messages")
                        }
                        callNames[id] = name
                        calls.append(ToolCall(id: id, name: name, arguments: (b["input"] ?? .object([])).jsonText))
                    case "tool_result" where role == "user":
                        guard let id = try b.string("tool_use_id") else {
                            throw APIError.badRequest("\(place): a tool_result block needs 'tool_use_id'", param: "messages")
                        }
                        var content = ""
                        switch b["content"] {
                        case nil: break
                        case .string(let s)?: content = s
                        case .array(let parts)?: content = try parts.map { try Self.text(ofBlock: $0, place) }.joined(separator: "\n")
                        case let other?: throw JSONFields.mistyped("\(place).content", "a string or an array of text blocks", other)
                        }
                        if try b.bool("is_error") == true { content = "Error: " + content }
                        results.append(.tool(content, callID: id, name: callNames[id]))
                    case "thinking", "redacted_thinking":
                        continue  // earlier thinking is not shown to the model again
                    default:
                        throw APIError.badRequest("\(place) has type '\(type)', which this server does not take here (text; tool_use from the assistant; tool_result from the user)", param: "messages")
                    }
                }
                request.messages += results
                if role == "assistant" {
                    request.messages.append(.assistant(text, toolCalls: calls.isEmpty ? nil : calls))
                } else if !text.isEmpty || results.isEmpty {
                    request.messages.append(.user(text))
                }
            case let other?:
                throw JSONFields.mistyped("messages[\(i)].content", "a string or an array of content blocks", other)
            case nil:
                throw APIError.badRequest("messages[\(i)] has no 'content'", param: "messages")
            }
        }

        if let value = fields["tools"] {
            guard case .array(let list) = value else { throw JSONFields.mistyped("tools", "an array", value) }
            guard list.count <= 256 else { throw APIError.badRequest("'tools' may hold at most 256 tools", param: "tools") }
            var specs: [ToolSpec] = []
            for (i, item) in list.enumerated() {
                guard case .object(let pairs) = item, let name = try JSONFields(pairs: pairs).string("name"), !name.isEmpty else {
                    throw APIError.badRequest("tools[\(i)] must be {\"name\": ..., \"description\": ..., \"input_schema\": {...}}", param: "tools")
                }
                let tool = JSONFields(pairs: pairs)
                let schema = tool["input_schema"] ?? ["type": "object", "properties": [:]]
                guard case .object = schema else { throw APIError.badRequest("tools[\(i)].input_schema must be a JSON schema object", param: "tools") }
                specs.append(ToolSpec(name: name, description: try tool.string("description"), parameters: schema))
            }
            var choice = ToolChoice.auto, parallel = true
            if let object = try fields.object("tool_choice") {
                switch try object.string("type") {
                case "auto"?, nil: break
                case "any"?: choice = .required
                case "none"?: choice = .none
                case "tool"?:
                    guard let name = try object.string("name") else { throw APIError.badRequest("'tool_choice' of type tool needs a 'name'", param: "tool_choice") }
                    choice = .function(name)
                case let other?: throw APIError.badRequest("'tool_choice' type '\(other)' is not one of auto, any, tool, none", param: "tool_choice")
                }
                parallel = !(try object.bool("disable_parallel_tool_use") ?? false)
            }
            if !specs.isEmpty {
                let use = ToolUse(tools: specs, choice: choice, parallel: parallel, template: template)
                do { try use.validate() } catch { throw APIError.badRequest(error.description, param: "tool_choice") }
                do {
                    if let grammar = try use.grammar() {
                        request.parameters.grammar = grammar.grammar
                        request.parameters.grammarTriggers = grammar.triggers
                    }
                } catch {
                    throw APIError.badRequest("a tool's input_schema cannot be followed: \(error)", param: "tools")
                }
                request.tools = use
            }
        }
        if let thinking = try fields.object("thinking"), try thinking.string("type") == "enabled" {
            request.parameters.reasoningBudget = try thinking.integer("budget_tokens", atLeast: 0)
        } else {
            request.parameters.reasoningBudget = reasoningBudget
        }
        request.parameters.keptSpecialTokens = keptSpecialTokens
        return request
    }

    func countTokens(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        defer { scope.end() }
        let parsed = try anthropicRequest(fields, counting: true)
        let (prompt, _) = try await chatPrompt(parsed.messages, tools: parsed.tools, variables: [:], scope: scope)
        return json(.object([("input_tokens", .int(prompt.count))]))
    }

    func messages(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        do {
            var parsed = try anthropicRequest(fields, counting: false)
            let (prompt, opensThinking) = try await chatPrompt(parsed.messages, tools: parsed.tools, variables: [:], scope: scope)
            parsed.parameters.startsInReasoning = opensThinking
            let idPrefix = parsed.tools?.format == .mistral ? nil : "toolu_" + Self.randomHex(12) + "_"
            let parser = ToolCallParser(format: parsed.tools?.format ?? .generic, parsesToolCalls: parsed.tools?.isActive ?? false,
                                        startsInReasoning: opensThinking, idPrefix: idPrefix)
            let stream = try await submit(prompt: prompt, parameters: parsed.parameters, chat: true, scope: scope)
            let id = "msg_" + Self.randomHex(12)
            let modelName = engine.modelID
            guard parsed.stream else {
                defer { scope.end() }
                var text = ""
                var summary: GenerationSummary?
                for try await event in stream {
                    switch event {
                    case .text(let piece): text += piece
                    case .finished(let s):
                        Self.log(s, chat: true, logger: context.logger)
                        summary = s
                    case .logprob, .notice, .reasoning, .toolCall, .toolResult: break
                    }
                }
                if scope.timedOut { throw scope.timeoutError }
                guard let summary else { throw BatchScheduler.ShutDown() }
                let answer = parser.parse(text)
                return json(.object([("id", .string(id)), ("type", "message"), ("role", "assistant"), ("model", .string(modelName)),
                                     ("content", .array(Self.blocks(answer))), ("stop_reason", Self.stopReason(summary, calledTools: !answer.toolCalls.isEmpty)),
                                     ("stop_sequence", summary.stopSequence.map { .string($0) } ?? .none),
                                     ("usage", Self.anthropicUsage(input: prompt.count, output: summary.statistics.generatedTokens))]))
            }
            let logger = context.logger
            let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                defer { scope.end() }
                func send(_ event: String, _ value: JinjaValue) async throws {
                    try await writer.write(ByteBuffer(string: "event: \(event)\ndata: " + value.jsonText + "\n\n"))
                }
                do {
                    try await send("message_start", .object([("type", "message_start"), ("message", .object([
                        ("id", .string(id)), ("type", "message"), ("role", "assistant"), ("model", .string(modelName)), ("content", .array([])),
                        ("stop_reason", .none), ("stop_sequence", .none), ("usage", Self.anthropicUsage(input: prompt.count, output: 0))]))]))
                    var blocks = AnthropicBlockStream()
                    var pieces = ToolCallStream(parser: parser)
                    var summary: GenerationSummary?
                    for try await event in stream {
                        switch event {
                        case .text(let piece):
                            for (name, value) in blocks.events(for: pieces.add(piece)) { try await send(name, value) }
                        case .finished(let s):
                            Self.log(s, chat: true, logger: logger)
                            summary = s
                            for (name, value) in blocks.events(for: pieces.finish().deltas) { try await send(name, value) }
                        case .logprob, .notice, .reasoning, .toolCall, .toolResult: break
                        }
                    }
                    if scope.timedOut { throw scope.timeoutError }
                    guard let summary else { throw BatchScheduler.ShutDown() }
                    for (name, value) in blocks.finish() { try await send(name, value) }
                    try await send("message_delta", .object([
                        ("type", "message_delta"),
                        ("delta", .object([("stop_reason", Self.stopReason(summary, calledTools: blocks.calledTools)),
                                           ("stop_sequence", summary.stopSequence.map { .string($0) } ?? .none)])),
                        ("usage", .object([("output_tokens", .int(summary.statistics.generatedTokens))]))]))
                    try await send("message_stop", .object([("type", "message_stop")]))
                } catch let error as CancellationError {
                    throw error
                } catch {
                    try await send("error", APIError.from(error).anthropicJSON)
                }
                try await writer.finish(nil)
            })
        } catch {
            scope.end()
            throw scope.timedOut ? scope.timeoutError : error
        }
    }

    static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    static func anthropicUsage(input: Int, output: Int) -> JinjaValue {
        .object([("input_tokens", .int(input)), ("output_tokens", .int(output))])
    }

    /// Anthropic's stop reasons: a call, the token limit (or a full context), a stop sequence, or the end of the turn.
    static func stopReason(_ summary: GenerationSummary, calledTools: Bool) -> JinjaValue {
        switch summary.finishReason {
        case .length, .contextFull: return "max_tokens"
        case .cancelled: return .none
        case .stop:
            if calledTools { return "tool_use" }
            return summary.stopSequence == nil ? "end_turn" : "stop_sequence"
        }
    }

    /// An answer's content blocks: thinking, text, tool uses (input as an object).
    static func blocks(_ answer: ParsedAnswer) -> [JinjaValue] {
        var blocks: [JinjaValue] = []
        if let reasoning = answer.reasoning { blocks.append(.object([("type", "thinking"), ("thinking", .string(reasoning)), ("signature", "")])) }
        if !answer.content.isEmpty || answer.toolCalls.isEmpty { blocks.append(.object([("type", "text"), ("text", .string(answer.content))])) }
        for call in answer.toolCalls {
            blocks.append(.object([("type", "tool_use"), ("id", .string(call.id)), ("name", .string(call.name)),
                                   ("input", (try? JinjaValue(json: call.arguments)) ?? .object([]))]))
        }
        return blocks
    }
}

/// The content blocks of a streamed answer as Anthropic's events: a block opens
/// (`content_block_start`), grows (`text_delta`, `thinking_delta`, `input_json_delta`) and
/// closes (`content_block_stop`) before the next opens.
struct AnthropicBlockStream {
    enum Kind: Equatable { case text, thinking, toolUse(Int) }
    private var open: Kind?
    private var index = -1
    private(set) var calledTools = false

    mutating func events(for deltas: [ToolCallStream.Delta]) -> [(String, JinjaValue)] {
        var out: [(String, JinjaValue)] = []
        for delta in deltas {
            switch delta {
            case .reasoning(let text):
                out += start(.thinking, .object([("type", "thinking"), ("thinking", ""), ("signature", "")]))
                out.append(self.delta(.object([("type", "thinking_delta"), ("thinking", .string(text))])))
            case .content(let text):
                out += start(.text, .object([("type", "text"), ("text", "")]))
                out.append(self.delta(.object([("type", "text_delta"), ("text", .string(text))])))
            case .toolCall(let call, let id, let name, let arguments):
                calledTools = true
                if let id, let name {
                    out += start(.toolUse(call), .object([("type", "tool_use"), ("id", .string(id)), ("name", .string(name)), ("input", .object([]))]))
                }
                if !arguments.isEmpty, open == .toolUse(call) {
                    out.append(self.delta(.object([("type", "input_json_delta"), ("partial_json", .string(arguments))])))
                }
            }
        }
        return out
    }

    /// Closes the last block (an answer with no block gets an empty text block).
    mutating func finish() -> [(String, JinjaValue)] {
        var out: [(String, JinjaValue)] = []
        if open == nil, index < 0 { out += start(.text, .object([("type", "text"), ("text", "")])) }
        if open != nil {
            out.append(("content_block_stop", .object([("type", "content_block_stop"), ("index", .int(index))])))
            open = nil
        }
        return out
    }

    private mutating func start(_ kind: Kind, _ block: JinjaValue) -> [(String, JinjaValue)] {
        guard open != kind else { return [] }
        var out: [(String, JinjaValue)] = []
        if open != nil { out.append(("content_block_stop", .object([("type", "content_block_stop"), ("index", .int(index))]))) }
        index += 1
        open = kind
        out.append(("content_block_start", .object([("type", "content_block_start"), ("index", .int(index)), ("content_block", block)])))
        return out
    }

    private func delta(_ delta: JinjaValue) -> (String, JinjaValue) {
        ("content_block_delta", .object([("type", "content_block_delta"), ("index", .int(index)), ("delta", delta)]))
    }
}

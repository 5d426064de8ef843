import Foundation
import Jinja
import Llama

/// A request to Anthropic's Messages API (`POST /v1/messages` and `/v1/messages/count_tokens`):
/// system prompt, text, `tool_use` and `tool_result` blocks, thinking, tools.
package struct AnthropicRequest {
    package var model: String?
    package var messages: [ChatMessage]
    package var parameters = GenerationParameters()
    package var stream = false
    package var tools: ToolUse?

    private init(model: String?, messages: [ChatMessage]) {
        self.model = model
        self.messages = messages
    }

    /// The text of a `{"type": "text", "text": ...}` block.
    static func text(ofBlock block: JinjaValue, _ place: String) throws -> String {
        guard case .object(let pairs) = block, let type = try JSONFields(pairs: pairs).string("type"), type == "text",
              let text = try JSONFields(pairs: pairs).string("text") else {
            throw APIError.badRequest("\(place) must hold text blocks: {\"type\": \"text\", \"text\": ...}", param: place)
        }
        return text
    }

    /// Reads and checks a Messages request (`counting`: for count_tokens, which needs no max_tokens),
    /// with the server's template, thinking budget and the model's format tags.
    package init(_ fields: JSONFields, counting: Bool, template: ChatTemplate, reasoningBudget: Int?,
                 keptSpecialTokens: Set<TokenID>) throws {
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
        self = request
    }
}

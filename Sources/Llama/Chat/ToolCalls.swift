import Foundation
import Jinja

/// A function the model may call (OpenAI's function tool): its name, what it does, and the JSON
/// schema of its arguments.
public struct ToolSpec: Sendable, Equatable {
    public var name: String
    public var description: String?
    /// A JSON schema for the arguments object.
    public var parameters: JinjaValue

    public init(name: String, description: String? = nil, parameters: JinjaValue = ["type": "object", "properties": [:]]) {
        self.name = name
        self.description = description
        self.parameters = parameters
    }

    /// OpenAI's function tool object: what chat templates read from `tools`.
    public var json: JinjaValue {
        var function: [(String, JinjaValue)] = [("name", .string(name))]
        if let description { function.append(("description", .string(description))) }
        function.append(("parameters", parameters))
        return .object([("type", "function"), ("function", .object(function))])
    }
}

/// One call the model made: which function, with what arguments (JSON text of an object, as
/// OpenAI sends them), under an id its result will name.
public struct ToolCall: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }

    /// The call as chat templates read an assistant turn's `tool_calls`: the arguments as an
    /// object when they parse (Hugging Face's convention), else as the text.
    public var json: JinjaValue {
        let arguments = (try? JinjaValue(json: self.arguments)) ?? .string(self.arguments)
        return .object([("id", .string(id)), ("type", "function"),
                        ("function", .object([("name", .string(name)), ("arguments", arguments)]))])
    }
}

/// Whether and how the model must call tools (OpenAI's `tool_choice`).
public enum ToolChoice: Sendable, Equatable {
    /// The model decides: text, calls, or both.
    case auto
    /// No calls: the tools are still described, the answer is text.
    case none
    /// At least one call.
    case required
    /// A call of this function.
    case function(String)
}

/// A model's answer taken apart: what it thought (between `<think>` and `</think>`), what it
/// said, and the calls it made.
public struct ParsedAnswer: Sendable, Equatable {
    public var content: String
    public var reasoning: String?
    public var toolCalls: [ToolCall]

    public init(content: String, reasoning: String? = nil, toolCalls: [ToolCall] = []) {
        self.content = content
        self.reasoning = reasoning
        self.toolCalls = toolCalls
    }
}

/// How a model family writes tool calls. Found from its chat template, as llama.cpp finds it.
public enum ToolCallFormat: String, Sendable, CaseIterable {
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call: Hermes 2
    /// and 3, Qwen 2.5, Qwen 3, SmolLM3.
    case hermes
    /// The whole answer a JSON object `{"name": ..., "parameters": {...}}`, or after
    /// `<|python_tag|>`: Llama 3.1 to 3.3.
    case llama3
    /// `[TOOL_CALLS]` and then a JSON list of calls, or (newer templates) `name[ARGS]{...}`: Mistral.
    case mistral
    /// For templates without a format of their own: the answer is one JSON object,
    /// `{"tool_call": {"name": ..., "arguments": {...}}}`, `{"tool_calls": [...]}` or
    /// `{"response": "..."}`, which a grammar enforces.
    case generic

    /// The format a chat template's text points to.
    public static func detect(templateSource: String?) -> ToolCallFormat {
        guard let t = templateSource else { return .generic }
        if t.contains("<tool_call>") { return .hermes }
        if t.contains("[TOOL_CALLS]") { return .mistral }
        if t.contains("<|start_header_id|>"), t.contains("<|python_tag|>") || t.contains("ipython") { return .llama3 }
        return .generic
    }

    /// The text that opens a call, where the format has one (a lazy grammar switches on there).
    var trigger: String? {
        switch self {
        case .hermes: return "<tool_call>"
        case .mistral: return "[TOOL_CALLS]"
        case .llama3: return "<|python_tag|>"
        case .generic: return nil
        }
    }
}

import Jinja
import Tokenizers

/// A conversation's tools and how they may be used, for one model's template: how the prompt
/// describes them, the grammar that keeps the calls well formed (their arguments following the
/// tools' schemas), and the parser that reads the answer.
///
/// A template that writes tools in its own format (Hermes/Qwen, Llama 3.x, Mistral) gets them
/// as `tools`; for any other, the system message describes them and the answer is one JSON
/// object (`ToolCallFormat.generic`), which the grammar enforces from the first token.
public struct ToolUse: Sendable {
    public var tools: [ToolSpec]
    public var choice: ToolChoice
    /// Whether one answer may make several calls.
    public var parallel: Bool
    public let format: ToolCallFormat
    /// Whether the template renders `tools` itself.
    public let templateRendersTools: Bool
    /// Whether the template writes an assistant turn's `tool_calls` and `tool` turns itself.
    let templateRendersCalls: Bool
    let templateKnowsToolRole: Bool
    /// Mistral's newer templates write `name[ARGS]{...}` rather than a JSON list.
    let argumentTags: Bool

    public init(tools: [ToolSpec], choice: ToolChoice = .auto, parallel: Bool = true, template: ChatTemplate) {
        self.tools = tools
        self.choice = choice
        self.parallel = parallel
        let source = template.source ?? ""
        format = ToolCallFormat.detect(templateSource: template.source)
        templateRendersTools = source.contains("tools")
        templateRendersCalls = source.contains("tool_calls")
        templateKnowsToolRole = source.contains("'tool'") || source.contains("\"tool\"")
        argumentTags = source.contains("[ARGS]")
    }

    /// A choice of a function that is not among the tools, or a tool without a name.
    public func validate() throws(LlamaError) {
        if case .function(let name) = choice, !tools.contains(where: { $0.name == name }) {
            throw LlamaError.template("tool_choice names the function '\(name)', which is not among the tools")
        }
        if choice == .required, tools.isEmpty { throw LlamaError.template("tool_choice 'required' needs at least one tool") }
        for tool in tools where tool.name.isEmpty { throw LlamaError.template("every tool needs a name") }
    }

    /// Whether the answer may hold calls (there are tools and the choice is not `none`).
    public var isActive: Bool { !tools.isEmpty && choice != .none }

    /// The tools a call may name: all of them, or the one `choice` names.
    var callable: [ToolSpec] {
        if case .function(let name) = choice { return tools.filter { $0.name == name } }
        return tools
    }

    // MARK: Prompt

    /// The prompt text: the conversation prepared (`messages(_:)`) and rendered with the tools
    /// when the template renders them. A template that refuses a system message (Gemma 2) gets
    /// the description at the start of the first user turn instead.
    public func render(_ messages: [ChatMessage], template: ChatTemplate, bos: String, eos: String,
                       variables: [String: JinjaValue] = [:], limits: Template.Limits = Template.Limits()) throws -> String {
        let prepared = self.messages(messages)
        let tools = templateRendersTools ? self.tools : []
        do {
            return try template.render(prepared, bos: bos, eos: eos, tools: tools, variables: variables, limits: limits)
        } catch {
            guard let instructions, messages.first?.role != "system", let user = prepared.firstIndex(where: { $0.role == "user" }) else { throw error }
            var folded = Array(prepared.dropFirst())
            folded[user - 1].content = instructions + "\n\n" + folded[user - 1].content
            return try template.render(folded, bos: bos, eos: eos, tools: tools, variables: variables, limits: limits)
        }
    }

    /// The conversation as the template gets it. A template that knows calls and results gets
    /// them as they are; for one that does not, calls are written as the generic JSON answer and
    /// results become user turns. When the template does not describe the tools (or the answer
    /// is the generic JSON), the system message does.
    public func messages(_ messages: [ChatMessage]) -> [ChatMessage] {
        var out: [ChatMessage] = []
        var lastWasResult = false
        for message in messages {
            var m = message
            if !templateRendersCalls, let calls = m.toolCalls, !calls.isEmpty {
                // In the answer's JSON while calls may follow (it shows the format); in words when
                // the answer is to be text.
                let said = m.content.isEmpty ? "" : m.content + "\n"
                m = .assistant(isActive ? Self.genericJSON(calls)
                                        : said + calls.map { "(I called \($0.name) with \($0.arguments).)" }.joined(separator: "\n"))
            }
            if m.role == "tool", !(templateRendersCalls && templateKnowsToolRole) {
                let text = "Result of \(m.name ?? "the call")" + (m.toolCallID.map { " (\($0))" } ?? "") + ":\n" + m.content
                // Results of parallel calls go into one user turn: roles keep alternating.
                if lastWasResult, let last = out.indices.last {
                    out[last].content += "\n\n" + text
                    continue
                }
                out.append(.user(text))
                lastWasResult = true
                continue
            }
            lastWasResult = false
            out.append(m)
        }
        if let instructions {
            if out.first?.role == "system" {
                out[0].content += "\n\n" + instructions
            } else {
                out.insert(.system(instructions), at: 0)
            }
        }
        return out
    }

    /// What the system message adds: the tools (where the template does not show them) and the
    /// shape of the answer (for the generic format).
    var instructions: String? {
        guard isActive else { return nil }
        var parts: [String] = []
        if !templateRendersTools || format == .generic {
            let list = tools.map { tool in
                JinjaValue.object([("name", .string(tool.name)), ("description", .string(tool.description ?? "")),
                                   ("parameters", tool.parameters)]).jsonText
            }
            parts.append("You can call these functions (parameters as JSON Schema):\n" + list.joined(separator: "\n"))
        }
        if format == .generic {
            let call = #"{"tool_call": {"name": "<function name>", "arguments": {<arguments>}}}"#
            let calls = #"{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}"#
            var shape = "Reply with one JSON object and nothing else: " + call + " to call a function"
            if parallel { shape += ", " + calls + " to call several" }
            shape += choice == .auto ? #", or {"response": "<your reply>"} to answer the user. Once a function's result is there, answer with it unless another call is needed."# : "."
            parts.append(shape)
        }
        return parts.isEmpty ? nil : parts.joined(separator: "\n\n")
    }

    /// Calls in the generic JSON answer's shape.
    static func genericJSON(_ calls: [ToolCall]) -> String {
        let objects = calls.map { call in
            JinjaValue.object([("name", .string(call.name)), ("arguments", (try? JinjaValue(json: call.arguments)) ?? .string(call.arguments))])
        }
        if objects.count == 1 { return JinjaValue.object([("tool_call", objects[0])]).jsonText }
        return JinjaValue.object([("tool_calls", .array(objects))]).jsonText
    }

    // MARK: Grammar and parsing

    /// The grammar an answer with calls follows, and the texts that switch it on: empty when it
    /// holds from the first token (`required`, a named function, the generic format), the
    /// format's opening tag when the model may also just answer (`auto`: the text stays free
    /// until the model starts a call). Nil when there is nothing to constrain.
    public func grammar() throws -> (grammar: String, triggers: [String])? {
        guard isActive else { return nil }
        let tools = callable
        let key = format == .llama3 ? "parameters" : "arguments"
        let literal = JSONGrammar.Converter.literal
        var calls: [String] = [], tagged: [String] = []
        for (i, tool) in tools.enumerated() {
            let name = literal(JinjaValue.string(tool.name).jsonText)
            calls.append(#""{" ws "\"name\"" ws ":" ws "# + name + #" ws "," ws "# + literal("\"\(key)\"") + " ws \":\" ws args-\(i) ws \"}\"")
            tagged.append(literal(tool.name) + " \"[ARGS]\" args-\(i)")
        }
        var grammar = "call ::= " + calls.joined(separator: " | ") + "\n"
        // Parallel calls: at most `maxParallelCalls` (a small model may otherwise repeat itself
        // until the tokens run out, leaving the last call cut off).
        let more = "{0,\(Self.maxParallelCalls - 1)}"
        let required = choice != .auto
        var triggers: [String] = []
        switch format {
        case .hermes:
            grammar += #"tagged-call ::= "<tool_call>" ws call ws "</tool_call>""# + "\n"
            grammar += "root ::= tagged-call" + (parallel ? " ( ws tagged-call )\(more)" : "") + "\n"
            triggers = required ? [] : ["<tool_call>"]
        case .llama3:
            grammar += "root ::= call" + (parallel ? " ( ws \";\" ws call )\(more)" : "") + "\n"
            triggers = required ? [] : [#"{"name""#]
        case .mistral:
            if argumentTags {
                grammar += #"tagged-call ::= "[TOOL_CALLS]" ( "# + tagged.joined(separator: " | ") + " )\n"
                grammar += "root ::= tagged-call" + (parallel ? " tagged-call\(more)" : "") + "\n"
            } else {
                grammar += #"root ::= "[TOOL_CALLS]" ws "[" ws call "# + (parallel ? #"( ws "," ws call )"# + more + " " : "") + #"ws "]""# + "\n"
            }
            triggers = required ? [] : ["[TOOL_CALLS]"]
        case .generic:
            var answers = [#""{" ws "\"tool_call\"" ws ":" ws call ws "}""#]
            if parallel { answers.append(#""{" ws "\"tool_calls\"" ws ":" ws "[" ws call ( ws "," ws call )"# + more + #" ws "]" ws "}""#) }
            if !required { answers.append(#""{" ws "\"response\"" ws ":" ws json-string ws "}""#) }
            grammar += "root ::= ws ( " + answers.joined(separator: " | ") + " ) ws\n"
        }
        return (grammar + (try JSONGrammar.rules(for: tools.map(\.parameters), name: "args")), triggers)
    }

    /// The most calls one answer may make.
    public static let maxParallelCalls = 8

    /// The texts of the format's tags and of thinking, which must stay in the output where the
    /// vocabulary has them as special tokens (the parser reads them).
    public static let formatTags = ["<tool_call>", "</tool_call>", "<|python_tag|>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<think>", "</think>"]

    /// The parser for this conversation's answers.
    public func parser(splitsReasoning: Bool = true, startsInReasoning: Bool = false) -> ToolCallParser {
        ToolCallParser(format: format, parsesToolCalls: isActive, splitsReasoning: splitsReasoning, startsInReasoning: startsInReasoning)
    }
}

extension LlamaModel {
    /// The tokens of `texts` that the vocabulary holds as single special tokens (to be kept in
    /// the output text; see `GenerationParameters.keptSpecialTokens`).
    public func specialTokens(_ texts: [String]) -> Set<TokenID> {
        Set(texts.compactMap { tokenizer.tokenID($0) }.filter { tokenizer.tokenType($0) == .control || tokenizer.tokenType($0) == .userDefined })
    }
}

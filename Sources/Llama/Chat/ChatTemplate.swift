import Jinja
import Tokenizers

/// One message of a conversation.
public struct ChatMessage: Sendable, Codable, Equatable {
    /// "system", "user", "assistant" or "tool" (templates may know others).
    public var role: String
    public var content: String
    /// The calls an assistant turn made.
    public var toolCalls: [ToolCall]?
    /// For a "tool" turn: the id of the call it answers.
    public var toolCallID: String?
    /// For a "tool" turn: the function that answered.
    public var name: String?

    public init(role: String, content: String, toolCalls: [ToolCall]? = nil, toolCallID: String? = nil, name: String? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: "system", content: content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: "user", content: content) }
    public static func assistant(_ content: String, toolCalls: [ToolCall]? = nil) -> ChatMessage {
        ChatMessage(role: "assistant", content: content, toolCalls: toolCalls)
    }
    /// The result of a call, as the model will read it.
    public static func tool(_ content: String, callID: String, name: String? = nil) -> ChatMessage {
        ChatMessage(role: "tool", content: content, toolCallID: callID, name: name)
    }

    /// The message as chat templates read it (Hugging Face's shape): an assistant turn with calls
    /// and no text has `content` none, as OpenAI clients send it.
    public var json: JinjaValue {
        var pairs: [(String, JinjaValue)] = [("role", .string(role))]
        let calls = toolCalls ?? []
        pairs.append(("content", calls.isEmpty || !content.isEmpty ? .string(content) : .none))
        if !calls.isEmpty { pairs.append(("tool_calls", .array(calls.map(\.json)))) }
        if let toolCallID { pairs.append(("tool_call_id", .string(toolCallID))) }
        if let name { pairs.append(("name", .string(name))) }
        return .object(pairs)
    }
}

/// Turns a conversation into the prompt text a chat model was trained on. Either one of the
/// built-in formats, or the Jinja template a GGUF file carries (`tokenizer.chat_template`),
/// parsed once and rendered as Hugging Face's `apply_chat_template` renders it.
public struct ChatTemplate: Sendable {
    /// The formats written out in Swift, for files without a usable template.
    public enum Format: String, Sendable, CaseIterable, Codable {
        /// Meta's Llama 2 chat: `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s>`.
        case llama2
        /// Llama 3 instruct: `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`.
        case llama3
        /// ChatML (SmolLM2, Qwen): `<|im_start|>{role}\n{content}<|im_end|>\n`.
        case chatml
        /// Mistral instruct: `<s>[INST] {user} [/INST]{answer}</s>`, the system prompt before the first user turn.
        case mistral
        /// Zephyr (TinyLlama chat): `<|{role}|>\n{content}</s>\n`.
        case zephyr
    }

    enum Kind: Sendable {
        case builtin(Format)
        case jinja(Template)
    }

    let kind: Kind
    /// "llama2", ..., or "jinja" for a template from the model file.
    public let name: String
    /// The Jinja source, when this template is one.
    public let source: String?

    public init(format: Format) {
        kind = .builtin(format)
        name = format.rawValue
        source = nil
    }

    /// A Jinja chat template (as in `tokenizer_config.json` or a GGUF's `tokenizer.chat_template`).
    public init(jinja source: String) throws(JinjaError) {
        kind = .jinja(try Template(source))
        name = "jinja"
        self.source = source
    }

    /// The template for a model: its own Jinja template when it has one that parses, else the
    /// built-in format its template or vocabulary points to.
    public static func forModel(templateSource: String?, tokenizer: Tokenizer) -> ChatTemplate {
        if let templateSource, let template = try? ChatTemplate(jinja: templateSource) { return template }
        return ChatTemplate(format: detectFormat(templateSource: templateSource, tokenizer: tokenizer))
    }

    /// Guesses the format from marker strings in a template (as llama.cpp does), else from the vocabulary.
    public static func detectFormat(templateSource: String?, tokenizer: Tokenizer) -> Format {
        if let t = templateSource {
            if t.contains("<|im_start|>") { return .chatml }
            if t.contains("<|start_header_id|>") { return .llama3 }
            if t.contains("<<SYS>>") { return .llama2 }
            if t.contains("[INST]") { return .mistral }
            if t.contains("<|user|>") { return .zephyr }
        }
        if tokenizer.tokenID("<|im_start|>") != nil { return .chatml }
        if tokenizer.tokenID("<|start_header_id|>") != nil { return .llama3 }
        return .llama2
    }

    /// The prompt text for `messages`; with `addGenerationPrompt`, ending where the assistant's
    /// answer begins. `bos` and `eos` are the model's special tokens as text; the result is meant
    /// to be tokenized with special tokens parsed and without adding BOS again. `tools` are
    /// passed to a Jinja template as `tools`, and `variables` beside the others (a request's
    /// `chat_template_kwargs`, such as `enable_thinking`); the built-in formats know neither.
    /// A model file's template is untrusted: `limits` bound what rendering may spend.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, bos: String, eos: String,
                       tools: [ToolSpec] = [], variables: [String: JinjaValue] = [:],
                       limits: Template.Limits = Template.Limits()) throws -> String {
        switch kind {
        case .jinja(let template):
            var all = variables
            all["messages"] = .array(messages.map(\.json))
            all["add_generation_prompt"] = .bool(addGenerationPrompt)
            all["bos_token"] = .string(bos)
            all["eos_token"] = .string(eos)
            if !tools.isEmpty { all["tools"] = .array(tools.map(\.json)) }
            return try template.render(all, limits: limits)
        case .builtin(let format):
            return try Self.render(format, messages, addGenerationPrompt: addGenerationPrompt, bos: bos, eos: eos)
        }
    }

    static func render(_ format: Format, _ messages: [ChatMessage], addGenerationPrompt: Bool, bos: String, eos: String) throws -> String {
        var out = ""
        switch format {
        case .llama2:
            // Meta's chat_completion: the system prompt folds into the first user message; each
            // (user, answer) pair is BOS [INST] user [/INST] answer EOS; the last user message is
            // BOS [INST] user [/INST]. Contents are stripped.
            var dialog = messages
            if let first = dialog.first, first.role == "system" {
                dialog.removeFirst()
                let user = dialog.first?.content ?? ""
                let merged = "<<SYS>>\n" + first.content + "\n<</SYS>>\n\n" + user
                if dialog.isEmpty { dialog = [.user(merged)] } else { dialog[0].content = merged }
            }
            for (i, message) in dialog.enumerated() {
                let expected = i % 2 == 0 ? "user" : "assistant"
                guard message.role == expected else {
                    throw LlamaError.template("Llama 2 chat needs the roles to alternate user/assistant/user/... after an optional system message; message \(i + 1) is '\(message.role)'")
                }
                let text = message.content.strippingWhitespace
                out += i % 2 == 0 ? "\(bos)[INST] \(text) [/INST]" : " \(text) \(eos)"
            }
        case .llama3:
            out = bos
            for m in messages { out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(m.content.strippingWhitespace)<|eot_id|>" }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .chatml:
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .mistral:
            out = bos
            var system: String? = nil
            for m in messages {
                switch m.role {
                case "system": system = m.content
                case "user":
                    let content = system.map { $0 + "\n\n" + m.content } ?? m.content
                    system = nil
                    out += "[INST] \(content) [/INST]"
                default: out += m.content + eos
                }
            }
        case .zephyr:
            for m in messages { out += "<|\(m.role)|>\n\(m.content)\(eos)\n" }
            if addGenerationPrompt { out += "<|assistant|>\n" }
        }
        return out
    }
}


extension String {
    /// Python's `str.strip()`: Unicode whitespace off both ends.
    var strippingWhitespace: String {
        var scalars = Substring(self).unicodeScalars[...]
        while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() }
        while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}

extension LlamaModel {
    /// The model's special tokens as text, for templates (`<s>`, `</s>`, `<|im_end|>`, ...).
    public var bosText: String { tokenizer.bos.map { tokenizer.decode([$0], renderSpecial: true) } ?? "" }
    public var eosText: String { tokenizer.eos.map { tokenizer.decode([$0], renderSpecial: true) } ?? "" }

    /// The prompt tokens of a conversation in `template` (by default the model's own), ending
    /// where the assistant's answer begins; special tokens parsed, BOS once where the model wants it.
    /// `checkText` sees the rendered text before it is tokenized (to refuse one far too long).
    /// With `toolUse`, the conversation is prepared for its tools first (see `ToolUse.messages`).
    public func chatPromptTokens(_ messages: [ChatMessage], template: ChatTemplate? = nil, toolUse: ToolUse? = nil,
                                 variables: [String: JinjaValue] = [:], limits: Template.Limits = Template.Limits(),
                                 checkText: (String) throws -> Void = { _ in }) throws -> [TokenID] {
        let template = template ?? chatTemplate
        let text: String
        if let toolUse {
            text = try toolUse.render(messages, template: template, bos: bosText, eos: eosText, variables: variables, limits: limits)
        } else {
            text = try template.render(messages, addGenerationPrompt: true, bos: bosText, eos: eosText, variables: variables, limits: limits)
        }
        try checkText(text)
        var tokens = tokenizer.encode(text, addSpecial: false, parseSpecial: true)
        if tokenizer.definition.addBOS, let bos = tokenizer.bos, tokens.first != bos {
            tokens.insert(bos, at: 0)
        }
        return tokens
    }
}

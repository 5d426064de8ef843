import Foundation
import Jinja
import Llama
import Testing
import TestSupport

/// The built-in chat formats against jinja2's renderings of the official templates they stand
/// for (Tests/JinjaTests/Golden, from Scripts/make_golden_templates.py), and the Llama 2 format
/// against the token ids Meta's reference code builds.
@Suite struct ChatTemplateTests {
    static let golden: JinjaValue = {
        let url = URL(fileURLWithPath: Fixtures.projectRoot + "/Tests/JinjaTests/Golden/templates.json")
        return try! JinjaValue(json: String(contentsOf: url, encoding: .utf8))
    }()

    static func messages(_ conversation: String) -> [ChatMessage] {
        guard case .array(let items) = golden["conversations"][conversation] else { return [] }
        return items.map { ChatMessage(role: $0["role"].text, content: $0["content"].text) }
    }

    /// (built-in format, official template, conversations the official template covers)
    static let pairs: [(ChatTemplate.Format, String, @Sendable (String) -> Bool)] = [
        (.llama2, "meta-llama-Llama-2-7b-chat-hf", { _ in true }),
        (.llama3, "meta-llama-Meta-Llama-3-8B-Instruct", { _ in true }),
        (.mistral, "mistralai-Mistral-7B-Instruct-v0.2", { !$0.contains("system") }),
        (.zephyr, "TinyLlama-TinyLlama-1.1B-Chat-v1.0", { _ in true }),
        (.chatml, "Qwen-Qwen2-7B-Instruct", { $0.contains("system") }),  // Qwen adds a system prompt when there is none
    ]

    @Test(arguments: 0..<5)
    func builtInFormatMatchesItsOfficialTemplate(_ index: Int) throws {
        let (format, name, covers) = Self.pairs[index]
        guard case .array(let cases) = Self.golden["cases"] else { Issue.record("no golden cases"); return }
        var checked = 0
        for c in cases where c["template"] == .string(name) {
            let conversation = c["conversation"].text
            // The built-in formats have no tool syntax; conversations with tools are the Jinja templates' own.
            guard covers(conversation), c["tools"] != .bool(true), case .string(let expected) = c["output"] else { continue }
            let rendered = try ChatTemplate(format: format).render(Self.messages(conversation), addGenerationPrompt: c["add_generation_prompt"] == .bool(true),
                                                                   bos: "<s>", eos: "</s>")
            #expect(rendered == expected, "\(format) / \(conversation)")
            checked += 1
        }
        #expect(checked >= 4)
    }

    @Test func llama2ErrorsLikeTheOfficialTemplateOnRolesOutOfOrder() {
        #expect(throws: LlamaError.self) {
            try ChatTemplate(format: .llama2).render([.user("a"), .user("b")], bos: "<s>", eos: "</s>")
        }
    }

    struct MetaDialog: Decodable {
        let conversation: String
        let tokens: [Int32]
    }

    /// Meta's chat_completion, token for token: 1, 2 and 3 turns, with and without a system prompt.
    @Test func llama2TokensEqualMetasReferenceCode() throws {
        let url = URL(fileURLWithPath: Fixtures.projectRoot + "/Tests/JinjaTests/Golden/llama2_meta.json")
        let dialogs = try JSONDecoder().decode([MetaDialog].self, from: Data(contentsOf: url))
        let tokenizer = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-spm.gguf")
        #expect(dialogs.count == 6)
        for dialog in dialogs {
            let text = try ChatTemplate(format: .llama2).render(Self.messages(dialog.conversation), bos: "<s>", eos: "</s>")
            let tokens = tokenizer.encode(text, addSpecial: false, parseSpecial: true)
            #expect(tokens == dialog.tokens, "\(dialog.conversation)")
        }
    }

    @Test func formatIsDetectedFromTemplateOrVocabulary() throws {
        let spm = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-spm.gguf")
        let bpe = try Fixtures.tokenizer(gguf: "llamacpp-vocab/ggml-vocab-llama-bpe.gguf")
        #expect(ChatTemplate.detectFormat(templateSource: nil, tokenizer: spm) == .llama2)
        #expect(ChatTemplate.detectFormat(templateSource: nil, tokenizer: bpe) == .llama3)
        #expect(ChatTemplate.detectFormat(templateSource: "{{ '<|im_start|>' }}", tokenizer: spm) == .chatml)
        #expect(ChatTemplate.detectFormat(templateSource: "[INST] {{ x }}", tokenizer: spm) == .mistral)
        // A template the interpreter cannot parse falls back to the format it points to.
        let broken = ChatTemplate.forModel(templateSource: "{% if %}<<SYS>>[INST]", tokenizer: spm)
        #expect(broken.name == "llama2")
        let jinja = ChatTemplate.forModel(templateSource: "{{ messages[0].content }}", tokenizer: spm)
        #expect(jinja.name == "jinja")
        #expect(try jinja.render([.user("hi")], bos: "", eos: "") == "hi")
    }
}

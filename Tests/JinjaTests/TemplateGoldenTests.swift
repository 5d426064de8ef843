import Foundation
import Jinja
import Testing

/// Real chat templates rendered by our interpreter against the `jinja2` package's renderings
/// (Scripts/make_golden_templates.py), for every conversation (those with tool calls and results
/// rendered with `tools`), with and without the generation prompt.
@Suite struct TemplateGoldenTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    static func golden() throws -> JinjaValue {
        let text = try String(contentsOf: folder.appendingPathComponent("Golden/templates.json"), encoding: .utf8)
        return try JinjaValue(json: text)
    }

    static func templateNames() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("Templates").path)
            .filter { $0.hasSuffix(".jinja") }.map { String($0.dropLast(6)) }.sorted()
    }

    @Test(arguments: try templateNames())
    func rendersLikeJinja2(_ name: String) throws {
        let source = try String(contentsOf: Self.folder.appendingPathComponent("Templates/\(name).jinja"), encoding: .utf8)
        let template = try Template(source)  // parsed once, rendered for every case
        let golden = try Self.golden()
        guard case .array(let cases) = golden["cases"] else { Issue.record("no cases"); return }
        guard case .int(let now) = golden["now"] else { Issue.record("no clock in the golden file"); return }
        var checked = 0
        for c in cases where c["template"] == .string(name) {
            guard case .string(let conversation) = c["conversation"] else { continue }
            var variables: [String: JinjaValue] = [
                "messages": golden["conversations"][conversation],
                "add_generation_prompt": c["add_generation_prompt"],
                "date_string": golden["date_string"],
            ]
            if case .object(let special) = golden["special"] { for (k, v) in special { variables[k] = v } }
            if c["tools"] == .bool(true) { variables["tools"] = golden["tools"] }
            let label = "\(name) / \(conversation) / generation prompt \(c["add_generation_prompt"].text)"
            if case .string(let expected) = c["output"] {
                do {
                    let output = try template.render(variables, now: now)
                    #expect(output == expected, "\(label)")
                } catch {
                    Issue.record("\(label): \(error)")
                }
            } else {
                #expect(throws: JinjaError.self, "\(label) should fail as jinja2 does") { try template.render(variables, now: now) }
            }
            checked += 1
        }
        #expect(checked > 0, "no golden renderings for \(name); rerun Scripts/make_golden_templates.py")
    }

    @Test func raiseExceptionCarriesTheTemplatesMessage() throws {
        let source = try String(contentsOf: Self.folder.appendingPathComponent("Templates/meta-llama-Llama-2-7b-chat-hf.jinja"), encoding: .utf8)
        let messages: JinjaValue = [["role": "user", "content": "a"], ["role": "user", "content": "b"]]
        #expect(throws: JinjaError("Conversation roles must alternate user/assistant/user/assistant/...")) {
            try Template(source).render(["messages": messages, "bos_token": "<s>", "eos_token": "</s>"])
        }
    }
}

import Jinja
import Llama
import Testing
import TestSupport

/// Model outputs in each family's tool-call format (as the families' chat templates tell the
/// model to write them), with and without thinking, one and several calls, and the ways such
/// outputs go wrong: taken apart whole, and piece by piece as a stream, which must add up to the
/// same answer.
@Suite struct ToolCallParserTests {
    struct Case: CustomStringConvertible, Sendable {
        let label: String
        let format: ToolCallFormat
        let text: String
        let content: String
        var reasoning: String? = nil
        var calls: [(String, String)] = []  // name, arguments (compared as JSON)
        var startsInReasoning = false
        var description: String { label }
    }

    static let cases: [Case] = [
        // Hermes / Qwen
        Case(label: "hermes one call", format: .hermes,
             text: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
             content: "", calls: [("get_weather", #"{"city": "Paris"}"#)]),
        Case(label: "hermes parallel calls", format: .hermes,
             text: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"Europe/Paris\"}}\n</tool_call>",
             content: "", calls: [("get_weather", #"{"city": "Paris", "unit": "celsius"}"#), ("get_time", #"{"timezone": "Europe/Paris"}"#)]),
        Case(label: "hermes text before and after", format: .hermes,
             text: "Let me look that up.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"timezone\": \"UTC\"}}\n</tool_call>\nOne moment.",
             content: "Let me look that up.\n\nOne moment.", calls: [("get_time", #"{"timezone": "UTC"}"#)]),
        Case(label: "qwen3 thinking, then a call", format: .hermes,
             text: "<think>\nThe user wants the weather; I should call get_weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}\n</tool_call>",
             content: "", reasoning: "The user wants the weather; I should call get_weather.", calls: [("get_weather", #"{"city": "Lyon"}"#)]),
        Case(label: "thinking opened by the prompt", format: .hermes,
             text: "Short thought.\n</think>\n\nParis is sunny.", content: "Paris is sunny.", reasoning: "Short thought.", startsInReasoning: true),
        Case(label: "thinking never closed", format: .hermes,
             text: "<think>\nStill thinking when the tokens ran out", content: "", reasoning: "Still thinking when the tokens ran out"),
        Case(label: "hermes closing tag missing at the end", format: .hermes,
             text: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}",
             content: "", calls: [("get_weather", #"{"city": "Oslo"}"#)]),
        Case(label: "hermes closing tag inside an argument", format: .hermes,
             text: "<tool_call>\n{\"name\": \"echo\", \"arguments\": {\"text\": \"a </tool_call> b\"}}\n</tool_call>",
             content: "", calls: [("echo", #"{"text": "a </tool_call> b"}"#)]),
        Case(label: "hermes arguments as a JSON string", format: .hermes,
             text: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}\n</tool_call>",
             content: "", calls: [("get_weather", #"{"city": "Rome"}"#)]),
        Case(label: "hermes arguments missing", format: .hermes,
             text: "<tool_call>\n{\"name\": \"get_time\"}\n</tool_call>", content: "", calls: [("get_time", "{}")]),
        Case(label: "hermes arguments not an object", format: .hermes,
             text: "<tool_call>{\"name\": \"sum\", \"arguments\": [1, 2, 3]}</tool_call>", content: "", calls: [("sum", "[1, 2, 3]")]),
        Case(label: "hermes parameters key", format: .hermes,
             text: "<tool_call>{\"name\": \"get_time\", \"parameters\": {\"timezone\": \"UTC\"}}</tool_call>",
             content: "", calls: [("get_time", #"{"timezone": "UTC"}"#)]),
        Case(label: "hermes malformed JSON stays text", format: .hermes,
             text: "<tool_call>\n{name: get_weather}\n</tool_call>", content: "<tool_call>\n{name: get_weather}\n</tool_call>"),
        Case(label: "hermes block without a name stays text", format: .hermes,
             text: "<tool_call>{\"arguments\": {}}</tool_call>", content: "<tool_call>{\"arguments\": {}}</tool_call>"),
        Case(label: "hermes nested arguments, escapes, unicode", format: .hermes,
             text: "<tool_call>{\"name\": \"save\", \"arguments\": {\"note\": {\"title\": \"Caf\\u00e9 \\\"Lux\\\" 🦙\", \"tags\": [\"a\", {\"b\": null}]}}}</tool_call>",
             content: "", calls: [("save", #"{"note": {"title": "Café \"Lux\" 🦙", "tags": ["a", {"b": null}]}}"#)]),
        Case(label: "hermes junk before the closing tag", format: .hermes,
             text: "<tool_call>{\"name\": \"get_time\", \"arguments\": {}} oops</tool_call>Done.", content: "Done.", calls: [("get_time", "{}")]),
        Case(label: "hermes second call cut off", format: .hermes,
             text: "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"argu",
             content: "", calls: [("a", "{}"), ("b", "")]),
        Case(label: "plain answer", format: .hermes, text: "The capital of France is Paris.", content: "The capital of France is Paris."),
        // Llama 3.x
        Case(label: "llama3 JSON call", format: .llama3,
             text: "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", content: "", calls: [("get_weather", #"{"city": "Paris"}"#)]),
        Case(label: "llama3 python tag", format: .llama3,
             text: "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {\"timezone\": \"UTC\"}}", content: "", calls: [("get_time", #"{"timezone": "UTC"}"#)]),
        Case(label: "llama3 two calls", format: .llama3,
             text: "{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"parameters\": {\"y\": 2}}",
             content: "", calls: [("a", #"{"x": 1}"#), ("b", #"{"y": 2}"#)]),
        Case(label: "llama3 code after the python tag", format: .llama3,
             text: "<|python_tag|>print(6 * 7)", content: "", calls: [("python", #"{"code": "print(6 * 7)"}"#)]),
        Case(label: "llama3 JSON that is not a call", format: .llama3, text: "{\"answer\": 42}", content: "{\"answer\": 42}"),
        Case(label: "llama3 text", format: .llama3, text: "It is sunny in Paris.", content: "It is sunny in Paris."),
        // Mistral
        Case(label: "mistral list", format: .mistral,
             text: "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {\"timezone\": \"CET\"}}]",
             content: "", calls: [("get_weather", #"{"city": "Paris"}"#), ("get_time", #"{"timezone": "CET"}"#)]),
        Case(label: "mistral args tags", format: .mistral,
             text: "Checking.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{\"timezone\": \"CET\"}",
             content: "Checking.", calls: [("get_weather", #"{"city": "Paris"}"#), ("get_time", #"{"timezone": "CET"}"#)]),
        Case(label: "mistral call id tag", format: .mistral,
             text: "[TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{\"timezone\": \"UTC\"}", content: "", calls: [("get_time", #"{"timezone": "UTC"}"#)]),
        Case(label: "mistral malformed list stays text", format: .mistral,
             text: "[TOOL_CALLS][{oops}]", content: "[TOOL_CALLS][{oops}]"),
        // Generic
        Case(label: "generic call", format: .generic,
             text: "{\"tool_call\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}", content: "", calls: [("get_weather", #"{"city": "Paris"}"#)]),
        Case(label: "generic calls", format: .generic,
             text: "{\"tool_calls\": [{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"k\": \"v\"}}]}",
             content: "", calls: [("a", "{}"), ("b", #"{"k": "v"}"#)]),
        Case(label: "generic response", format: .generic,
             text: "{\"response\": \"It is 18 \\u00b0C and \\\"clear\\\".\\nEnjoy!\"}", content: "It is 18 °C and \"clear\".\nEnjoy!"),
        Case(label: "generic not JSON", format: .generic, text: "Sorry, I cannot.", content: "Sorry, I cannot."),
        Case(label: "generic cut off", format: .generic, text: "{\"tool_call\": {\"name\": \"a\", \"argum", content: "", calls: [("a", "")]),
        Case(label: "hermes cut off inside the arguments", format: .hermes,
             text: "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par", content: "", calls: [("get_weather", "{\"city\": \"Par")]),
    ]

    static func parser(_ c: Case) -> ToolCallParser {
        ToolCallParser(format: c.format, startsInReasoning: c.startsInReasoning, idPrefix: c.format == .mistral ? "abcde" : "call_")
    }

    @Test(arguments: cases)
    func parsesWhole(_ c: Case) throws {
        let answer = Self.parser(c).parse(c.text)
        #expect(answer.content == c.content)
        #expect(answer.reasoning == c.reasoning)
        #expect(answer.toolCalls.map(\.name) == c.calls.map(\.0))
        for (call, expected) in zip(answer.toolCalls, c.calls) {
            // Whole arguments compare as JSON; a cut-off call keeps the text written so far.
            if let value = try? JinjaValue(json: expected.1) {
                #expect(try JinjaValue(json: call.arguments) == value, "\(call.arguments)")
            } else {
                #expect(call.arguments == expected.1)
            }
        }
        #expect(Set(answer.toolCalls.map(\.id)).count == answer.toolCalls.count)
        if c.format == .mistral {
            #expect(answer.toolCalls.allSatisfy { $0.id.count == 9 && $0.id.allSatisfy { $0.isLetter || $0.isNumber } })
        }
    }

    /// The deltas of a stream, in pieces of every size from 1 to 7 characters, add up to the whole
    /// answer: the same text, thinking, calls, ids and argument text; each call's id and name come
    /// first, and nothing is sent that is later taken back.
    @Test(arguments: cases)
    func streamedPiecesAddUpToTheWhole(_ c: Case) {
        let whole = Self.parser(c).parse(c.text)
        for size in 1...7 {
            var stream = ToolCallStream(parser: Self.parser(c))
            var deltas: [ToolCallStream.Delta] = []
            var i = c.text.startIndex
            while i < c.text.endIndex {
                let j = c.text.index(i, offsetBy: size, limitedBy: c.text.endIndex) ?? c.text.endIndex
                deltas += stream.add(String(c.text[i..<j]))
                i = j
            }
            let (last, answer) = stream.finish()
            deltas += last
            #expect(answer == whole)
            var content = "", reasoning = "", calls: [ToolCall] = []
            for delta in deltas {
                switch delta {
                case .content(let s): content += s
                case .reasoning(let s): reasoning += s
                case .toolCall(let index, let id, let name, let arguments):
                    if index == calls.count {
                        guard let id, let name else { Issue.record("call \(index) began without id and name"); return }
                        calls.append(ToolCall(id: id, name: name, arguments: arguments))
                    } else {
                        #expect(id == nil && name == nil)
                        calls[index].arguments += arguments
                    }
                }
            }
            #expect(content == whole.content, "pieces of \(size)")
            #expect(reasoning == (whole.reasoning ?? ""), "pieces of \(size)")
            #expect(calls == whole.toolCalls, "pieces of \(size)")
        }
    }

    /// Each format's grammar takes that format's calls, with arguments that follow the schema,
    /// and refuses arguments that do not, unknown functions and (for `auto`) nothing else.
    @Test func grammarsHoldCallsToTheSchemas() throws {
        let tools = [ToolSpec(name: "get_weather", parameters: ["type": "object", "properties": ["city": ["type": "string"], "days": ["type": "integer"]], "required": ["city"]]),
                     ToolSpec(name: "get_time")]
        let templates: [(String, String, [String], [String])] = [
            ("{{ tools }}<tool_call>", "hermes",
             ["<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>",
              "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>"],
             ["<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"days\": 2}}</tool_call>",
              "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": 3}}</tool_call>",
              "<tool_call>{\"name\": \"launch\", \"arguments\": {}}</tool_call>"]),
            ("<|start_header_id|>ipython{{ tools }}", "llama3",
             ["{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}"],
             ["{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"]),
            ("[TOOL_CALLS]{{ tools }}", "mistral",
             ["[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {}}]"],
             ["[TOOL_CALLS][]"]),
            ("[TOOL_CALLS][ARGS]{{ tools }}", "mistral",
             ["[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}"],
             ["[TOOL_CALLS]get_weather[ARGS]{}"]),
            ("<|im_start|>", "generic",
             ["{\"tool_call\": {\"name\": \"get_time\", \"arguments\": {}}}", "{\"response\": \"Hello\"}",
              "{\"tool_calls\": [{\"name\": \"get_time\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]}"],
             ["Hello", "{\"tool_call\": {\"name\": \"get_weather\", \"arguments\": {}}}"]),
        ]
        for (source, format, good, bad) in templates {
            let use = ToolUse(tools: tools, template: try ChatTemplate(jinja: source))
            #expect(use.format.rawValue == format)
            let (grammar, triggers) = try #require(try use.grammar())
            #expect(triggers.isEmpty == (format == "generic"), "\(format)")
            for text in good { #expect(try GrammarCheck.accepts(grammar, text), "\(format): \(text)") }
            for text in bad { #expect(try !GrammarCheck.accepts(grammar, text), "\(format): \(text)") }
            // required: the same grammar from the first token; generic then has no plain answer.
            let required = try #require(try ToolUse(tools: tools, choice: .required, template: try ChatTemplate(jinja: source)).grammar())
            #expect(required.triggers.isEmpty)
            if format == "generic" { #expect(try !GrammarCheck.accepts(required.grammar, "{\"response\": \"Hello\"}")) }
        }
        // A named function: only it; more calls than the cap: refused.
        let named = try #require(try ToolUse(tools: tools, choice: .function("get_time"), template: try ChatTemplate(jinja: "<|im_start|>")).grammar())
        #expect(try !GrammarCheck.accepts(named.grammar, "{\"tool_call\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}}"))
        let nine = Array(repeating: "{\"name\": \"get_time\", \"arguments\": {}}", count: 9)
        let generic = try #require(try ToolUse(tools: tools, template: try ChatTemplate(jinja: "<|im_start|>")).grammar())
        #expect(try GrammarCheck.accepts(generic.grammar, "{\"tool_calls\": [" + nine.dropLast().joined(separator: ", ") + "]}"))
        #expect(try !GrammarCheck.accepts(generic.grammar, "{\"tool_calls\": [" + nine.joined(separator: ", ") + "]}"))
    }

    /// A template without tool syntax: the system message describes the tools and the answer;
    /// calls in the history become that JSON, results user turns (parallel ones together).
    @Test func conversationsForTemplatesWithoutTools() throws {
        let use = ToolUse(tools: [ToolSpec(name: "get_time", description: "The time.")], template: ChatTemplate(format: .chatml))
        let messages = use.messages([.user("Time?"), .assistant("", toolCalls: [ToolCall(id: "c1", name: "get_time", arguments: "{}"),
                                                                                 ToolCall(id: "c2", name: "get_time", arguments: "{\"tz\": \"UTC\"}")]),
                                     .tool("10:00", callID: "c1", name: "get_time"), .tool("09:00", callID: "c2", name: "get_time")])
        #expect(messages.map(\.role) == ["system", "user", "assistant", "user"])
        #expect(messages[0].content.contains("get_time") && messages[0].content.contains("\"response\""))
        #expect(messages[2].content == #"{"tool_calls": [{"name": "get_time", "arguments": {}}, {"name": "get_time", "arguments": {"tz": "UTC"}}]}"#)
        #expect(messages[3].content.contains("10:00") && messages[3].content.contains("09:00"))
        // With tool_choice none the answer is text, and earlier calls are told in words.
        let none = ToolUse(tools: [ToolSpec(name: "get_time")], choice: .none, template: ChatTemplate(format: .chatml))
        #expect(none.messages([.user("Time?"), .assistant("", toolCalls: [ToolCall(id: "c1", name: "get_time", arguments: "{}")])]).last?.content == "(I called get_time with {}.)")
        #expect(ToolUse(tools: [], choice: .function("x"), template: ChatTemplate(format: .chatml)).isActive == false)
        #expect(throws: LlamaError.self) { try ToolUse(tools: [ToolSpec(name: "a")], choice: .function("b"), template: ChatTemplate(format: .chatml)).validate() }
    }

    @Test func formatsFromTemplates() {
        #expect(ToolCallFormat.detect(templateSource: "{{ '<tool_call>' }}") == .hermes)
        #expect(ToolCallFormat.detect(templateSource: "[TOOL_CALLS]") == .mistral)
        #expect(ToolCallFormat.detect(templateSource: "<|start_header_id|>ipython<|end_header_id|>") == .llama3)
        #expect(ToolCallFormat.detect(templateSource: "<|im_start|>") == .generic)
        #expect(ToolCallFormat.detect(templateSource: nil) == .generic)
    }
}

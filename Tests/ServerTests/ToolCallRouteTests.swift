import Foundation
import Hummingbird
import Llama
import LlamaServer
import Testing
import TestSupport

/// OpenAI tool calling in `/v1/chat/completions` on the default model (SmolLM2, whose template
/// has no tool format: the generic JSON answer, held to the tools' schemas by a grammar).
@Suite struct ToolCallRouteTests {
    /// An engine of its own: these tests send many requests, which must not fill the shared queue.
    static let engine = makeEngine(model: RouteTests.model, configuration: RouteTests.configuration())

    static func withApp<T>(_ test: (InProcessClient) async throws -> T) async throws -> T {
        try await RouteTests.withApp(engine: engine, test)
    }
    static let weather = #"{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}"#
    static let time = #"{"type": "function", "function": {"name": "get_time", "description": "The local time in a time zone.", "parameters": {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 30}}, "required": ["timezone"]}}}"#

    static func body(_ extra: String, messages: String = #"[{"role": "user", "content": "What is the weather in Paris?"}]"#) -> String {
        #"{"messages": \#(messages), "tools": [\#(weather), \#(time)], "max_tokens": 512\#(extra)}"#
    }

    static func message(_ response: InProcessClient.Reply) throws -> (message: [String: Any], finish: String?) {
        let object = try RouteTests.object(response)
        let choice = try #require((object["choices"] as? [[String: Any]])?.first)
        return (try #require(choice["message"] as? [String: Any]), choice["finish_reason"] as? String)
    }

    /// A call's arguments, checked against get_weather's or get_time's schema.
    static func checkArguments(_ call: [String: Any]) throws {
        let function = try #require(call["function"] as? [String: Any])
        let name = try #require(function["name"] as? String)
        let text = try #require(function["arguments"] as? String)
        let arguments = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        #expect((call["id"] as? String)?.isEmpty == false)
        #expect(call["type"] as? String == "function")
        switch name {
        case "get_weather":
            let city = try #require(arguments["city"] as? String, "\(text)")
            #expect(city.count <= 30)
            if let unit = arguments["unit"] { #expect(["celsius", "fahrenheit"].contains(unit as? String), "\(text)") }
            #expect(Set(arguments.keys).isSubset(of: ["city", "unit"]))
        case "get_time":
            #expect(arguments["timezone"] is String, "\(text)")
            #expect(Set(arguments.keys) == ["timezone"])
        default: Issue.record("unknown function \(name)")
        }
    }

    @Test func requiredGivesCallsThatFollowTheSchemaOnEverySeed() async throws {
        try await Self.withApp { client in
            for seed in 0..<20 {
                let response = try await RouteTests.post(client, "/v1/chat/completions", Self.body(#", "tool_choice": "required", "temperature": 0.9, "seed": \#(seed)"#))
                #expect(response.status == .ok, "\(String(buffer: response.body))")
                let (message, finish) = try Self.message(response)
                #expect(finish == "tool_calls", "seed \(seed): \(message)")
                let calls = try #require(message["tool_calls"] as? [[String: Any]], "seed \(seed): \(message)")
                #expect(!calls.isEmpty)
                for call in calls { try Self.checkArguments(call) }
            }
        }
    }

    @Test func aNamedFunctionIsTheOneCalled() async throws {
        try await Self.withApp { client in
            let response = try await RouteTests.post(client, "/v1/chat/completions",
                                                      Self.body(#", "tool_choice": {"type": "function", "function": {"name": "get_time"}}, "temperature": 0"#))
            let (message, finish) = try Self.message(response)
            #expect(finish == "tool_calls")
            let calls = try #require(message["tool_calls"] as? [[String: Any]])
            #expect(calls.allSatisfy { ($0["function"] as? [String: Any])?["name"] as? String == "get_time" })
            for call in calls { try Self.checkArguments(call) }
        }
    }

    @Test func noneNeverCalls() async throws {
        try await Self.withApp { client in
            for seed in 0..<3 {
                let response = try await RouteTests.post(client, "/v1/chat/completions", Self.body(#", "tool_choice": "none", "max_tokens": 24, "temperature": 0.9, "seed": \#(seed)"#))
                let (message, finish) = try Self.message(response)
                #expect(message["tool_calls"] == nil)
                #expect(message["content"] is String)
                #expect(finish == "stop" || finish == "length")
            }
        }
    }

    /// Streamed calls, rebuilt as a client rebuilds them (index, then id and name, then argument
    /// fragments), equal the whole answer's for the same seed (each from a fresh engine, so that
    /// neither reuses the other's cached prompt).
    @Test func streamedCallsEqualTheWholeOnes() async throws {
        func fresh<T>(_ test: (InProcessClient) async throws -> T) async throws -> T {
            let engine = RouteTests.freshEngine()
            defer { engine.scheduler.shutdown() }
            return try await RouteTests.withApp(engine: engine, test)
        }
        for seed in 0..<3 {
            let extra = #", "tool_choice": "required", "temperature": 0.9, "seed": \#(seed)"#
            let (whole, _) = try await fresh { try Self.message(try await RouteTests.post($0, "/v1/chat/completions", Self.body(extra))) }
            let wholeCalls = try #require(whole["tool_calls"] as? [[String: Any]])
            try await fresh { client in
                let events = try RouteTests.events(try await RouteTests.post(client, "/v1/chat/completions", Self.body(extra + #", "stream": true"#)))
                var rebuilt: [(id: String, name: String, arguments: String)] = []
                var finish: String? = nil
                for event in events {
                    guard let choice = (event["choices"] as? [[String: Any]])?.first else { continue }
                    if let reason = choice["finish_reason"] as? String { finish = reason }
                    let delta = choice["delta"] as? [String: Any] ?? [:]
                    for call in delta["tool_calls"] as? [[String: Any]] ?? [] {
                        let index = try #require(call["index"] as? Int)
                        let function = call["function"] as? [String: Any] ?? [:]
                        if index == rebuilt.count {
                            rebuilt.append((try #require(call["id"] as? String), try #require(function["name"] as? String), function["arguments"] as? String ?? ""))
                        } else {
                            #expect(call["id"] == nil)
                            rebuilt[index].arguments += function["arguments"] as? String ?? ""
                        }
                    }
                }
                #expect(finish == "tool_calls")
                #expect(rebuilt.map(\.name) == wholeCalls.map { ($0["function"] as? [String: Any])?["name"] as? String ?? "" })
                #expect(rebuilt.map(\.arguments) == wholeCalls.map { ($0["function"] as? [String: Any])?["arguments"] as? String ?? "" })
            }
        }
    }

    /// A call, then its result: the conversation goes on to a text answer. (The follow-up asks for
    /// text with `tool_choice: none`, as an agent does for its final answer: with `auto`, the
    /// 135M default model repeats its call.)
    @Test func aResultLeadsToAnAnswer() async throws {
        let messages = #"""
            [{"role": "user", "content": "What is the weather in Paris?"},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 18, \"sky\": \"clear\"}"}]
            """#
        try await Self.withApp { client in
            let response = try await RouteTests.post(client, "/v1/chat/completions", Self.body(#", "temperature": 0, "tool_choice": "none""#, messages: messages))
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            let (message, finish) = try Self.message(response)
            let content = try #require(message["content"] as? String, "\(message)")
            #expect(!content.isEmpty)
            #expect(message["tool_calls"] == nil)
            #expect(finish == "stop")
        }
    }

    @Test func badToolRequestsAreRefused() async throws {
        try await Self.withApp { client in
            let cases: [(String, String)] = [
                (#"{"messages": [{"role": "user", "content": "hi"}], "tools": {"a": 1}}"#, "tools"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}"#, "tools"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "code_interpreter"}]}"#, "tools"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}"#, "tools"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "strange"}}}}}]}"#, "tools"),
                (Self.body(#", "tool_choice": {"type": "function", "function": {"name": "nope"}}"#), "tool_choice"),
                (Self.body(#", "tool_choice": "sometimes""#), "tool_choice"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}"#, "tool_choice"),
                (Self.body(#", "response_format": {"type": "json_object"}"#), "tools"),
                (#"{"messages": [{"role": "assistant", "tool_calls": [{"id": "x"}]}]}"#, "messages"),
                (Self.body(#", "reasoning_format": "shouting""#), "reasoning_format"),
            ]
            for (body, param) in cases {
                let error = try RouteTests.error(try await RouteTests.post(client, "/v1/chat/completions", body), .badRequest)
                #expect(error["param"] as? String == param, "\(body): \(error)")
            }
        }
    }
}

/// Thinking, live: the default model under a thinking template (Qwen3.5's, ChatML like its own, whose prompt
/// ends inside `<think>`), so what it writes first is its reasoning; the budget closes the block.
@Suite struct LiveReasoningTests {
    static let template = try! ChatTemplate(jinja: String(contentsOfFile: Fixtures.projectRoot + "/Tests/JinjaTests/Templates/Qwen3.5-4B.jinja", encoding: .utf8))
    static let engine = makeEngine(model: RouteTests.model, configuration: { var c = RouteTests.configuration(); c.chatTemplate = template; return c }())

    static func ask(_ extra: String, budget: Int?) async throws -> (reasoning: String?, content: String?, completion: Int) {
        var configuration = RouteTests.configuration()
        configuration.chatTemplate = template
        configuration.reasoningBudget = budget
        return try await RouteTests.withApp(configuration, engine: engine) { client in
            let response = try await RouteTests.post(client, "/v1/chat/completions",
                                                      #"{"messages": [{"role": "user", "content": "Is 17 a prime number?"}], "max_tokens": 64, "temperature": 0.8, "seed": 3\#(extra)}"#)
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            let object = try RouteTests.object(response)
            let message = try #require(((object["choices"] as? [[String: Any]])?.first)?["message"] as? [String: Any])
            let usage = try #require(object["usage"] as? [String: Any])
            return (message["reasoning_content"] as? String, message["content"] as? String, usage["completion_tokens"] as? Int ?? 0)
        }
    }

    @Test func theBudgetEndsThinkingAndTheAnswerFollows() async throws {
        let free = try await Self.ask("", budget: nil)
        #expect(free.reasoning?.isEmpty == false, "the text before </think> is reasoning: \(free)")
        #expect(free.content?.contains("<think>") != true && free.content?.contains("</think>") != true)

        let cut = try await Self.ask("", budget: 6)
        let reasoning = try #require(cut.reasoning)
        // Six tokens of thinking, then the block is closed for the model, which goes on to answer.
        #expect(RouteTests.model.tokenizer.encode(reasoning, addSpecial: false).count <= 8, "\(reasoning)")
        #expect(cut.content?.isEmpty == false, "an answer after the cut: \(cut)")

        let kept = try await Self.ask(#", "reasoning_format": "none""#, budget: nil)
        #expect(kept.reasoning == nil && kept.content?.isEmpty == false)
    }
}

import Foundation
import Hummingbird
import Llama
import LlamaServer
import Testing
import TestSupport

/// Anthropic's Messages API in-process: its answer and event shapes, token counting, and every
/// bad request answered in its error shape (`Scripts/anthropic_integration.py` drives it with
/// the official client).
@Suite struct MessagesRouteTests {
    static let engine = makeEngine(model: RouteTests.model, configuration: RouteTests.configuration())

    static func post(_ client: InProcessClient, _ uri: String, _ body: String) async throws -> InProcessClient.Reply {
        try await RouteTests.post(client, uri, body, headers: [.init("anthropic-version")!: "2023-06-01"])
    }

    @Test func answersWholeAndStreamed() async throws {
        try await RouteTests.withApp(engine: Self.engine) { client in
            let body = #"{"model": "SmolLM2-135M-Instruct.Q4_1", "max_tokens": 12, "temperature": 0, "system": [{"type": "text", "text": "You are terse."}], "messages": [{"role": "user", "content": "Name a color."}]}"#
            let whole = try RouteTests.object(try await Self.post(client, "/v1/messages", body))
            #expect(whole["type"] as? String == "message" && whole["role"] as? String == "assistant")
            #expect((whole["id"] as? String)?.hasPrefix("msg_") == true)
            let blocks = try #require(whole["content"] as? [[String: Any]])
            #expect(blocks.first?["type"] as? String == "text")
            #expect(["end_turn", "max_tokens"].contains(whole["stop_reason"] as? String))
            let usage = try #require(whole["usage"] as? [String: Any])
            let counted = try RouteTests.object(try await Self.post(client, "/v1/messages/count_tokens", body))
            #expect(counted["input_tokens"] as? Int == usage["input_tokens"] as? Int)

            let stream = try await Self.post(client, "/v1/messages", String(body.dropLast()) + #", "stream": true}"#)
            let text = String(buffer: stream.body)
            let events = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { $0.components(separatedBy: "\n")[0] }
            #expect(events.first == "event: message_start" && events.last == "event: message_stop", "\(events)")
            #expect(events.contains("event: content_block_start") && events.contains("event: content_block_stop") && events.contains("event: message_delta"))
            var rebuilt = ""
            for chunk in text.components(separatedBy: "\n\n") where chunk.hasPrefix("event: content_block_delta") {
                let data = chunk.components(separatedBy: "\ndata: ")[1]
                let object = try #require(try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
                rebuilt += ((object["delta"] as? [String: Any])?["text"] as? String) ?? ""
            }
            #expect(rebuilt == blocks.first?["text"] as? String)
        }
    }

    @Test func badRequestsGetAnthropicsErrorShape() async throws {
        try await RouteTests.withApp(engine: Self.engine) { client in
            let cases = [
                #"{"messages": [{"role": "user", "content": "hi"}]}"#,
                #"{"max_tokens": 8, "messages": []}"#,
                #"{"max_tokens": 8, "messages": [{"role": "system", "content": "hi"}]}"#,
                #"{"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}"#,
                #"{"max_tokens": 8, "messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]}"#,
                #"{"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "temperature": 3}"#,
                #"{"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "f"}], "tool_choice": {"type": "sometimes"}}"#,
                #"{"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "f"}], "tool_choice": {"type": "tool", "name": "g"}}"#,
                #"{"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "stop_sequences": "x"}"#,
                "{not json",
            ]
            for body in cases {
                let reply = try await Self.post(client, "/v1/messages", body)
                #expect(reply.status == .badRequest, "\(body): \(String(buffer: reply.body))")
                let object = try RouteTests.object(reply)
                #expect(object["type"] as? String == "error", "\(body)")
                let error = try #require(object["error"] as? [String: Any])
                #expect(error["type"] as? String == "invalid_request_error" && error["message"] is String, "\(body)")
            }
            let missing = try RouteTests.object(try await Self.post(client, "/v1/messages", #"{"model": "claude-9", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}"#))
            #expect((missing["error"] as? [String: Any])?["type"] as? String == "not_found_error")
        }
    }
}

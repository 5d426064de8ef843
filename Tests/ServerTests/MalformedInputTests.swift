import Foundation
import Hummingbird
import Llama
import LlamaServer
import Testing
import TestSupport

/// Whatever arrives, the server answers with JSON: success or an OpenAI error, never a 500 and
/// never a crash. Random bytes, and every field of a valid request replaced by values of every
/// JSON type, on every route that reads a body.
@Suite struct MalformedInputTests {
    static let bases: [(String, String)] = [
        ("/v1/chat/completions", #"{"model": "SmolLM2-135M-Instruct.Q4_1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "max_completion_tokens": 2, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["x"], "presence_penalty": 0.1, "frequency_penalty": 0.1, "logit_bias": {"5": 1}, "response_format": {"type": "text"}, "stream": false, "stream_options": {"include_usage": true}, "user": "u", "n": 1}"#),
        ("/v1/completions", #"{"prompt": "Hi", "max_tokens": 2, "max_completion_tokens": 2, "temperature": 0.5, "top_k": 5, "min_p": 0.1, "echo": false, "stream": true}"#),
        ("/v1/embeddings", #"{"input": ["Hi", "there"], "encoding_format": "float", "dimensions": 576}"#),
        ("/tokenize", #"{"content": "Hi", "add_special": true, "with_pieces": false}"#),
        ("/detokenize", #"{"tokens": [1, 2, 3]}"#),
    ]
    static let replacements = ["null", "true", "-1", "0", "1e308", "-2.5", "\"\"", "\"text\"", "[]", "[1, \"a\", null]", "{}", "{\"a\": [1]}"]

    @discardableResult
    static func check(_ client: InProcessClient, _ uri: String, _ body: String) async throws -> Int {
        let reply = try await client.execute(uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: body))
        #expect([200, 400, 404, 413].contains(reply.status.code), "\(uri) \(body): \(reply.status)")
        let text = String(buffer: reply.body)
        if reply.headers[.contentType] == "text/event-stream" {
            #expect(text.hasSuffix("data: [DONE]\n\n"), "\(uri) \(body)")
            return reply.status.code
        }
        let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        #expect(json != nil, "\(uri) \(body): \(text)")
        if reply.status != .ok {
            #expect((json?["error"] as? [String: Any])?["message"] is String, "\(uri) \(body): \(text)")
        }
        return reply.status.code
    }

    @Test func everyFieldOfEveryTypeGetsAnAnswer() async throws {
        let statuses = try await RouteTests.withApp { client in
            var statuses: [Int: Int] = [:]
            for (uri, base) in Self.bases {
                let fields = try #require(try JSONSerialization.jsonObject(with: Data(base.utf8)) as? [String: Any]).keys
                for field in fields {
                    for value in Self.replacements {
                        // The field's value replaced in the text, keeping the rest as it was.
                        let pattern = try Regex(#""\#(field)": ("[^"]*"|\[[^\]]*\]|\{[^{}]*\}|\{[^{}]*\{[^{}]*\}[^{}]*\}|[^,}]+)"#)
                        let body = base.replacing(pattern, maxReplacements: 1) { _ in "\"\(field)\": \(value)" }
                        if body == base { continue }  // the value it had
                        statuses[try await Self.check(client, uri, body), default: 0] += 1
                    }
                }
            }
            return statuses
        }
        // Both kinds of answer occur: the values reached the validation.
        print("answers to malformed fields by status: \(statuses)")
        #expect(statuses[400, default: 0] > 100 && statuses[200, default: 0] > 20)
    }

    @Test func randomBytesGetAnAnswer() async throws {
        var state: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt64 {
            state &+= 0x9E3779B97F4A7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
            return z ^ (z >> 31)
        }
        try await RouteTests.withApp { client in
            for (uri, base) in Self.bases {
                for round in 0..<40 {
                    var bytes: [UInt8]
                    if round % 2 == 0 {
                        bytes = (0..<Int(next() % 200)).map { _ in UInt8(truncatingIfNeeded: next()) }
                    } else {
                        // A valid body cut or with one byte changed.
                        bytes = Array(base.utf8)
                        if round % 4 == 1 { bytes = Array(bytes.prefix(Int(next() % UInt64(bytes.count)))) } else {
                            bytes[Int(next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: next())
                        }
                    }
                    let reply = try await client.execute(uri: uri, method: .post, body: ByteBuffer(bytes: bytes))
                    #expect([200, 400, 404, 413].contains(reply.status.code), "\(uri) \(bytes): \(reply.status)")
                }
            }
        }
    }
}

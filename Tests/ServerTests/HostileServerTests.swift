import Foundation
import GGUF
import Hummingbird
import Llama
import LlamaServer
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Requests and model files written by an attacker: each is answered with a clear error (or an
/// answer), the server lives, and other users do not notice: a normal request still completes
/// and /health answers in well under 100 ms throughout.
@Suite(.serialized) struct HostileServerTests {
    typealias Connection = LiveServerTests.Connection

    /// The default model with its chat template replaced.
    static func model(template: String) throws -> LlamaModel {
        let original = try GGUFFile(path: DefaultModel.locate())
        var writer = GGUFWriter()
        for (key, value) in original.metadata where key != "tokenizer.chat_template" { writer.set(key, value) }
        writer.set("tokenizer.chat_template", .string(template))
        for t in original.tensors { _ = try writer.declareTensor(name: t.name, shape: t.shape, type: t.type) }
        let path = TemporaryFile.path("hostile-template-\(template.hashValue).gguf")
        try writer.write(to: path) { i in Array(original.data(of: original.tensors[i])) }
        return try LlamaModel.load(path: path)
    }

    static let defaultModel: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    /// A server on a free port with two slots.
    static func start(change: (inout ServerConfiguration) -> Void = { _ in }) async throws -> LiveServerTests.Running {
        try await LiveServerTests.start(model: defaultModel) {
            $0.slots = 2
            $0.contextSize = 1024
            change(&$0)
        }
    }

    static func post(_ port: Int, _ path: String, _ body: String, headers: String = "") async throws -> (status: Int, body: String) {
        let connection = try Connection(port: port)
        defer { connection.close() }
        connection.send("POST \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\(headers)Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        let reply = await connection.read(until: "\u{0}", times: 1)  // to the end: the server closes
        let status = Int(reply.dropFirst(9).prefix(3)) ?? 0
        let body = reply.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, body)
    }

    static func post(_ client: InProcessClient, _ uri: String, _ body: String) async throws -> (status: Int, body: String) {
        let reply = try await RouteTests.post(client, uri, body)
        return (Int(reply.status.code), String(buffer: reply.body))
    }

    /// Runs `work` while a normal request and /health are served beside it: both must succeed.
    /// (How fast /health answers is measured where the server has the machine to itself, by
    /// `Benchmarks/server_bench.py chaos`, which Scripts/test runs: this test process runs
    /// other suites' heavy work on the same threads.)
    static func beside(_ client: InProcessClient, normal path: String = "/v1/chat/completions",
                       _ body: String = #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}"#,
                       _ work: @escaping @Sendable () async throws -> Void) async throws {
        let task = Task { try await work() }
        let normal = try await post(client, path, body)
        #expect(normal.status == 200, "\(normal.body.prefix(300))")
        #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
        try await task.value
    }

    @Test func hostileRequestsLeaveOthersUntouched() async throws {
        let engine = makeEngine(model: Self.defaultModel, configuration: RouteTests.configuration(maxBody: 9 << 20))
        try await RouteTests.withApp(RouteTests.configuration(maxBody: 9 << 20), engine: engine) { client in
            let bodies: [(String, String, Int)] = [
                // Every token banned at a temperature above 0 (min-p emptied the candidates).
                ("/v1/completions", #"{"prompt":"Hi","max_tokens":4,"temperature":0.8,"logit_bias":{\#((0..<49152).map { "\"\($0)\":-100" }.joined(separator: ","))}}"#, 200),
                ("/v1/chat/completions", #"{"messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","maxLength":1e300}}}}"#, 400),
                ("/v1/chat/completions", #"{"messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"array","maxItems":-9223372036854775808}}}}"#, 400),
                ("/v1/completions", "{\"prompt\":\"Hi\",\"grammar\":\"root ::= \(String(repeating: "(", count: 100_000))\\\"a\\\"\(String(repeating: ")", count: 100_000))\"}", 400),
                ("/v1/completions", "{\"prompt\":\"Hi\",\"grammar\":\"root ::= \\\"\(String(repeating: "x", count: 20_000))\\\"{99999}\"}", 400),
                ("/v1/embeddings", "{\"input\":[\((0..<10_000).map { _ in "\"hello\"" }.joined(separator: ","))]}", 400),
                ("/v1/completions", "{\"prompt\":\"\(String(repeating: "hello ", count: 1_300_000))\",\"max_tokens\":1}", 400),
            ]
            for (path, body, expected) in bodies {
                try await Self.beside(client) {
                    let reply = try await Self.post(client, path, body)
                    #expect(reply.status == expected, "\(path): \(reply.body.prefix(300))")
                }
            }
            // A body with 200k keys parses in linear time; a grammar of 20k rules is checked in
            // linear time; a 20k-alternative grammar is bounded per token.
            let keys = "{\"prompt\":\"Hi\",\"max_tokens\":1," + (0..<200_000).map { "\"k\($0)\":0" }.joined(separator: ",") + "}"
            var rules = "root ::= r0\\n"
            for i in 0..<20_000 { rules += "r\(i) ::= \\\"x\\\" | r\(i + 1)\\n" }
            rules += "r20000 ::= \\\"y\\\"\\n"
            let wide = "root ::= " + (0..<20_000).map { "\\\"w\($0)\\\"" }.joined(separator: " | ")
            for (body, expected) in [(keys, 200), ("{\"prompt\":\"Hi\",\"max_tokens\":2,\"grammar\":\"\(rules)\"}", 200),
                                     ("{\"prompt\":\"Hi\",\"max_tokens\":2,\"temperature\":1,\"grammar\":\"\(wide)\"}", 200)] {
                let start = Date()
                try await Self.beside(client) {
                    let reply = try await Self.post(client, "/v1/completions", body)
                    #expect(reply.status == expected || reply.status == 400, "\(reply.body.prefix(300))")
                }
                #expect(Date().timeIntervalSince(start) < 60)
            }
        }
        engine.scheduler.shutdown()
    }

    /// A model whose chat template is hostile: the server starts, each chat request ends with a
    /// clear error within the render limit, and other routes (and /health) go on.
    @Test func hostileChatTemplate() async throws {
        let bomb = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}{{ 'a' * 10**10 }}"
        let model = try Self.model(template: bomb)
        var configuration = RouteTests.configuration()
        configuration.renderTimeout = .seconds(3)
        let engine = makeEngine(model: model, configuration: configuration)
        try await RouteTests.withApp(configuration, engine: engine) { client in
            try await Self.beside(client, normal: "/v1/completions", #"{"prompt":"Hi","max_tokens":4}"#) {
                for _ in 0..<3 {
                    let reply = try await Self.post(client, "/v1/chat/completions", #"{"messages":[{"role":"user","content":"Hi"}]}"#)
                    #expect(reply.status == 400, "\(reply.body.prefix(300))")
                }
            }
        }
        engine.scheduler.shutdown()
    }

    /// A client that sends its headers a byte at a time is cut off; one that sends nothing too.
    @Test func slowHeadersAreCutOff() async throws {
        let server = try await Self.start { $0.headerTimeout = .milliseconds(500); $0.idleTimeout = .seconds(2) }
        let slow = try Connection(port: server.port)
        let start = Date()
        var closedAfter: Double? = nil
        // 60 bytes, one every 50 ms: each byte keeps the idle timeout from firing.
        for byte in "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8.prefix(60) {
            if Glibc.send(slow.fd, [byte], 1, Int32(MSG_NOSIGNAL)) < 0 {
                closedAfter = Date().timeIntervalSince(start)
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let closed = try #require(closedAfter, "the connection stayed open for 3 s of trickled headers")
        #expect(closed < 2.5)
        slow.close()
        // A quiet connection is closed by the idle timeout.
        let quiet = try Connection(port: server.port)
        let quietStart = Date()
        _ = await quiet.read(until: "\u{0}")
        #expect(Date().timeIntervalSince(quietStart) < 5)
        quiet.close()
        try await server.stop()
    }

    /// The key is accepted exactly as `Authorization: Bearer KEY` (scheme in any case) or
    /// `x-api-key: KEY`, on every route but /health; every other form is refused.
    @Test func apiKeyForms() async throws {
        var configuration = RouteTests.configuration(key: "sk-test-123")
        configuration.slots = 1
        try await RouteTests.withApp(configuration) { client in
            let routes: [(HTTPRequest.Method, String, String?)] = [
                (.get, "/v1/models", nil), (.get, "/metrics", nil), (.post, "/tokenize", #"{"content":"hi"}"#),
                (.post, "/detokenize", #"{"tokens":[1]}"#), (.post, "/v1/embeddings", #"{"input":"hi"}"#),
                (.post, "/v1/completions", #"{"prompt":"Hi","max_tokens":1}"#),
                (.post, "/v1/chat/completions", #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":1}"#),
            ]
            let good: [HTTPFields] = [[.authorization: "Bearer sk-test-123"], [.authorization: "bearer sk-test-123"],
                                      [.authorization: "BEARER sk-test-123"], [HTTPFields.Element.Name("x-api-key")!: "sk-test-123"]]
            let bad: [HTTPFields] = [[:], [.authorization: "sk-test-123"], [.authorization: "Bearer sk-test-12"],
                                     [.authorization: "Bearer sk-test-1234"], [.authorization: "Basic sk-test-123"],
                                     [.authorization: "Bearersk-test-123"], [.authorization: "Bearer "], [.authorization: ""],
                                     [HTTPFields.Element.Name("x-api-key")!: "sk-test-12"], [.authorization: "Bearer SK-TEST-123"]]
            for (method, uri, body) in routes {
                for headers in good {
                    var fields = headers
                    fields[.contentType] = "application/json"
                    let reply = try await client.execute(uri: uri, method: method, headers: fields, body: body.map { ByteBuffer(string: $0) })
                    #expect(reply.status == .ok, "\(uri) \(headers): \(String(buffer: reply.body).prefix(200))")
                }
                for headers in bad {
                    var fields = headers
                    fields[.contentType] = "application/json"
                    let reply = try await client.execute(uri: uri, method: method, headers: fields, body: body.map { ByteBuffer(string: $0) })
                    #expect(reply.status == .unauthorized, "\(uri) \(headers)")
                }
            }
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
        }
    }

    /// Past --timeout a generation ends with 504 and frees its slot.
    @Test func requestDeadline() async throws {
        let server = try await Self.start { $0.requestTimeout = .milliseconds(700) }
        let start = Date()
        let reply = try await Self.post(server.port, "/v1/completions", #"{"prompt":"Once upon a time","max_tokens":100000,"temperature":1,"logit_bias":{"2":-100,"0":-100}}"#)
        #expect(reply.status == 504, "\(reply.body.prefix(300))")
        #expect(Date().timeIntervalSince(start) < 30)
        for _ in 0..<200 where server.engine.scheduler.currentStatus.busySlots > 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(server.engine.scheduler.currentStatus.busySlots == 0)
        try await server.stop()
    }
}

import Foundation
import Hummingbird
import Llama
import LlamaServer
import Testing
import TestSupport

/// Every route and every error, in-process (requests handed to the app's responder), on the
/// default model. Responses are read with Foundation's JSON parser (not ours).
@Suite struct RouteTests {
    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    static func configuration(slots: Int = 2, queue: Int = 8, key: String? = nil, maxBody: Int = 1 << 20) -> ServerConfiguration {
        var c = ServerConfiguration()
        c.port = 0
        c.slots = slots
        c.contextSize = 512 * slots
        c.queueLimit = queue
        c.apiKey = key
        c.maxBodyBytes = maxBody
        return c
    }

    static let shared: InferenceEngine = makeEngine(model: model, configuration: configuration())

    /// Runs `test` against an app on `engine` (the shared one unless given).
    public static func withApp<T>(_ configuration: ServerConfiguration = configuration(), engine: InferenceEngine = shared,
                           _ test: (InProcessClient) async throws -> T) async throws -> T {
        try await buildApplication(engine: engine, configuration: configuration).inProcess(test)
    }

    static func post(_ client: InProcessClient, _ uri: String, _ json: String, headers: HTTPFields = [:]) async throws -> InProcessClient.Reply {
        var fields = headers
        fields[.contentType] = "application/json"
        return try await client.execute(uri: uri, method: .post, headers: fields, body: ByteBuffer(string: json))
    }

    static func object(_ response: InProcessClient.Reply) throws -> [String: Any] {
        let data = Data(String(buffer: response.body).utf8)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(String(buffer: response.body))")
    }

    /// The `data:` payloads of a server-sent event stream; the last must be [DONE].
    static func events(_ response: InProcessClient.Reply) throws -> [[String: Any]] {
        let text = String(buffer: response.body)
        let payloads = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { chunk -> String in
            #expect(chunk.hasPrefix("data: "), "\(chunk)")
            return String(chunk.dropFirst(6))
        }
        #expect(payloads.last == "[DONE]")
        return try payloads.dropLast().map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    /// The error object, after checking the status and OpenAI's shape.
    static func error(_ response: InProcessClient.Reply, _ status: HTTPResponse.Status, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(response.status == status, "\(String(buffer: response.body))", sourceLocation: sourceLocation)
        #expect(response.headers[.contentType] == "application/json", sourceLocation: sourceLocation)
        let error = try #require(try object(response)["error"] as? [String: Any], sourceLocation: sourceLocation)
        #expect(error["message"] is String, sourceLocation: sourceLocation)
        #expect(error["type"] is String, sourceLocation: sourceLocation)
        #expect(error.keys.contains("param") && error.keys.contains("code"), sourceLocation: sourceLocation)
        return error
    }

    static func chatBody(_ content: String, _ extra: String = "") -> String {
        #"{"model": "SmolLM2-135M-Instruct.Q4_1", "messages": [{"role": "user", "content": "\#(content)"}], "temperature": 0, "max_tokens": 16\#(extra)}"#
    }

    /// What the library answers alone, greedy, for the same conversation.
    static func libraryAnswer(_ content: String, maxTokens: Int) async throws -> String {
        try await libraryGeneration(content, maxTokens: maxTokens).text
    }

    /// What the library generates greedily for one user message: its text, how it ended, and its token count.
    static func libraryGeneration(_ content: String, maxTokens: Int) async throws -> (text: String, finish: FinishReason, tokens: Int) {
        let session = Session(model: model, contextSize: 512)
        var text = "", summary: GenerationSummary?
        for try await event in session.generate(prompt: try model.chatPromptTokens([.user(content)]),
                                                parameters: GenerationParameters(maxTokens: maxTokens, sampler: .greedy), startOfAnswer: true) {
            if case .text(let piece) = event { text += piece }
            if case .finished(let s) = event { summary = s }
        }
        let finished = try #require(summary)
        return (text, finished.finishReason, finished.statistics.generatedTokens)
    }

    // MARK: Routes

    @Test func healthModelsAndMetrics() async throws {
        try await Self.withApp { client in
            let health = try Self.object(try await client.execute(uri: "/health", method: .get))
            #expect(health["status"] as? String == "ok")
            let models = try Self.object(try await client.execute(uri: "/v1/models", method: .get))
            let data = try #require(models["data"] as? [[String: Any]])
            #expect(data.count == 1)
            #expect(data[0]["id"] as? String == "SmolLM2-135M-Instruct.Q4_1")
            #expect(data[0]["object"] as? String == "model")
            let one = try Self.object(try await client.execute(uri: "/v1/models/SmolLM2-135M-Instruct.Q4_1", method: .get))
            #expect(one["id"] as? String == "SmolLM2-135M-Instruct.Q4_1")
            _ = try Self.error(try await client.execute(uri: "/v1/models/gpt-4", method: .get), .notFound)
            _ = try await Self.post(client, "/v1/chat/completions", Self.chatBody("Hi", #", "max_tokens": 2"#))
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            let text = String(buffer: metrics.body)
            for name in ["llama_requests_total", "llama_prompt_tokens_total", "llama_generated_tokens_total", "llama_generated_tokens_per_second",
                         "llama_queue_depth", "llama_slots_busy", "llama_slots"] {
                #expect(text.contains("# TYPE \(name) "), "\(name)")
            }
            #expect(text.contains(#"llama_requests_total{route="/v1/models",status="200"}"#))
            // Every sample line is "name{labels} number".
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                #expect(Double(line.split(separator: " ").last ?? "") != nil, "\(line)")
            }
        }
    }

    /// A fresh one-slot engine, whose first answer is computed exactly as a fresh Session's.
    static func freshEngine() -> InferenceEngine { makeEngine(model: model, configuration: configuration(slots: 1)) }

    @Test func chatCompletionAnswersAsTheLibrary() async throws {
        let expected = try await Self.libraryGeneration("What is the capital of France?", maxTokens: 16)
        let engine = Self.freshEngine()
        defer { engine.scheduler.shutdown() }
        try await Self.withApp(engine: engine) { client in
            let response = try await Self.post(client, "/v1/chat/completions", Self.chatBody("What is the capital of France?"))
            #expect(response.status == .ok)
            let body = try Self.object(response)
            #expect(body["object"] as? String == "chat.completion")
            #expect((body["id"] as? String)?.hasPrefix("chatcmpl-") == true)
            let choice = try #require((body["choices"] as? [[String: Any]])?.first)
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["role"] as? String == "assistant")
            #expect(message["content"] as? String == expected.text)
            #expect(choice["finish_reason"] as? String == expected.finish.rawValue)
            let usage = try #require(body["usage"] as? [String: Any])
            #expect(usage["completion_tokens"] as? Int == expected.tokens)
            let promptTokens = try Self.model.chatPromptTokens([.user("What is the capital of France?")]).count
            #expect(usage["prompt_tokens"] as? Int == promptTokens)
            #expect(usage["total_tokens"] as? Int == promptTokens + expected.tokens)
        }
    }

    @Test func chatStreamingSendsTheSameTextInChunks() async throws {
        let text = try await Self.libraryAnswer("Name a fruit.", maxTokens: 16)
        let engine = Self.freshEngine()
        defer { engine.scheduler.shutdown() }
        try await Self.withApp(engine: engine) { client in
            let response = try await Self.post(client, "/v1/chat/completions", Self.chatBody("Name a fruit.", #", "stream": true, "stream_options": {"include_usage": true}"#))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            let events = try Self.events(response)
            #expect(events.count >= 4)
            let deltas = events.compactMap { ($0["choices"] as? [[String: Any]])?.first }
            #expect((deltas.first?["delta"] as? [String: Any])?["role"] as? String == "assistant")
            let streamed = deltas.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
            #expect(streamed == text)
            #expect(["length", "stop"].contains(deltas.last?["finish_reason"] as? String))
            #expect(deltas.dropLast().allSatisfy { $0["finish_reason"] is NSNull })
            // include_usage: a last chunk with no choices and the usage; null usage before it.
            let last = try #require(events.last)
            #expect((last["choices"] as? [Any])?.isEmpty == true)
            let tokens = (last["usage"] as? [String: Any])?["completion_tokens"] as? Int
            #expect(tokens == Self.model.tokenizer.encode(text).count || tokens == 16, "\(String(describing: tokens))")
            #expect(events.dropLast().allSatisfy { $0["usage"] is NSNull })
            #expect(events.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
        }
    }

    /// Whole, streamed and by token ids: the same text. (All three find the prompt cached by a
    /// first request: a prompt evaluated whole and one whose last token is evaluated alone round
    /// differently, as in llama.cpp with its prompt cache, and greedy choices may part at a near tie.)
    @Test func completionsWholeAndStreamed() async throws {
        let engine = Self.freshEngine()
        defer { engine.scheduler.shutdown() }
        try await Self.withApp(engine: engine) { client in
            let body = #"{"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0"#
            _ = try await Self.post(client, "/v1/completions", #"{"prompt": "Once upon a time", "max_tokens": 1}"#)
            let whole = try Self.object(try await Self.post(client, "/v1/completions", body + "}"))
            #expect(whole["object"] as? String == "text_completion")
            let choice = try #require((whole["choices"] as? [[String: Any]])?.first)
            let text = try #require(choice["text"] as? String)
            #expect(!text.isEmpty)
            let events = try Self.events(try await Self.post(client, "/v1/completions", body + #", "stream": true}"#))
            #expect(events.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined() == text)
            #expect(events.last.flatMap { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String } == "length")
            // Token ids as the prompt give the same answer.
            let ids = Self.model.tokenizer.encode("Once upon a time", addSpecial: true).map(String.init).joined(separator: ", ")
            let byIDs = try Self.object(try await Self.post(client, "/v1/completions", #"{"prompt": [\#(ids)], "max_tokens": 12, "temperature": 0}"#))
            #expect((byIDs["choices"] as? [[String: Any]])?.first?["text"] as? String == text)
        }
    }

    /// Seeds repeat on a fresh one-slot engine whose cache holds the prompt each time (see
    /// completionsWholeAndStreamed on why the cache state matters).
    @Test func stopStringsAndSeeds() async throws {
        let engine = Self.freshEngine()
        defer { engine.scheduler.shutdown() }
        try await Self.withApp(engine: engine) { client in
            let body = #"{"prompt": "1, 2, 3, 4, 5,", "max_tokens": 20, "temperature": 0, "stop": [" 8"]}"#
            let answer = try Self.object(try await Self.post(client, "/v1/completions", body))
            let choice = try #require((answer["choices"] as? [[String: Any]])?.first)
            #expect(choice["text"] as? String == " 6, 7,")
            #expect(choice["finish_reason"] as? String == "stop")
            // The same seed at temperature 1 samples the same text; another seed another text.
            func sample(_ seed: Int) async throws -> String? {
                let r = try Self.object(try await Self.post(client, "/v1/completions", #"{"prompt": "The weather today", "max_tokens": 24, "temperature": 1, "seed": \#(seed)}"#))
                return (r["choices"] as? [[String: Any]])?.first?["text"] as? String
            }
            _ = try await sample(1)
            let a = try await sample(7), b = try await sample(7), c = try await sample(8)
            #expect(a == b)
            #expect(a != c)
        }
    }

    @Test func jsonModes() async throws {
        try await Self.withApp { client in
            let object = try await Self.post(client, "/v1/chat/completions",
                                             Self.chatBody("Describe a cat as JSON.", #", "max_tokens": 60, "response_format": {"type": "json_object"}"#))
            let content = try #require(((try Self.object(object)["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String)
            let finish = (try Self.object(object)["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String
            if finish == "stop" {
                #expect((try? JSONSerialization.jsonObject(with: Data(content.utf8))) is [String: Any], "\(content)")
            } else {
                #expect(content.hasPrefix("{"), "\(content)")
            }
            let schema = #"{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}}, "required": ["name", "age"]}"#
            let typed = try await Self.post(client, "/v1/chat/completions",
                                            Self.chatBody("Make up a person.", #", "max_tokens": 60, "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": \#(schema)}}"#))
            let text = try #require(((try Self.object(typed)["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String)
            let person = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
            #expect(Set(person.keys) == ["name", "age"])
            #expect(person["name"] is String)
            #expect(person["age"] is Int)
        }
    }

    /// Log probabilities: the greedy token is the likeliest, each is the log-softmax of the model's
    /// logits (computed here from the library's logits), and the tokens spell the text.
    @Test func logprobsInChatAndCompletions() async throws {
        let prompt = try Self.model.chatPromptTokens([.user("Name a color.")])
        let logits = try LlamaContext(model: Self.model, contextSize: 256, threads: 2).evaluate(prompt, logitsFor: .last)
        let largest = logits.max()!
        let logSum = largest + Float(log(logits.reduce(0.0) { $0 + exp(Double($1 - largest)) }))
        let engine = Self.freshEngine()
        defer { engine.scheduler.shutdown() }
        try await Self.withApp(engine: engine) { client in
            let body = Self.chatBody("Name a color.", #", "max_tokens": 6, "logprobs": true, "top_logprobs": 3"#)
            let answer = try Self.object(try await Self.post(client, "/v1/chat/completions", body))
            let choice = try #require((answer["choices"] as? [[String: Any]])?.first)
            let content = try #require((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
            let usage = try #require(answer["usage"] as? [String: Any])
            #expect(content.count == usage["completion_tokens"] as? Int)
            let first = try #require(content.first)
            let firstToken = Int(Sampler.argmax(logits))
            #expect(first["bytes"] as? [Int] == Self.model.tokenizer.pieceBytes(TokenID(firstToken), renderSpecial: true).map(Int.init))
            #expect(abs((first["logprob"] as? Double ?? 0) - Double(logits[firstToken] - logSum)) < 1e-4)
            for entry in content {
                let top = try #require(entry["top_logprobs"] as? [[String: Any]])
                #expect(top.count == 3)
                let values = top.compactMap { $0["logprob"] as? Double }
                #expect(values == values.sorted(by: >) && values.allSatisfy { $0 <= 0 })
                // Greedy: the chosen token is the likeliest one.
                #expect(top.first?["token"] as? String == entry["token"] as? String)
            }
            let text = (choice["message"] as? [String: Any])?["content"] as? String
            #expect(content.compactMap { $0["token"] as? String }.joined() == text)

            // Completions, streamed: the legacy shape, chunk by chunk.
            let events = try Self.events(try await Self.post(client, "/v1/completions", #"{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0, "logprobs": 2, "stream": true}"#))
            var tokens: [String] = [], offsets: [Int] = [], streamed = ""
            for event in events {
                guard let c = (event["choices"] as? [[String: Any]])?.first else { continue }
                streamed += c["text"] as? String ?? ""
                guard let l = c["logprobs"] as? [String: Any] else { continue }
                tokens += l["tokens"] as? [String] ?? []
                offsets += l["text_offset"] as? [Int] ?? []
                #expect((l["top_logprobs"] as? [[String: Double]])?.allSatisfy { $0.count <= 2 } == true)
            }
            #expect(tokens.count == 5)
            #expect(tokens.joined() == streamed)
            #expect(offsets == tokens.indices.map { i in tokens[..<i].reduce(0) { $0 + $1.count } })

            for bad in [#", "logprobs": true, "top_logprobs": 21"#, #", "top_logprobs": 2"#] {
                _ = try Self.error(try await Self.post(client, "/v1/chat/completions", Self.chatBody("Hi", bad)), .badRequest)
            }
        }
    }

    /// `n` answers, each in a slot of its own: whole and streamed, each choice with its index and
    /// its own end, the prompt counted once in the usage.
    @Test func severalChoices() async throws {
        try await Self.withApp { client in
            let body = #"{"prompt": "The best fruit is", "max_tokens": 8, "temperature": 1, "seed": 5, "n": 3}"#
            let whole = try Self.object(try await Self.post(client, "/v1/completions", body))
            let choices = try #require(whole["choices"] as? [[String: Any]])
            #expect(choices.map { $0["index"] as? Int } == [0, 1, 2])
            #expect(choices.allSatisfy { ($0["text"] as? String)?.isEmpty == false })
            #expect(Set(choices.compactMap { $0["text"] as? String }).count > 1, "\(choices)")
            let usage = try #require(whole["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == Self.model.tokenizer.encode("The best fruit is", addSpecial: true).count)
            #expect((usage["completion_tokens"] as? Int ?? 0) <= 24 && (usage["completion_tokens"] as? Int ?? 0) >= 3)

            let events = try Self.events(try await Self.post(client, "/v1/chat/completions", Self.chatBody("Hi", #", "n": 2, "stream": true, "stream_options": {"include_usage": true}"#)))
            let parts = events.compactMap { ($0["choices"] as? [[String: Any]])?.first }
            for index in 0..<2 {
                let mine = parts.filter { $0["index"] as? Int == index }
                #expect((mine.first?["delta"] as? [String: Any])?["role"] as? String == "assistant")
                #expect(mine.filter { $0["finish_reason"] is String }.count == 1)
            }
            #expect(((events.last?["usage"] as? [String: Any])?["completion_tokens"] as? Int ?? 0) > 0)
        }
    }

    @Test func embeddingsAsFloatsAndBase64() async throws {
        let context = LlamaContext(model: Self.model, contextSize: 128, threads: 2)
        let expected = try context.embedding(of: Self.model.tokenizer.encode("Paris is the capital of France.", addSpecial: true))
        try await Self.withApp { client in
            let floats = try Self.object(try await Self.post(client, "/v1/embeddings", #"{"input": ["Paris is the capital of France.", "hello"], "model": "SmolLM2-135M-Instruct.Q4_1"}"#))
            #expect(floats["object"] as? String == "list")
            let data = try #require(floats["data"] as? [[String: Any]])
            #expect(data.count == 2)
            #expect(data.map { $0["index"] as? Int } == [0, 1])
            let first = try #require((data[0]["embedding"] as? [NSNumber])?.map(\.floatValue))
            #expect(first.count == Self.model.configuration.embeddingLength)
            #expect(zip(first, expected).allSatisfy { abs($0 - $1) < 1e-6 })
            let usage = try #require(floats["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == Self.model.tokenizer.encode("Paris is the capital of France.", addSpecial: true).count + Self.model.tokenizer.encode("hello", addSpecial: true).count)

            let encoded = try Self.object(try await Self.post(client, "/v1/embeddings", #"{"input": "Paris is the capital of France.", "encoding_format": "base64"}"#))
            let base64 = try #require((encoded["data"] as? [[String: Any]])?.first?["embedding"] as? String)
            let bytes = try #require(Data(base64Encoded: base64))
            let decoded = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(decoded == expected)
        }
    }

    @Test func tokenizeAndDetokenize() async throws {
        try await Self.withApp { client in
            let text = "Hello world, <|im_start|> héllo"
            let tokens = try #require(try Self.object(try await Self.post(client, "/tokenize", #"{"content": "\#(text)"}"#))["tokens"] as? [Int])
            #expect(tokens == Self.model.tokenizer.encode(text, addSpecial: false, parseSpecial: true).map(Int.init))
            let back = try Self.object(try await Self.post(client, "/detokenize", #"{"tokens": \#(tokens)}"#))
            #expect(back["content"] as? String == text)
            let pieces = try #require(try Self.object(try await Self.post(client, "/tokenize", #"{"content": "Hello world", "with_pieces": true}"#))["tokens"] as? [[String: Any]])
            #expect(pieces.compactMap { $0["piece"] as? String }.joined() == "Hello world")
            _ = try Self.error(try await Self.post(client, "/detokenize", #"{"tokens": [1, 99999999]}"#), .badRequest)
        }
    }

    // MARK: Errors

    @Test func malformedRequestsAre400WithTheField() async throws {
        try await Self.withApp { client in
            _ = try Self.error(try await Self.post(client, "/v1/chat/completions", "{not json"), .badRequest)
            _ = try Self.error(try await Self.post(client, "/v1/chat/completions", "[1, 2]"), .badRequest)
            let cases: [(String, String)] = [
                (#"{"temperature": 0}"#, "messages"),
                (#"{"messages": "hi"}"#, "messages"),
                (#"{"messages": [{"content": "hi"}]}"#, "messages"),
                (#"{"messages": [{"role": "wizard", "content": "hi"}]}"#, "messages"),
                (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#, "messages"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#, "temperature"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "temperature": 5}"#, "temperature"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}"#, "max_tokens"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5}"#, "max_tokens"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "stop": 7}"#, "stop"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "n": 0}"#, "n"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "n": 17}"#, "n"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"abc": 5}}"#, "logit_bias"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"5": 500}}"#, "logit_bias"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "xml"}}"#, "response_format"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema"}}"#, "response_format"),
                (#"{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}"#, "stream"),
            ]
            for (body, param) in cases {
                let error = try Self.error(try await Self.post(client, "/v1/chat/completions", body), .badRequest)
                #expect(error["param"] as? String == param, "\(body): \(error)")
                #expect(error["type"] as? String == "invalid_request_error")
            }
            _ = try Self.error(try await Self.post(client, "/v1/completions", #"{"max_tokens": 3}"#), .badRequest)
            _ = try Self.error(try await Self.post(client, "/v1/completions", #"{"prompt": {"a": 1}}"#), .badRequest)
            _ = try Self.error(try await Self.post(client, "/v1/embeddings", #"{"input": 5}"#), .badRequest)
            _ = try Self.error(try await Self.post(client, "/v1/embeddings", #"{"input": "x", "encoding_format": "hex"}"#), .badRequest)
            _ = try Self.error(try await Self.post(client, "/tokenize", #"{"text": "x"}"#), .badRequest)
        }
    }

    @Test func promptLongerThanTheContextIs400SayingSo() async throws {
        try await Self.withApp { client in
            let long = String(repeating: "word ", count: 2000)
            let error = try Self.error(try await Self.post(client, "/v1/chat/completions", Self.chatBody(long)), .badRequest)
            #expect(error["code"] as? String == "context_length_exceeded")
            #expect((error["message"] as? String)?.contains("too long") == true)
            let embedding = try Self.error(try await Self.post(client, "/v1/embeddings", #"{"input": "\#(long)"}"#), .badRequest)
            #expect(embedding["code"] as? String == "context_length_exceeded")
        }
    }

    @Test func unknownModelAndRoute() async throws {
        try await Self.withApp { client in
            let error = try Self.error(try await Self.post(client, "/v1/chat/completions", #"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#), .notFound)
            #expect(error["code"] as? String == "model_not_found")
            #expect((error["message"] as? String)?.contains("SmolLM2-135M-Instruct.Q4_1") == true)
            _ = try Self.error(try await client.execute(uri: "/v1/nothing", method: .get), .notFound)
        }
    }

    @Test func apiKeyIsRequiredWhenSet() async throws {
        try await Self.withApp(Self.configuration(key: "sk-test-123")) { client in
            let body = Self.chatBody("Hi", #", "max_tokens": 1"#)
            let missing = try Self.error(try await Self.post(client, "/v1/chat/completions", body), .unauthorized)
            #expect(missing["code"] as? String == "invalid_api_key")
            _ = try Self.error(try await Self.post(client, "/v1/chat/completions", body, headers: [.authorization: "Bearer sk-wrong"]), .unauthorized)
            _ = try Self.error(try await client.execute(uri: "/v1/models", method: .get), .unauthorized)
            #expect(try await Self.post(client, "/v1/chat/completions", body, headers: [.authorization: "Bearer sk-test-123"]).status == .ok)
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
        }
    }

    /// Browser apps on other origins: preflights answered without a key, answers carry the header.
    @Test func crossOriginRequests() async throws {
        try await Self.withApp(Self.configuration(key: "sk-test-123")) { client in
            let preflight = try await client.execute(uri: "/v1/chat/completions", method: .options,
                                                     headers: [.origin: "http://localhost:3000", .accessControlRequestMethod: "POST"])
            #expect(preflight.status.kind == .successful)
            #expect(preflight.headers[.accessControlAllowOrigin] == "*")
            #expect(preflight.headers[.accessControlAllowHeaders]?.lowercased().contains("authorization") == true)
            let denied = try await client.execute(uri: "/v1/models", method: .get, headers: [.origin: "http://localhost:3000"])
            #expect(denied.status == .unauthorized)
            #expect(denied.headers[.accessControlAllowOrigin] == "*")
        }
    }

    @Test func oversizedBodyIs413() async throws {
        try await Self.withApp(Self.configuration(maxBody: 4096)) { client in
            let big = Self.chatBody(String(repeating: "a", count: 5000))
            let error = try Self.error(try await Self.post(client, "/v1/chat/completions", big), .contentTooLarge)
            #expect(error["type"] as? String == "invalid_request_error")
        }
    }

    /// One slot and no queue: a second request while the first runs is told to come back.
    @Test func fullQueueIs503WithRetryAfter() async throws {
        let configuration = Self.configuration(slots: 1, queue: 0)
        let engine = makeEngine(model: Self.model, configuration: configuration)
        defer { engine.scheduler.shutdown() }
        try await Self.withApp(configuration, engine: engine) { client in
            async let long = Self.post(client, "/v1/completions", #"{"prompt": "Once upon a time", "max_tokens": 300, "temperature": 0, "stop": []}"#)
            for _ in 0..<500 where engine.scheduler.currentStatus.busySlots == 0 { try await Task.sleep(for: .milliseconds(5)) }
            let refused = try await Self.post(client, "/v1/completions", #"{"prompt": "Hi", "max_tokens": 1}"#)
            let error = try Self.error(refused, .serviceUnavailable)
            #expect(refused.headers[.retryAfter] != nil)
            #expect(error["type"] as? String == "server_error")
            #expect(try await long.status == .ok)
        }
    }
}

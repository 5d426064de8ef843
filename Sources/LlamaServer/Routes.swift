import Foundation
import Hummingbird
import Jinja
import Llama
import LlamaAPI
import Logging

/// What every route shares, from the server's configuration.
struct RouteSettings: Sendable {
    var maxBodyBytes: Int
    /// The longest a generation request may take (llama-server's --timeout); nil for no limit.
    var requestTimeout: Duration?
    /// The longest the chat template may take to render for one request.
    var renderTimeout: Duration
    var reasoningBudget: Int?

    init(_ configuration: ServerConfiguration) {
        maxBodyBytes = configuration.maxBodyBytes
        requestTimeout = configuration.requestTimeout
        renderTimeout = configuration.renderTimeout
        reasoningBudget = configuration.reasoningBudget
    }
}

/// The server's routes over its models: each request's body is read, the model it names is
/// found (and loaded if need be), and the request is answered by that model's `Routes`.
struct ServerRoutes: Sendable {
    typealias Context = ServerRequestContext
    let models: ModelRegistry
    /// Where /api/pull fetches models and /api/delete removes them; nil when the server has none.
    let hub: ModelSource?
    let settings: RouteSettings

    func add(to router: Router<Context>) {
        router.get("/health") { _, _ in health() }
        router.get("/v1/health") { _, _ in health() }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: models.metrics.render(models.status, models: models))))
        }
        router.get("/v1/models") { _, _ in list() }
        router.get("/models") { _, _ in list() }
        router.get("/v1/models/{id}") { _, context in
            let model = try models.find(context.parameters.get("id") ?? "")
            return Routes.json(entry(model))
        }
        let routes: [(String, @Sendable (Routes) -> (JSONFields, Context, RequestScope) async throws -> Response)] = [
            ("/v1/chat/completions", Routes.chatCompletion), ("/chat/completions", Routes.chatCompletion),
            ("/v1/completions", Routes.completion), ("/completions", Routes.completion),
            ("/v1/messages", Routes.messages), ("/v1/messages/count_tokens", Routes.countTokens),
            ("/v1/embeddings", Routes.embeddings), ("/embeddings", Routes.embeddings),
            ("/tokenize", Routes.tokenize), ("/detokenize", Routes.detokenize),
        ]
        for (path, handler) in routes {
            router.post(RouterPath(path)) { request, context in
                try await withModel(request, context) { routes, fields, scope in try await handler(routes)(fields, context, scope) }
            }
        }
        addOllama(to: router)
    }

    /// Reads the body, leases the model its `model` names (the first model when none) and runs
    /// `body` with that model's routes. The lease ends with the request's scope: when the answer
    /// has been sent, streamed or not.
    func withModel(_ request: Request, _ context: Context,
                   _ body: (Routes, JSONFields, RequestScope) async throws -> Response) async throws -> Response {
        let scope = await RequestScope(context: context, timeout: settings.requestTimeout)
        do {
            let fields = try await parse(request)
            let keepAlive = try fields["keep_alive"].map(KeepAlive.init(json:))
            let asked = ContinuousClock.now
            let lease = try await models.lease(try fields.string("model"))
            scope.loadNanoseconds = Self.nanoseconds(asked.duration(to: .now))
            scope.onEnd { lease.release(keepAlive: keepAlive) }
            return try await body(Routes(engine: lease.engine, settings: settings, metrics: models.metrics), fields, scope)
        } catch {
            scope.end()
            throw scope.timedOut ? scope.timeoutError : error
        }
    }

    static func nanoseconds(_ d: Duration) -> Int {
        Int(d.components.seconds) * 1_000_000_000 + Int(d.components.attoseconds / 1_000_000_000)
    }

    /// The body's JSON, parsed on a worker (a large body takes a while).
    func parse(_ request: Request) async throws -> JSONFields {
        let buffer = try await request.body.collect(upTo: settings.maxBodyBytes)
        let text = String(buffer: buffer)
        return try await models.workers.run { _ in try JSONFields(body: text) }
    }

    /// 200 with the slots when ready; 503 while the first model loads and while draining, so
    /// that a balancer sends requests elsewhere.
    func health() -> Response {
        let s = models.status
        let phase = models.currentPhase
        return Routes.json(.object([("status", .string(phase == .ready ? "ok" : phase.rawValue)), ("slots_idle", .int(s.slots - s.busySlots)),
                                    ("slots_processing", .int(s.busySlots)), ("queued", .int(s.queued)),
                                    ("models_loaded", .int(models.loadedModels.count))]),
                           status: phase == .ready ? .ok : .serviceUnavailable)
    }

    /// A model as /v1/models lists it; `meta` (llama-server's) while it is loaded.
    func entry(_ model: ServedModel) -> JinjaValue {
        var pairs: [(String, JinjaValue)] = [("id", .string(model.id)), ("object", .string("model")),
                                             ("created", .int(Int(Self.modified(model.path).timeIntervalSince1970))), ("owned_by", .string("swift-llama")),
                                             ("aliases", .array(model.names.dropFirst().map { .string($0) }))]
        if let loaded = models.loadedModels.first(where: { $0.model.path == model.path }) {
            let engine = loaded.engine, c = engine.model.configuration
            pairs.append(("meta", .object([("n_ctx_train", .int(c.contextLength)), ("n_ctx_slot", .int(engine.scheduler.contextSize)),
                                           ("n_vocab", .int(c.vocabularySize)), ("n_embd", .int(c.embeddingLength)),
                                           ("slots", .int(engine.scheduler.configuration.slots))])))
            pairs.append(("status", .object([("value", "loaded")])))
        } else {
            pairs.append(("status", .object([("value", "unloaded")])))
        }
        return .object(pairs)
    }

    func list() -> Response {
        Routes.json(.object([("object", .string("list")), ("data", .array(models.served.map(entry)))]))
    }

    /// When the model's file was last changed (its `created` and Ollama's `modified_at`).
    static func modified(_ path: String) -> Date {
        (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date()
    }
}

/// The OpenAI routes and llama.cpp's extras, over one loaded model.
struct Routes: Sendable {
    typealias Context = ServerRequestContext
    let engine: InferenceEngine
    let settings: RouteSettings
    let metrics: ServerMetrics

    var model: LlamaModel { engine.model }
    var requestTimeout: Duration? { settings.requestTimeout }
    var renderTimeout: Duration { settings.renderTimeout }
    var reasoningBudget: Int? { settings.reasoningBudget }

    // MARK: Small routes

    func tokenize(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        defer { scope.end() }
        guard let content = try fields.string("content") else { throw APIError.badRequest("'content' (a string) is required", param: "content") }
        let addSpecial = try fields.bool("add_special") ?? false
        let parseSpecial = try fields.bool("parse_special") ?? true
        let tokens = try await engine.workers.run { [model] _ in model.tokenizer.encode(content, addSpecial: addSpecial, parseSpecial: parseSpecial) }
        if try fields.bool("with_pieces") == true {
            let pieces = tokens.map { id in
                JinjaValue.object([("id", .int(Int(id))), ("piece", .string(model.tokenizer.decode([id], renderSpecial: true)))])
            }
            return json(.object([("tokens", .array(pieces))]))
        }
        return json(.object([("tokens", .array(tokens.map { .int(Int($0)) }))]))
    }

    func detokenize(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        defer { scope.end() }
        guard case .array(let items)? = fields["tokens"] else { throw APIError.badRequest("'tokens' (an array of token ids) is required", param: "tokens") }
        let tokens = try tokenIDs(items, param: "tokens")
        try checkVocabulary(tokens, param: "tokens")
        // Special tokens are written out, as llama-server does.
        return json(.object([("content", .string(model.tokenizer.decode(tokens, renderSpecial: true)))]))
    }

    // MARK: Generation

    func chatCompletion(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        do {
            var generation = try GenerationRequest(fields, vocabularySize: model.configuration.vocabularySize, chat: true)
            let messages = try chatMessages(fields)
            let tools = try toolUse(fields, template: engine.chatTemplate)
            if let grammar = try tools?.grammar() {
                guard generation.parameters.grammar == nil else {
                    throw APIError.badRequest("tools cannot be combined with 'response_format' or 'grammar'", param: "tools")
                }
                generation.parameters.grammar = grammar.grammar
                generation.parameters.grammarTriggers = grammar.triggers
            }
            generation.parameters.keptSpecialTokens = model.specialTokens(ToolUse.formatTags)
            let reasoningFormat = try fields.string("reasoning_format") ?? "auto"
            guard ["none", "auto", "deepseek", "deepseek-legacy"].contains(reasoningFormat) else {
                throw APIError.badRequest("'reasoning_format' must be none, auto or deepseek", param: "reasoning_format")
            }
            var variables = try fields.object("chat_template_kwargs").map { Dictionary($0.pairs, uniquingKeysWith: { $1 }) } ?? [:]
            if reasoningBudget == 0, variables["enable_thinking"] == nil { variables["enable_thinking"] = .bool(false) }
            let (prompt, opensThinking) = try await chatPrompt(messages, tools: tools, variables: variables, scope: scope)
            let parser = ToolCallParser(format: tools?.format ?? .generic, parsesToolCalls: tools?.isActive ?? false,
                                        splitsReasoning: reasoningFormat != "none", startsInReasoning: opensThinking)
            generation.parameters.reasoningBudget = reasoningBudget
            generation.parameters.startsInReasoning = opensThinking
            return try await generate(prompt: prompt, generation, chat: true, parser: parser, context: context, scope: scope)
        } catch {
            scope.end()
            throw scope.timedOut ? scope.timeoutError : error
        }
    }

    func completion(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        do {
            let generation = try GenerationRequest(fields, vocabularySize: model.configuration.vocabularySize, chat: false)
            if try fields.bool("echo") == true { throw APIError.badRequest("'echo' is not supported", param: "echo") }
            let contextSize = engine.scheduler.contextSize
            let prompt = try await engine.workers.run(cancellation: scope.cancellation) { [model, engine] _ in
                try completionPrompt(fields, tokenizer: model.tokenizer) { text in
                    try engine.checkLength(ofText: text, limit: contextSize, param: "prompt")
                }
            }
            try checkVocabulary(prompt, param: "prompt")
            return try await generate(prompt: prompt, generation, chat: false, context: context, scope: scope)
        } catch {
            scope.end()
            throw scope.timedOut ? scope.timeoutError : error
        }
    }

    /// A conversation's prompt tokens (rendered off the event loop, within the render limits),
    /// and whether the template opened a thinking block at its end (the answer starts inside it).
    func chatPrompt(_ messages: [ChatMessage], tools: ToolUse?, variables: [String: JinjaValue], scope: RequestScope) async throws -> ([TokenID], Bool) {
        var limits = Template.Limits()
        limits.timeLimit = renderTimeout
        let cancellation = scope.cancellation
        limits.isCancelled = { cancellation.isCancelled }
        let contextSize = engine.scheduler.contextSize
        return try await engine.workers.run(cancellation: scope.cancellation) { [model, engine, limits] _ in
            do {
                var opensThinking = false
                let tokens = try model.chatPromptTokens(messages, template: engine.chatTemplate, toolUse: tools, variables: variables, limits: limits) { text in
                    try engine.checkLength(ofText: text, limit: contextSize, param: "messages")
                    opensThinking = ToolCallParser.opensThinking(text)
                }
                return (tokens, opensThinking)
            } catch let error as APIError {
                throw error
            } catch {
                throw APIError.badRequest("the model's chat template does not accept these messages: \(error)", param: "messages")
            }
        }
    }

    /// Queues the generation (`n` of them, each in a slot of its own, the seed counting up) and
    /// answers with one JSON object, or with server-sent events as it goes. A client that leaves
    /// cancels its generations: their slots are free at the next step.
    /// The request's scope ends when the answer has been sent (or has failed).
    func generate(prompt: [TokenID], _ generation: GenerationRequest, chat: Bool, parser: ToolCallParser? = nil,
                  context: Context, scope: RequestScope) async throws -> Response {
        let cancellation = scope.cancellation
        // Compiling the grammar (in submit) costs what the request makes it cost: off the event loop.
        let streams = try await engine.workers.run(cancellation: cancellation) { [engine] _ in
            var streams: [AsyncThrowingStream<GenerationEvent, Error>] = []
            do {
                for index in 0..<generation.choices {
                    var parameters = generation.parameters
                    parameters.sampler.seed &+= UInt64(index)
                    streams.append(try engine.scheduler.submit(prompt: prompt, parameters: parameters, startOfAnswer: chat, cancellation: cancellation))
                }
            } catch {
                cancellation.cancel()  // the ones already queued
                throw error
            }
            return UncheckedStreams(streams: streams)
        }.streams
        let events = Self.merge(streams)
        let shape = ResponseShape(chat: chat, model: engine.modelID)
        let wantsLogprobs = generation.parameters.logprobs != nil
        let count = generation.choices
        guard generation.stream else {
            defer { scope.end() }
            var texts = [String](repeating: "", count: count)
            var logprobs = [LogprobList](repeating: LogprobList(chat: chat, enabled: wantsLogprobs), count: count)
            var summaries = [GenerationSummary?](repeating: nil, count: count)
            for try await (index, event) in events {
                switch event {
                case .text(let piece): texts[index] += piece
                case .logprob(let entry): logprobs[index].add(entry)
                case .finished(let summary):
                    Self.log(summary, chat: chat, logger: context.logger)
                    summaries[index] = summary
                case .notice, .reasoning, .toolCall, .toolResult: break
                }
            }
            let finished = summaries.compactMap { $0 }
            if scope.timedOut { throw scope.timeoutError }
            guard finished.count == count else { throw BatchScheduler.ShutDown() }
            let choices = (0..<count).map { i in
                guard let parser else { return shape.choice(index: i, text: texts[i], reason: finished[i].finishReason, logprobs: logprobs[i].take()) }
                return shape.choice(index: i, answer: parser.parse(texts[i]), reason: finished[i].finishReason, logprobs: logprobs[i].take())
            }
            return json(shape.whole(choices: choices, usage: shape.usage(finished)))
        }
        let includeUsage = generation.includeUsage
        let logger = context.logger
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            defer { scope.end() }
            func send(_ value: JinjaValue) async throws {
                try await writer.write(ByteBuffer(string: "data: " + value.jsonText + "\n\n"))
            }
            // Log probabilities arrive before their token's text and go out with the next chunk.
            var logprobs = [LogprobList](repeating: LogprobList(chat: chat, enabled: wantsLogprobs), count: count)
            // A chat answer is taken apart as it comes: text, thinking, tool calls.
            var answers = parser.map { p in [ToolCallStream](repeating: ToolCallStream(parser: p), count: count) }
            var calledTools = [Bool](repeating: false, count: count)
            func send(_ deltas: [ToolCallStream.Delta], index: Int) async throws {
                for delta in deltas {
                    if case .toolCall = delta { calledTools[index] = true }
                    try await send(shape.chunk(index: index, delta: ResponseShape.delta(delta), includeUsage: includeUsage, logprobs: logprobs[index].take()))
                }
            }
            var summaries: [GenerationSummary] = []
            do {
                if chat {
                    for index in 0..<count {
                        try await send(shape.chunk(index: index, delta: .object([("role", .string("assistant")), ("content", .string(""))]), includeUsage: includeUsage))
                    }
                }
                for try await (index, event) in events {
                    switch event {
                    case .text(let piece):
                        if answers != nil {
                            try await send(answers![index].add(piece), index: index)
                        } else {
                            try await send(shape.chunk(index: index, delta: chat ? .object([("content", .string(piece))]) : .string(piece),
                                                       includeUsage: includeUsage, logprobs: logprobs[index].take()))
                        }
                    case .logprob(let entry): logprobs[index].add(entry)
                    case .finished(let summary):
                        Self.log(summary, chat: chat, logger: logger)
                        summaries.append(summary)
                        if answers != nil { try await send(answers![index].finish().deltas, index: index) }
                        try await send(shape.chunk(index: index, delta: chat ? .object([]) : .string(""), finish: summary.finishReason,
                                                   calledTools: calledTools[index], includeUsage: includeUsage, logprobs: logprobs[index].take()))
                    case .notice, .reasoning, .toolCall, .toolResult: break
                    }
                }
                if scope.timedOut { throw scope.timeoutError }
                if includeUsage { try await send(shape.usageChunk(shape.usage(summaries))) }
            } catch let error as CancellationError {
                throw error
            } catch {
                // The status line is gone; the error travels as an event, as OpenAI's streams do.
                try await writer.write(ByteBuffer(string: "data: " + String(buffer: APIError.from(error).jsonBody) + "\n\n"))
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }

    /// The events of several generations as one stream, each with its generation's index.
    /// Cancelling the consumer cancels every generation.
    static func merge(_ streams: [AsyncThrowingStream<GenerationEvent, Error>]) -> AsyncThrowingStream<(Int, GenerationEvent), Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for (index, stream) in streams.enumerated() {
                            group.addTask { for try await event in stream { continuation.yield((index, event)) } }
                        }
                        try await group.waitForAll()
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Queues one generation (compiling its grammar off the event loop); the request's scope cancels it.
    func submit(prompt: [TokenID], parameters: GenerationParameters, chat: Bool, scope: RequestScope) async throws -> AsyncThrowingStream<GenerationEvent, Error> {
        let cancellation = scope.cancellation
        return try await engine.workers.run(cancellation: cancellation) { [engine] _ in
            UncheckedStreams(streams: [try engine.scheduler.submit(prompt: prompt, parameters: parameters, startOfAnswer: chat, cancellation: cancellation)])
        }.streams[0]
    }

    /// One line per generation, as llama-server prints its timings.
    static func log(_ summary: GenerationSummary, chat: Bool, logger: Logger) {
        let s = summary.statistics
        logger.info("\(chat ? "chat completion" : "completion"): \(s.promptTokens) prompt tokens (\(summary.reusedPromptTokens) cached), \(s.generatedTokens) generated at \(String(format: "%.1f", s.generationTokensPerSecond)) tokens/s, finish: \(summary.finishReason.rawValue)")
    }

    // MARK: Embeddings

    func embeddings(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        defer { scope.end() }
        let contextSize = engine.scheduler.contextSize
        let inputs = try await engine.workers.run(cancellation: scope.cancellation) { [model, engine] _ in
            try embeddingInputs(fields, tokenizer: model.tokenizer, maxInputs: RequestLimits.maxEmbeddingInputs) { text in
                try engine.checkLength(ofText: text, limit: contextSize, param: "input")
            }
        }
        for tokens in inputs { try checkVocabulary(tokens, param: "input") }
        let dimension = model.configuration.embeddingLength
        if let d = try fields.integer("dimensions"), d != dimension {
            throw APIError.badRequest("this model's embeddings have \(dimension) dimensions; 'dimensions' cannot change that", param: "dimensions")
        }
        let format = try fields.string("encoding_format") ?? "float"
        guard format == "float" || format == "base64" else {
            throw APIError.badRequest("'encoding_format' must be float or base64", param: "encoding_format")
        }
        _ = try fields.string("user")
        let vectors: [[Float]]
        do {
            vectors = try await engine.embeddings(inputs, cancellation: scope.cancellation)
        } catch {
            throw scope.timedOut ? scope.timeoutError : error
        }
        let tokenCount = inputs.reduce(0) { $0 + $1.count }
        metrics.countEmbedded(tokens: tokenCount)
        let data: [JinjaValue] = vectors.enumerated().map { index, vector in
            let embedding: JinjaValue
            if format == "base64" {
                // Little-endian float32, as OpenAI sends it.
                embedding = .string(vector.withUnsafeBytes { Data($0) }.base64EncodedString())
            } else {
                embedding = .array(vector.map { .double(Double("\($0)") ?? Double($0)) })
            }
            return .object([("object", .string("embedding")), ("index", .int(index)), ("embedding", embedding)])
        }
        return json(.object([("object", .string("list")), ("data", .array(data)), ("model", .string(engine.modelID)),
                             ("usage", .object([("prompt_tokens", .int(tokenCount)), ("total_tokens", .int(tokenCount))]))]))
    }

    // MARK: Helpers

    func checkVocabulary(_ tokens: [TokenID], param: String) throws {
        let size = model.configuration.vocabularySize
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= size }) {
            throw APIError.badRequest("token id \(bad) is outside the vocabulary (0..<\(size))", param: param)
        }
    }

    func json(_ value: JinjaValue, status: HTTPResponse.Status = .ok) -> Response { Self.json(value, status: status) }

    static func json(_ value: JinjaValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.jsonText)))
    }
}

/// The JSON of chat and text completions, whole or as stream chunks.
struct ResponseShape: Sendable {
    let chat: Bool
    let model: String
    let id: String
    let created = Int(Date().timeIntervalSince1970)

    init(chat: Bool, model: String) {
        self.chat = chat
        self.model = model
        let hex = (0..<12).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        id = (chat ? "chatcmpl-" : "cmpl-") + hex
    }

    /// OpenAI's finish reason; an answer that ended with calls ends with "tool_calls".
    static func finishReason(_ reason: FinishReason, calledTools: Bool = false) -> JinjaValue {
        if calledTools, reason == .stop { return .string("tool_calls") }
        switch reason {
        case .stop: return .string("stop")
        case .length, .contextFull: return .string("length")
        case .cancelled: return .none
        }
    }

    /// Usage of one request: the prompt counted once, the completions of every choice together.
    func usage(_ summaries: [GenerationSummary]) -> JinjaValue {
        let prompt = summaries.first?.statistics.promptTokens ?? 0
        let completion = summaries.reduce(0) { $0 + $1.statistics.generatedTokens }
        let cached = summaries.map(\.reusedPromptTokens).max() ?? 0
        return .object([("prompt_tokens", .int(prompt)), ("completion_tokens", .int(completion)),
                        ("total_tokens", .int(prompt + completion)),
                        ("prompt_tokens_details", .object([("cached_tokens", .int(cached))]))])
    }

    private func header(_ object: String) -> [(String, JinjaValue)] {
        [("id", .string(id)), ("object", .string(object)), ("created", .int(created)), ("model", .string(model)),
         ("system_fingerprint", .string("swift-llama"))]
    }

    func choice(index: Int, text: String, reason: FinishReason, logprobs: JinjaValue) -> JinjaValue {
        chat
            ? .object([("index", .int(index)), ("message", .object([("role", .string("assistant")), ("content", .string(text))])),
                       ("logprobs", logprobs), ("finish_reason", Self.finishReason(reason))])
            : .object([("index", .int(index)), ("text", .string(text)), ("logprobs", logprobs), ("finish_reason", Self.finishReason(reason))])
    }

    /// A chat choice from an answer taken apart: the text (null when there are only calls), the
    /// thinking as `reasoning_content`, and the calls.
    func choice(index: Int, answer: ParsedAnswer, reason: FinishReason, logprobs: JinjaValue) -> JinjaValue {
        let calls = answer.toolCalls
        var message: [(String, JinjaValue)] = [("role", "assistant"), ("content", calls.isEmpty || !answer.content.isEmpty ? .string(answer.content) : .none)]
        if let reasoning = answer.reasoning { message.append(("reasoning_content", .string(reasoning))) }
        if !calls.isEmpty {
            message.append(("tool_calls", .array(calls.map { call in
                .object([("id", .string(call.id)), ("type", "function"),
                         ("function", .object([("name", .string(call.name)), ("arguments", .string(call.arguments))]))])
            })))
        }
        return .object([("index", .int(index)), ("message", .object(message)), ("logprobs", logprobs),
                        ("finish_reason", Self.finishReason(reason, calledTools: !calls.isEmpty))])
    }

    /// A streamed piece of a chat answer as OpenAI sends it: a call's first delta has its index,
    /// id, type and name; later ones its index and a fragment of the arguments.
    static func delta(_ delta: ToolCallStream.Delta) -> JinjaValue {
        switch delta {
        case .content(let text): return .object([("content", .string(text))])
        case .reasoning(let text): return .object([("reasoning_content", .string(text))])
        case .toolCall(let index, let id, let name, let arguments):
            var call: [(String, JinjaValue)] = [("index", .int(index))]
            if let id { call += [("id", .string(id)), ("type", "function")] }
            var function: [(String, JinjaValue)] = []
            if let name { function.append(("name", .string(name))) }
            function.append(("arguments", .string(arguments)))
            call.append(("function", .object(function)))
            return .object([("tool_calls", .array([.object(call)]))])
        }
    }

    func whole(choices: [JinjaValue], usage: JinjaValue) -> JinjaValue {
        .object(header(chat ? "chat.completion" : "text_completion") + [("choices", .array(choices)), ("usage", usage)])
    }

    /// A chunk with a delta (chat) or a piece of text (completions) of choice `index`.
    func chunk(index: Int = 0, delta: JinjaValue, finish: FinishReason? = nil, calledTools: Bool = false, includeUsage: Bool,
               logprobs: JinjaValue = .none) -> JinjaValue {
        let reason = finish.map { Self.finishReason($0, calledTools: calledTools) } ?? .none
        let choice: JinjaValue = chat
            ? .object([("index", .int(index)), ("delta", delta), ("logprobs", logprobs), ("finish_reason", reason)])
            : .object([("index", .int(index)), ("text", delta), ("logprobs", logprobs), ("finish_reason", reason)])
        var pairs = header(chat ? "chat.completion.chunk" : "text_completion") + [("choices", .array([choice]))]
        if includeUsage { pairs.append(("usage", .none)) }
        return .object(pairs)
    }

    /// The extra last chunk of `stream_options.include_usage`: no choices, the usage.
    func usageChunk(_ usage: JinjaValue) -> JinjaValue {
        .object(header(chat ? "chat.completion.chunk" : "text_completion") + [("choices", .array([])), ("usage", usage)])
    }
}

/// Token log probabilities gathered for a response or the next chunk, in OpenAI's shapes: chat's
/// `{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}`, or the completions API's
/// `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`.
struct LogprobList {
    let chat: Bool
    let enabled: Bool
    private var entries: [TokenLogprob] = []
    /// Characters of completion text before the next entry (text_offset runs across chunks).
    private var offset = 0

    init(chat: Bool, enabled: Bool) {
        self.chat = chat
        self.enabled = enabled
    }

    mutating func add(_ entry: TokenLogprob) { entries.append(entry) }

    /// The gathered entries as JSON (null when log probabilities were not asked for), emptied.
    mutating func take() -> JinjaValue {
        guard enabled else { return .none }
        defer { entries = [] }
        func number(_ x: Float) -> JinjaValue { .double(x.isFinite ? Double("\(x)") ?? Double(x) : -9999) }
        if chat {
            func item(_ a: TokenLogprob.Alternative) -> [(String, JinjaValue)] {
                [("token", .string(a.text)), ("logprob", number(a.logprob)), ("bytes", .array(a.bytes.map { .int(Int($0)) }))]
            }
            let content = entries.map { entry in
                JinjaValue.object(item(entry.chosen) + [("top_logprobs", .array(entry.top.map { .object(item($0)) }))])
            }
            return .object([("content", .array(content)), ("refusal", .none)])
        }
        var offsets: [JinjaValue] = []
        for entry in entries {
            offsets.append(.int(offset))
            offset += entry.chosen.text.count
        }
        return .object([
            ("tokens", .array(entries.map { .string($0.chosen.text) })),
            ("token_logprobs", .array(entries.map { number($0.chosen.logprob) })),
            ("top_logprobs", .array(entries.map { entry in .object(entry.top.map { ($0.text, number($0.logprob)) }) })),
            ("text_offset", .array(offsets)),
        ])
    }
}

/// Streams handed back from a worker thread (each is safe to consume from one task).
struct UncheckedStreams: @unchecked Sendable {
    let streams: [AsyncThrowingStream<GenerationEvent, Error>]
}

/// One request's life: a cancellation that its client leaving or its deadline trips, for
/// everything done on its behalf (template, tokens, grammar, generation, embeddings).
final class RequestScope: @unchecked Sendable {
    let cancellation = Cancellation()
    private let lock = NSLock()
    private var expired = false
    private var watch: DisconnectWatcher.Registration?
    private var timer: Task<Void, Never>?
    private var endActions: [@Sendable () -> Void] = []
    let timeout: Duration?
    let started = ContinuousClock.now
    /// Time spent waiting for the model to load (Ollama's load_duration).
    var loadNanoseconds: Int {
        get { lock.withLock { loadTime } }
        set { lock.withLock { loadTime = newValue } }
    }
    private var loadTime = 0
    var elapsedNanoseconds: Int { ServerRoutes.nanoseconds(started.duration(to: .now)) }

    init(context: ServerRequestContext, timeout: Duration?) async {
        self.timeout = timeout
        let cancellation = self.cancellation
        watch = await context.whenClientLeaves { cancellation.cancel() }
        if let timeout {
            timer = Task { [weak self] in
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                self?.lock.withLock { self?.expired = true }
                cancellation.cancel()
            }
        }
    }

    /// The deadline passed (and cancelled the work).
    var timedOut: Bool { lock.withLock { expired } }

    var timeoutError: APIError {
        APIError(.gatewayTimeout, "the request took longer than the server allows (--timeout \(timeout.map { "\($0.components.seconds)" } ?? "?") seconds)",
                 type: "server_error", code: "timeout")
    }

    /// Runs `action` once when the scope ends (a model lease's release).
    func onEnd(_ action: @escaping @Sendable () -> Void) {
        lock.withLock { endActions.append(action) }
    }

    /// The answer is out: stop watching, and run the end actions (once).
    func end() {
        watch?.cancel()
        timer?.cancel()
        let actions = lock.withLock { defer { endActions = [] }; return endActions }
        for action in actions { action() }
    }

    /// A streamed answer whose body never ran still ends.
    deinit { end() }
}

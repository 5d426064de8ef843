import Crypto
import Foundation
import Hummingbird
import Jinja
import Llama
import LlamaAPI

/// Where the server gets models it does not have (Ollama's /api/pull) and how it deletes them
/// (/api/delete). `llama serve` gives it the hub; the library leaves the choice to its user.
public protocol ModelSource: Sendable {
    /// Fetches the model `name` names, reporting each file's progress; returns it ready to serve.
    func pull(_ name: String, progress: @escaping @Sendable (PullProgress) -> Void) async throws -> ServedModel
    /// Deletes the model's files; false when they are not the source's to delete.
    func delete(_ model: ServedModel) throws -> Bool
}

/// One file's download progress, as /api/pull reports it.
public struct PullProgress: Sendable {
    public var digest: String
    public var total: Int64
    public var completed: Int64
    public init(digest: String, total: Int64, completed: Int64) {
        self.digest = digest
        self.total = total
        self.completed = completed
    }
}

/// Ollama's API on the same server, so Ollama's clients (its Python and JavaScript libraries,
/// Open WebUI, Continue, ...) work unchanged. Errors take its shape, `{"error": "..."}`.
extension ServerRoutes {
    /// The Ollama version whose API these routes follow (clients compare it to enable features).
    static let ollamaVersion = "0.12.0"

    func addOllama(to router: Router<Context>) {
        router.get("/api/version") { _, _ in Routes.json(.object([("version", .string(Self.ollamaVersion))])) }
        // Reading a model's metadata the first time takes a while (its vocabulary): on a worker.
        router.get("/api/tags") { _, _ in
            let entries = try await models.workers.run { _ in models.served.compactMap { try? ollamaEntry($0) } }
            return Routes.json(.object([("models", .array(entries))]))
        }
        router.get("/api/ps") { _, _ in try await models.workers.run { _ in runningModels() } }
        router.post("/api/show") { request, _ in try await show(request) }
        router.post("/api/chat") { request, context in
            try await withModel(request, context) { routes, fields, scope in try await routes.ollamaChat(fields, context, scope: scope) }
        }
        router.post("/api/generate") { request, context in
            try await withModel(request, context) { routes, fields, scope in try await routes.ollamaGenerate(fields, context, scope: scope) }
        }
        router.post("/api/embed") { request, context in
            try await withModel(request, context) { routes, fields, scope in try await routes.ollamaEmbed(fields, scope: scope, legacy: false) }
        }
        router.post("/api/embeddings") { request, context in
            try await withModel(request, context) { routes, fields, scope in try await routes.ollamaEmbed(fields, scope: scope, legacy: true) }
        }
        router.post("/api/pull") { request, _ in try await pull(request) }
        router.delete("/api/delete") { request, _ in try await delete(request) }
    }

    /// The name a request gives: `model`, or `name` as older clients send it.
    func requestedName(_ fields: JSONFields) throws -> String {
        guard let name = try fields.string("model") ?? fields.string("name"), !name.isEmpty else {
            throw APIError.badRequest("model is required", param: "model")
        }
        return name
    }

    /// /api/ps: the loaded models, with when they unload.
    func runningModels() -> Response {
        let running: [JinjaValue] = models.loadedModels.compactMap { loaded in
            guard case .object(var pairs)? = try? ollamaEntry(loaded.model) else { return nil }
            pairs.removeAll { $0.0 == "modified_at" }
            let expiry = models.expiry(of: loaded) ?? Date(timeIntervalSince1970: 253_402_300_799)  // never: year 9999
            pairs += [("expires_at", .string(Self.timestamp(expiry))), ("size_vram", .int(0)),
                      ("context_length", .int(loaded.engine.scheduler.contextSize))]
            return .object(pairs)
        }
        return Routes.json(.object([("models", .array(running))]))
    }

    /// A model as /api/tags lists it.
    func ollamaEntry(_ model: ServedModel) throws -> JinjaValue {
        let info = try models.info(model)
        return .object([("name", .string(model.id)), ("model", .string(model.id)),
                        ("modified_at", .string(Self.timestamp(Self.modified(model.path)))),
                        ("size", .int(info.fileSize)), ("digest", .string(Self.digest(model.path))), ("details", Self.details(info))])
    }

    static func details(_ info: ModelInfo) -> JinjaValue {
        let family = info.architecture ?? "llama"
        return .object([("parent_model", ""), ("format", "gguf"), ("family", .string(family)), ("families", .array([.string(family)])),
                        ("parameter_size", .string(parameterSize(info.parameterCount))),
                        ("quantization_level", .string(info.fileType.map { $0.replacingOccurrences(of: "mostly ", with: "") } ?? "unknown"))])
    }

    /// "135M", "1.1B", "8.0B", as Ollama writes sizes.
    static func parameterSize(_ count: Int) -> String {
        count >= 1_000_000_000 ? String(format: "%.1fB", Double(count) / 1e9) : String(format: "%.0fM", Double(count) / 1e6)
    }

    /// The blob's SHA-256 when the file is in the hub's cache (its name there), else a hash of
    /// where the file is and what it is (reading gigabytes to list models would take minutes).
    static func digest(_ path: String) -> String {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath()
        let name = resolved.lastPathComponent
        if name.count == 64, name.allSatisfy(\.isHexDigit) { return name }
        let attributes = try? FileManager.default.attributesOfItem(atPath: resolved.path)
        let size = (attributes?[.size] as? NSNumber)?.intValue ?? 0
        return SHA256.hash(data: Array("\(resolved.path)\u{0}\(size)\u{0}\(modified(path).timeIntervalSince1970)".utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// RFC 3339 with fractions of a second, as Go writes times.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    func show(_ request: Request) async throws -> Response {
        let fields = try await parse(request)
        let model = try models.find(try requestedName(fields))
        let info = try models.info(model)
        let template = try await models.workers.run { _ in try GGUFFile(path: model.path).string("tokenizer.chat_template") }
        let arch = info.architecture ?? "llama"
        var modelInfo: [(String, JinjaValue)] = [("general.architecture", .string(arch)), ("general.parameter_count", .int(info.parameterCount))]
        if let name = info.name { modelInfo.append(("general.name", .string(name))) }
        let h = info.hyperparameters
        for (key, value) in [("context_length", h.contextLength), ("embedding_length", h.embeddingLength), ("block_count", h.blockCount),
                             ("feed_forward_length", h.feedForwardLength), ("attention.head_count", h.headCount),
                             ("attention.head_count_kv", h.headCountKV), ("vocab_size", h.vocabularySize)] {
            if let value { modelInfo.append(("\(arch).\(key)", .int(value))) }
        }
        var capabilities: [JinjaValue] = ["completion", "embedding"]
        if let template, template.contains("tools") { capabilities.append("tools") }
        if let template, template.contains("<think>") || template.contains("enable_thinking") { capabilities.append("thinking") }
        return Routes.json(.object([
            ("modelfile", .string("# Modelfile of a GGUF file served by swift-llama\nFROM \(model.path)\n")),
            ("parameters", ""), ("template", .string(template ?? "")), ("details", Self.details(info)),
            ("model_info", .object(modelInfo)), ("capabilities", .array(capabilities)),
            ("modified_at", .string(Self.timestamp(Self.modified(model.path)))),
        ]))
    }

    /// Fetches a model from the hub into its cache and offers it; progress as Ollama's objects.
    func pull(_ request: Request) async throws -> Response {
        let fields = try await parse(request)
        let name = try requestedName(fields)
        guard let hub else {
            throw APIError(.notImplemented, "this server cannot fetch models; start it with `llama serve` to pull from the hub", type: "server_error")
        }
        let models = self.models
        // Whole: one object at the end, and an error with its own status (404 for an unknown repo).
        guard try fields.bool("stream") ?? true else {
            models.add(try await hub.pull(name) { _ in })
            return Routes.json(.object([("status", "success")]))
        }
        let (lines, continuation) = AsyncStream<JinjaValue>.makeStream()
        let task = Task {
            continuation.yield(.object([("status", "pulling manifest")]))
            do {
                let model = try await hub.pull(name) { progress in
                    let short = String(progress.digest.prefix(12))
                    continuation.yield(.object([("status", .string("pulling \(short)")), ("digest", .string("sha256:" + progress.digest)),
                                                ("total", .int(Int(progress.total))), ("completed", .int(Int(progress.completed)))]))
                }
                continuation.yield(.object([("status", "verifying sha256 digest")]))
                models.add(model)
                continuation.yield(.object([("status", "writing manifest")]))
                continuation.yield(.object([("status", "success")]))
            } catch {
                // The status line is gone: the error travels as a line, as Ollama sends it.
                continuation.yield(.object([("error", .string(APIError.from(error).message))]))
            }
            continuation.finish()
        }
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
            defer { task.cancel() }
            for await line in lines { try await writer.write(ByteBuffer(string: line.jsonText + "\n")) }
            try await writer.finish(nil)
        })
    }

    func delete(_ request: Request) async throws -> Response {
        let fields = try await parse(request)
        let name = try requestedName(fields)
        let model: ServedModel
        do {
            model = try models.find(name)
        } catch {
            throw APIError(.notFound, "model '\(name.prefix(200))' not found")
        }
        guard let hub, try hub.delete(model) else {
            throw APIError(.badRequest, "'\(model.id)' was not pulled into the hub's cache (it is \(model.path)); only pulled models can be deleted here")
        }
        models.remove(path: model.path)
        return Response(status: .ok)
    }
}

extension Routes {
    func ollamaParameters(_ fields: JSONFields) throws -> GenerationParameters {
        try OllamaRequest.parameters(fields, contextSize: engine.scheduler.contextSize)
    }

    /// `think`: false asks the template not to think; true or a level keeps it.
    func thinkingVariables(_ fields: JSONFields) throws -> [String: JinjaValue] {
        switch fields["think"] {
        case nil, .bool(true)?: return [:]
        case .bool(false)?: return ["enable_thinking": false]
        case .string(let level)? where ["low", "medium", "high"].contains(level): return ["reasoning_effort": .string(level)]
        case let other?: throw JSONFields.mistyped("think", "a boolean or low, medium, high", other)
        }
    }

    /// Fields of every Ollama answer, and the figures of its last line (durations in nanoseconds).
    func ollamaHeader() -> [(String, JinjaValue)] {
        [("model", .string(engine.modelID)), ("created_at", .string(ServerRoutes.timestamp(Date())))]
    }

    func ollamaFigures(_ summary: GenerationSummary?, scope: RequestScope) -> [(String, JinjaValue)] {
        let s = summary?.statistics ?? GenerationStatistics()
        let reason: String
        switch summary?.finishReason {
        case .length?, .contextFull?: reason = "length"
        default: reason = "stop"
        }
        return [("done", true), ("done_reason", .string(reason)),
                ("total_duration", .int(scope.elapsedNanoseconds)), ("load_duration", .int(scope.loadNanoseconds)),
                ("prompt_eval_count", .int(s.promptTokens)), ("prompt_eval_duration", .int(Int(s.promptSeconds * 1e9))),
                ("eval_count", .int(s.generatedTokens)), ("eval_duration", .int(Int(s.generationSeconds * 1e9)))]
    }

    /// The answer to a request with nothing to generate: the model is loaded now (or, with
    /// keep_alive 0, unloads when this request ends).
    func ollamaLoaded(_ fields: JSONFields, chat: Bool) -> Response {
        let unloading = (try? fields["keep_alive"].map(KeepAlive.init(json:))) == .duration(.zero)
        var pairs = ollamaHeader()
        pairs.append(chat ? ("message", .object([("role", "assistant"), ("content", "")])) : ("response", ""))
        pairs += [("done", true), ("done_reason", .string(unloading ? "unload" : "load"))]
        return json(.object(pairs))
    }

    /// A call as Ollama sends it: the arguments as an object, not a string.
    static func ollamaCall(_ call: ToolCall) -> JinjaValue {
        let arguments = (try? JinjaValue(json: call.arguments)).flatMap { value -> JinjaValue? in
            if case .object = value { return value }
            return nil
        } ?? .object([])
        return .object([("function", .object([("name", .string(call.name)), ("arguments", arguments)]))])
    }

    func ollamaChat(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        guard case .array(let items)? = fields["messages"], !items.isEmpty else { return ollamaLoaded(fields, chat: true) }
        var parameters = try ollamaParameters(fields)
        let messages = try chatMessages(fields)
        let tools = try toolUse(fields, template: engine.chatTemplate)
        if let grammar = try tools?.grammar() {
            guard parameters.grammar == nil else { throw APIError.badRequest("tools cannot be combined with 'format'", param: "tools") }
            parameters.grammar = grammar.grammar
            parameters.grammarTriggers = grammar.triggers
        }
        parameters.keptSpecialTokens = model.specialTokens(ToolUse.formatTags)
        var variables = try thinkingVariables(fields)
        if reasoningBudget == 0, variables["enable_thinking"] == nil { variables["enable_thinking"] = .bool(false) }
        let (prompt, opensThinking) = try await chatPrompt(messages, tools: tools, variables: variables, scope: scope)
        parameters.reasoningBudget = reasoningBudget
        parameters.startsInReasoning = opensThinking
        let parser = ToolCallParser(format: tools?.format ?? .generic, parsesToolCalls: tools?.isActive ?? false,
                                    splitsReasoning: true, startsInReasoning: opensThinking)
        let events = try await submit(prompt: prompt, parameters: parameters, chat: true, scope: scope)
        @Sendable func message(content: String, thinking: String?, calls: [ToolCall]) -> JinjaValue {
            var pairs: [(String, JinjaValue)] = [("role", "assistant"), ("content", .string(content))]
            if let thinking, !thinking.isEmpty { pairs.append(("thinking", .string(thinking))) }
            if !calls.isEmpty { pairs.append(("tool_calls", .array(calls.map(Self.ollamaCall)))) }
            return .object(pairs)
        }
        guard try fields.bool("stream") ?? true else {
            defer { scope.end() }
            let (text, summary) = try await wholeAnswer(events, scope: scope)
            let answer = parser.parse(text)
            return json(.object(ollamaHeader() + [("message", message(content: answer.content, thinking: answer.reasoning, calls: answer.toolCalls))]
                                + ollamaFigures(summary, scope: scope)))
        }
        return ndjson(scope: scope) { send in
            var stream = ToolCallStream(parser: parser)
            func forward(_ deltas: [ToolCallStream.Delta]) async throws {
                for delta in deltas {
                    switch delta {
                    case .content(let text): try await send(.object(ollamaHeader() + [("message", message(content: text, thinking: nil, calls: [])), ("done", false)]))
                    case .reasoning(let text): try await send(.object(ollamaHeader() + [("message", message(content: "", thinking: text, calls: [])), ("done", false)]))
                    case .toolCall: break  // sent whole, once the answer is complete
                    }
                }
            }
            var summary: GenerationSummary?
            for try await event in events {
                switch event {
                case .text(let piece): try await forward(stream.add(piece))
                case .finished(let s): summary = s
                default: break
                }
            }
            let (deltas, answer) = stream.finish()
            try await forward(deltas)
            if !answer.toolCalls.isEmpty {
                try await send(.object(ollamaHeader() + [("message", message(content: "", thinking: nil, calls: answer.toolCalls)), ("done", false)]))
            }
            if scope.timedOut { throw scope.timeoutError }
            try await send(.object(ollamaHeader() + [("message", message(content: "", thinking: nil, calls: []))] + ollamaFigures(summary, scope: scope)))
        }
    }

    func ollamaGenerate(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        let text = try fields.string("prompt") ?? ""
        if let suffix = try fields.string("suffix"), !suffix.isEmpty {
            throw APIError.badRequest("'suffix' (fill in the middle) is not supported", param: "suffix")
        }
        if let template = try fields.string("template"), !template.isEmpty {
            throw APIError.badRequest("'template' is not supported: the model's own chat template is used (or none, with \"raw\": true)", param: "template")
        }
        if case .array(let images)? = fields["images"], !images.isEmpty {
            throw APIError.badRequest("images are not supported: this server runs text models", param: "images")
        }
        var given: [TokenID] = []
        if case .array(let items)? = fields["context"] {
            given = try tokenIDs(items, param: "context")
            try checkVocabulary(given, param: "context")
        }
        let earlier = given
        guard !text.isEmpty || !earlier.isEmpty else { return ollamaLoaded(fields, chat: false) }
        var parameters = try ollamaParameters(fields)
        let contextSize = engine.scheduler.contextSize
        var promptTokens: [TokenID]
        var opensThinking = false
        if try fields.bool("raw") == true {
            promptTokens = try await engine.workers.run(cancellation: scope.cancellation) { [model, engine] _ in
                try engine.checkLength(ofText: text, limit: contextSize, param: "prompt")
                return model.tokenizer.encode(text, addSpecial: earlier.isEmpty, parseSpecial: true)
            }
        } else {
            var messages: [ChatMessage] = []
            if let system = try fields.string("system"), !system.isEmpty { messages.append(.system(system)) }
            messages.append(.user(text))
            (promptTokens, opensThinking) = try await chatPrompt(messages, tools: nil, variables: try thinkingVariables(fields), scope: scope)
            // A continuation: the template's own start (BOS) is already in the context.
            if !earlier.isEmpty, let bos = model.tokenizer.bos, promptTokens.first == bos { promptTokens.removeFirst() }
        }
        let prompt = earlier + promptTokens
        parameters.startsInReasoning = opensThinking
        parameters.reasoningBudget = reasoningBudget
        let parser = ToolCallParser(format: .generic, parsesToolCalls: false, splitsReasoning: true, startsInReasoning: opensThinking)
        let events = try await submit(prompt: prompt, parameters: parameters, chat: !(try fields.bool("raw") ?? false), scope: scope)
        // The tokens to send back as `context` for the next turn.
        let tokenizer = model.tokenizer
        @Sendable func context(_ generated: String) -> JinjaValue {
            .array((prompt + tokenizer.encode(generated, addSpecial: false, parseSpecial: false)).map { .int(Int($0)) })
        }
        guard try fields.bool("stream") ?? true else {
            defer { scope.end() }
            let (text, summary) = try await wholeAnswer(events, scope: scope)
            let answer = parser.parse(text)
            var pairs = ollamaHeader() + [("response", .string(answer.content))]
            if let thinking = answer.reasoning { pairs.append(("thinking", .string(thinking))) }
            return json(.object(pairs + ollamaFigures(summary, scope: scope) + [("context", context(text))]))
        }
        return ndjson(scope: scope) { send in
            var stream = ToolCallStream(parser: parser)
            var all = ""
            func forward(_ deltas: [ToolCallStream.Delta]) async throws {
                for delta in deltas {
                    switch delta {
                    case .content(let text): try await send(.object(ollamaHeader() + [("response", .string(text)), ("done", false)]))
                    case .reasoning(let text): try await send(.object(ollamaHeader() + [("response", ""), ("thinking", .string(text)), ("done", false)]))
                    case .toolCall: break
                    }
                }
            }
            var summary: GenerationSummary?
            for try await event in events {
                switch event {
                case .text(let piece):
                    all += piece
                    try await forward(stream.add(piece))
                case .finished(let s): summary = s
                default: break
                }
            }
            try await forward(stream.finish().deltas)
            if scope.timedOut { throw scope.timeoutError }
            try await send(.object(ollamaHeader() + [("response", "")] + ollamaFigures(summary, scope: scope) + [("context", context(all))]))
        }
    }

    /// /api/embed (`input`: a string or strings; `truncate`, default true, cuts inputs to the
    /// context) and the older /api/embeddings (`prompt`: one string, one `embedding`).
    func ollamaEmbed(_ fields: JSONFields, scope: RequestScope, legacy: Bool) async throws -> Response {
        defer { scope.end() }
        let truncate = try fields.bool("truncate") ?? true
        let contextSize = engine.scheduler.contextSize
        let source = legacy ? JSONFields(pairs: [("input", .string(try fields.string("prompt") ?? ""))]) : fields
        var inputs = try await engine.workers.run(cancellation: scope.cancellation) { [model, engine] _ in
            try embeddingInputs(source, tokenizer: model.tokenizer, maxInputs: RequestLimits.maxEmbeddingInputs) { text in
                // Truncation cuts tokens; a text with far more than the context is refused before tokenizing.
                try engine.checkLength(ofText: text, limit: truncate ? 64 * contextSize : contextSize, param: "input")
            }
        }
        if truncate { inputs = inputs.map { Array($0.prefix(contextSize)) } }
        for tokens in inputs { try checkVocabulary(tokens, param: "input") }
        if let d = try fields.integer("dimensions"), d != model.configuration.embeddingLength {
            throw APIError.badRequest("this model's embeddings have \(model.configuration.embeddingLength) dimensions; 'dimensions' cannot change that", param: "dimensions")
        }
        let vectors: [[Float]]
        do {
            vectors = try await engine.embeddings(inputs, cancellation: scope.cancellation)
        } catch {
            throw scope.timedOut ? scope.timeoutError : error
        }
        let count = inputs.reduce(0) { $0 + $1.count }
        metrics.countEmbedded(tokens: count)
        func numbers(_ vector: [Float]) -> JinjaValue { .array(vector.map { .double(Double("\($0)") ?? Double($0)) }) }
        if legacy { return json(.object([("embedding", numbers(vectors.first ?? []))])) }
        return json(.object([("model", .string(engine.modelID)), ("embeddings", .array(vectors.map(numbers))),
                             ("total_duration", .int(scope.elapsedNanoseconds)), ("load_duration", .int(scope.loadNanoseconds)),
                             ("prompt_eval_count", .int(count))]))
    }

    /// A generation's whole text and its summary, for an answer sent in one piece.
    func wholeAnswer(_ events: AsyncThrowingStream<GenerationEvent, Error>, scope: RequestScope) async throws -> (String, GenerationSummary?) {
        var text = "", summary: GenerationSummary?
        for try await event in events {
            if case .text(let piece) = event { text += piece }
            if case .finished(let s) = event { summary = s }
        }
        if scope.timedOut { throw scope.timeoutError }
        return (text, summary)
    }

    /// One JSON object per line, as Ollama streams; an error after the status line travels as a
    /// line `{"error": ...}`. The scope ends with the stream.
    func ndjson(scope: RequestScope, _ body: @escaping @Sendable (_ send: (JinjaValue) async throws -> Void) async throws -> Void) -> Response {
        Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
            defer { scope.end() }
            do {
                try await body { value in try await writer.write(ByteBuffer(string: value.jsonText + "\n")) }
            } catch let error as CancellationError {
                throw error
            } catch {
                try await writer.write(ByteBuffer(string: JinjaValue.object([("error", .string(APIError.from(error).message))]).jsonText + "\n"))
            }
            try await writer.finish(nil)
        })
    }
}

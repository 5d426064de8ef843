import Foundation
import Llama
import LlamaAPI
import ServiceLifecycle

/// One loaded model as the routes use it: the model, the scheduler that runs its generations
/// and a context for its embeddings. As a `Service` (a server of this one engine), it stops the
/// scheduler when the application shuts down (after the HTTP server has finished its requests).
public final class InferenceEngine: Service, Sendable {
    public let model: LlamaModel
    /// The name clients use in `model` (the file name without .gguf, unless an alias is given).
    public let modelID: String
    public let scheduler: BatchScheduler
    /// Embeddings run one at a time on a context of their own, beside the generations.
    private let embedder: LlamaContext
    private let embedQueue = DispatchQueue(label: "llama-embeddings")
    /// Per-request preparation (body, template, tokens, grammar) off the cooperative threads;
    /// shared by the models of one server.
    let workers: WorkerPool
    private let ownsWorkers: Bool
    /// The longest token's text in UTF-8 bytes: a text of n bytes has at least n / this tokens,
    /// so a prompt far too long for the context is refused before it is tokenized.
    let longestTokenBytes: Int
    /// How conversations become prompts: the model's own template unless the server was given one.
    public let chatTemplate: ChatTemplate

    public convenience init(model: LlamaModel, modelID: String? = nil, scheduler: BatchScheduler.Configuration, chatTemplate: ChatTemplate? = nil) {
        self.init(model: model, modelID: modelID, scheduler: scheduler, chatTemplate: chatTemplate, workers: nil)
    }

    /// The engine for `model` as the server's configuration describes (slots, context, threads, cache).
    public convenience init(model: LlamaModel, modelID: String? = nil, configuration: ServerConfiguration) {
        self.init(model: model, modelID: modelID, configuration: configuration, workers: nil)
    }

    convenience init(model: LlamaModel, modelID: String?, configuration: ServerConfiguration, workers: WorkerPool?) {
        let scheduler = BatchScheduler.Configuration(slots: configuration.slots, contextSize: configuration.slotContext(for: model),
                                                     threads: configuration.threads, batchSize: configuration.batchSize,
                                                     queueLimit: configuration.queueLimit, kvCache: configuration.kvCache)
        self.init(model: model, modelID: modelID ?? configuration.modelAlias, scheduler: scheduler, chatTemplate: configuration.chatTemplate, workers: workers)
    }

    init(model: LlamaModel, modelID: String?, scheduler: BatchScheduler.Configuration, chatTemplate: ChatTemplate?, workers: WorkerPool?) {
        self.model = model
        self.chatTemplate = chatTemplate ?? model.chatTemplate
        self.modelID = modelID ?? Self.defaultID(path: model.path)
        self.scheduler = BatchScheduler(model: model, configuration: scheduler)
        embedder = LlamaContext(model: model, contextSize: self.scheduler.contextSize, batchSize: scheduler.batchSize,
                                threads: scheduler.threads, kvCache: scheduler.kvCache)
        // The slots' caches are the server's largest allocation: taken at start, so memory stays
        // level under load and a context too large for the machine fails now.
        self.scheduler.commitMemory()
        embedder.commitMemory()
        self.workers = workers ?? WorkerPool(threads: max(2, SystemInfo.physicalCores))
        ownsWorkers = workers == nil
        longestTokenBytes = max(1, model.tokenizer.definition.tokens.lazy.map(\.utf8.count).max() ?? 1)
    }

    /// Refuses a text that certainly holds more tokens than `limit` without tokenizing it.
    func checkLength(ofText text: String, limit: Int, param: String) throws {
        let fewest = text.utf8.count / longestTokenBytes
        guard fewest <= limit else {
            throw APIError(.badRequest, "the prompt is too long: it has at least \(fewest) tokens but the context holds \(limit) per slot; shorten it or start the server with a larger context (-c)",
                           param: param, code: "context_length_exceeded")
        }
    }

    static func defaultID(path: String) -> String {
        let name = URL(fileURLWithPath: path).lastPathComponent
        return name.hasSuffix(".gguf") ? String(name.dropLast(5)) : name
    }

    /// Unit-length mean-pooled embeddings, computed off the event loop, one input at a time; a
    /// cancelled request (its client left) stops before the next input.
    func embeddings(_ inputs: [[TokenID]], cancellation: Cancellation = Cancellation()) async throws -> [[Float]] {
        for (i, tokens) in inputs.enumerated() {
            if tokens.isEmpty { throw APIError.badRequest("input \(i) is empty", param: "input") }
            if tokens.count > embedder.contextSize {
                throw APIError(.badRequest, "input \(i) has \(tokens.count) tokens but the context holds \(embedder.contextSize); shorten it or start the server with a larger context (-c)",
                               param: "input", code: "context_length_exceeded")
            }
        }
        let embedder = self.embedder
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                embedQueue.async {
                    continuation.resume(with: Result {
                        try inputs.map { tokens in
                            if cancellation.isCancelled { throw CancellationError() }
                            return try embedder.embedding(of: tokens)
                        }
                    })
                }
            }
        } onCancel: {
            cancellation.cancel()
        }
    }

    public func run() async throws {
        try? await gracefulShutdown()
        shutdown()
    }

    /// Ends the scheduler's thread (and the workers, when they are this engine's own); the model's
    /// memory goes when the last reference to the engine does.
    public func shutdown() {
        scheduler.shutdown()
        if ownsWorkers { workers.shutdown() }
    }
}

/// Counters for /metrics that the scheduler does not keep itself.
final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [String: Int] = [:]
    private var embeddingTokens = 0

    func count(route: String, status: Int) {
        lock.withLock { requests["route=\"\(route)\",status=\"\(status)\"", default: 0] += 1 }
    }

    func countEmbedded(tokens: Int) { lock.withLock { embeddingTokens += tokens } }

    /// Prometheus' text format.
    func render(_ s: BatchScheduler.Status, models: ModelRegistry) -> String {
        let (requests, embedded) = lock.withLock { (self.requests, embeddingTokens) }
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ values: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in values {
                out += name + (labels.isEmpty ? "" : "{\(labels)}") + " " + value.compact + "\n"
            }
        }
        metric("llama_requests_total", "counter", "HTTP requests answered, by route and status.",
               requests.sorted { $0.key < $1.key }.map { ($0.key, Double($0.value)) })
        metric("llama_prompt_tokens_total", "counter", "Prompt tokens of generation requests.", [("", Double(s.promptTokens))])
        metric("llama_prompt_tokens_reused_total", "counter", "Prompt tokens found in a slot's cache and not evaluated again.", [("", Double(s.reusedPromptTokens))])
        metric("llama_generated_tokens_total", "counter", "Tokens generated.", [("", Double(s.generatedTokens))])
        metric("llama_embedding_tokens_total", "counter", "Tokens embedded.", [("", Double(embedded))])
        metric("llama_generation_requests_finished_total", "counter", "Generations finished (completed, stopped or cancelled).", [("", Double(s.requestsFinished))])
        metric("llama_busy_seconds_total", "counter", "Time spent in forward steps.", [("", s.busySeconds)])
        metric("llama_generated_tokens_per_second", "gauge", "Tokens generated per second of generating steps, all slots together.",
               [("", s.generatingSeconds > 0 ? Double(s.generatedTokens) / s.generatingSeconds : 0)])
        metric("llama_queue_depth", "gauge", "Requests waiting for a slot.", [("", Double(s.queued))])
        metric("llama_slots_busy", "gauge", "Slots generating now.", [("", Double(s.busySlots))])
        metric("llama_slots", "gauge", "Slots (parallel generations) of the models loaded now.", [("", Double(s.slots))])
        metric("llama_prompt_cache_hit_ratio", "gauge", "Share of prompt tokens found in a slot's cache since start (reused / prompt tokens).",
               [("", s.promptTokens > 0 ? Double(s.reusedPromptTokens) / Double(s.promptTokens) : 0)])
        metric("llama_requests_in_flight", "gauge", "Requests holding a model now (generating, embedding or waiting for a slot).", [("", Double(models.inFlight))])
        metric("llama_models_loaded", "gauge", "Models loaded now.", [("", Double(models.loadedModels.count))])
        metric("llama_ready", "gauge", "1 when the server takes requests; 0 while its first model loads or while it drains.",
               [("", models.currentPhase == .ready ? 1 : 0)])
        return out
    }
}

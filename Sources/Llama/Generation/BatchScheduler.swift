import Foundation
import Tokenizers

/// Serves many generations at once on one model: a fixed number of slots (sequences of one
/// `LlamaContext`), a bounded queue in front of them, and one thread that runs a single batched
/// forward step across every busy slot, so the weights are read once per step for all of them
/// (continuous batching). Requests join and leave between steps. A slot keeps the tokens of its
/// last request, and a new request goes to the free slot that shares the longest prefix with it,
/// which is then not evaluated again.
public final class BatchScheduler: Sendable {
    private let engine: BatchEngine

    public var model: LlamaModel { engine.model }
    public var configuration: Configuration { engine.configuration }
    /// Positions each slot holds.
    public var contextSize: Int { engine.contextSize }
    /// How the slots' KV caches store keys and values, and the bytes they take together.
    public var kvCache: LlamaContext.KVCacheTypes { engine.kvCache }
    public var kvCacheBytes: Int { engine.kvCacheBytes }
    public var currentStatus: Status { engine.currentStatus }

    public init(model: LlamaModel, configuration: Configuration = Configuration()) {
        engine = BatchEngine(model: model, configuration: configuration)
    }

    /// Dropping the scheduler shuts its thread down once its requests have ended (each request
    /// keeps it alive until then, so a stream may be read after the last use of the scheduler).
    deinit { engine.shutdown() }

    /// Takes the KV caches' memory now (`LlamaContext.commitMemory`).
    public func commitMemory() { engine.commitMemory() }

    /// Queues a generation after `prompt` (BOS included where the model wants it). Throws at once
    /// for an empty or too long prompt, a grammar that does not parse, or a full queue. The stream
    /// yields text, then `.finished`; dropping it or cancelling its task frees the slot at the
    /// next step.
    /// `cancellation` lets a caller stop it from elsewhere, e.g. when its client disconnects (one
    /// cancellation may serve several requests).
    public func submit(prompt: [TokenID], parameters: GenerationParameters, startOfAnswer: Bool = false,
                       cancellation: Cancellation = Cancellation()) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        try engine.submit(prompt: prompt, parameters: parameters, startOfAnswer: startOfAnswer, cancellation: cancellation, owner: self)
    }

    /// Queues the answer to a conversation, rendered with `template` (default: the model's own).
    public func submit(messages: [ChatMessage], parameters: GenerationParameters, template: ChatTemplate? = nil,
                       cancellation: Cancellation = Cancellation()) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        let prompt = try model.chatPromptTokens(messages, template: template)
        return try submit(prompt: prompt, parameters: parameters, startOfAnswer: true, cancellation: cancellation)
    }

    /// Ends every request (queued or running) with `ShutDown` and stops the thread.
    public func shutdown() { engine.shutdown() }
}

extension BatchScheduler {
    public struct Configuration: Sendable {
        /// Generations that run at the same time.
        public var slots: Int
        /// Positions per slot; nil means the model's training context.
        public var contextSize: Int?
        public var threads: Int
        /// Most tokens in one forward step (new prompts are fed in pieces of what is left).
        public var batchSize: Int
        /// Requests that may wait for a slot; more are refused with `QueueFull`.
        public var queueLimit: Int
        public var kvCache: LlamaContext.KVCacheTypes

        public init(slots: Int = 4, contextSize: Int? = nil, threads: Int = SystemInfo.physicalCores, batchSize: Int = 512,
                    queueLimit: Int = 64, kvCache: LlamaContext.KVCacheTypes = .f16) {
            self.slots = max(1, slots)
            self.contextSize = contextSize
            self.threads = max(1, threads)
            self.batchSize = max(1, batchSize)
            self.queueLimit = max(0, queueLimit)
            self.kvCache = kvCache
        }
    }

    /// The queue is full; try again later.
    public struct QueueFull: Error, CustomStringConvertible {
        public let limit: Int
        public var description: String { "all slots are busy and \(limit) requests are already waiting; try again shortly" }
    }

    /// The scheduler stopped before the request finished.
    public struct ShutDown: Error, CustomStringConvertible {
        public init() {}
        public var description: String { "the scheduler was shut down before the request finished" }
    }

    /// Counts since start, and the state now, for metrics.
    public struct Status: Sendable {
        public var slots = 0
        public var busySlots = 0
        public var queued = 0
        public var requestsFinished = 0
        public var promptTokens = 0
        /// Prompt tokens that a slot's cache already held.
        public var reusedPromptTokens = 0
        public var generatedTokens = 0
        /// Wall time spent in forward steps.
        public var busySeconds: Double = 0
        /// Wall time of steps that generated at least one token.
        public var generatingSeconds: Double = 0

        public init() {}
    }
}

/// The scheduler's state and its thread (which holds it until shutdown, so the public handle
/// above can shut it down when it is dropped).
final class BatchEngine: @unchecked Sendable {
    typealias Configuration = BatchScheduler.Configuration
    typealias QueueFull = BatchScheduler.QueueFull
    typealias ShutDown = BatchScheduler.ShutDown
    typealias Status = BatchScheduler.Status

    let model: LlamaModel
    let configuration: Configuration
    /// Positions each slot holds.
    let contextSize: Int
    private let context: LlamaContext

    // Shared with submitting threads, under `condition`.
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var running = true
    private var status = Status()

    // The scheduling thread's own.
    private var slots: [Slot]
    private var clock = 0
    // Reused from step to step.
    private var batch: [LlamaContext.BatchEntry] = []
    private var sampling: [Slot] = []
    private var logits: [Float] = []

    /// How the slots' KV caches store keys and values, and the bytes they take together.
    var kvCache: LlamaContext.KVCacheTypes { context.kvCache }
    var kvCacheBytes: Int { context.kvCacheBytes }

    /// Takes the KV caches' memory now (`LlamaContext.commitMemory`).
    func commitMemory() { context.commitMemory() }

    init(model: LlamaModel, configuration: Configuration = Configuration()) {
        self.model = model
        self.configuration = configuration
        context = LlamaContext(model: model, contextSize: configuration.contextSize, batchSize: configuration.batchSize,
                               threads: configuration.threads, kvCache: configuration.kvCache, sequences: configuration.slots)
        contextSize = context.contextSize
        slots = (0..<configuration.slots).map { Slot(sequence: $0) }
        status.slots = configuration.slots
        let thread = Thread { [self] in loop() }
        thread.name = "llama-scheduler"
        thread.stackSize = 8 << 20
        thread.start()
    }

    func submit(prompt: [TokenID], parameters: GenerationParameters, startOfAnswer: Bool,
                cancellation: Cancellation, owner: AnyObject) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        guard !prompt.isEmpty else { throw ModelError("the prompt is empty; give at least one token (such as BOS)") }
        guard prompt.count < contextSize else { throw LlamaError.contextFull(needed: prompt.count + 1, available: contextSize) }
        let vocabulary = model.configuration.vocabularySize
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
            throw ModelError("token id \(bad) is outside the vocabulary of \(vocabulary)")
        }
        let state = try GenerationState(model: model, parameters: parameters, startOfAnswer: startOfAnswer)
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        // The job's own flag: its stream ending cancels only it, while the caller's cancellation
        // (which may be shared by several jobs) cancels them all.
        let own = Cancellation()
        let job = Job(prompt: prompt, state: state, continuation: continuation, cancelled: own, owner: owner)
        continuation.onTermination = { _ in own.cancel() }
        cancellation.whenCancelled { own.cancel() }
        own.whenCancelled { [weak self] in self?.wake() }
        condition.lock()
        defer { condition.unlock() }
        guard running else { throw ShutDown() }
        // Requests that a free slot takes at the next step do not count as waiting.
        guard queue.count < configuration.queueLimit + (status.slots - status.busySlots) else { throw QueueFull(limit: configuration.queueLimit) }
        queue.append(job)
        status.queued = queue.count
        condition.signal()
        return stream
    }

    var currentStatus: Status { condition.withLock { status } }

    func shutdown() {
        condition.withLock {
            running = false
            condition.signal()
        }
    }

    private func wake() { condition.withLock { condition.signal() } }

    // MARK: The scheduling thread

    /// A request from submission to its end.
    private final class Job {
        let prompt: [TokenID]
        var state: GenerationState
        let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
        let cancelled: Cancellation
        /// The public scheduler, kept alive while the request lives.
        let owner: AnyObject
        var reused = 0
        var admitted = Date()
        var promptDone: Date?

        init(prompt: [TokenID], state: GenerationState, continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation, cancelled: Cancellation,
             owner: AnyObject) {
            self.owner = owner
            self.cancelled = cancelled
            self.prompt = prompt
            self.state = state
            self.continuation = continuation
        }
    }

    private final class Slot {
        let sequence: Int
        /// The tokens in this slot's cache, in order.
        var cached: [TokenID] = []
        var job: Job?
        /// Prompt tokens still to evaluate.
        var pending: ArraySlice<TokenID> = []
        /// The token sampled last, evaluated at the next step.
        var next: TokenID?
        /// When the slot was last given a job (the least recently used one is reused first).
        var lastUsed = 0

        init(sequence: Int) { self.sequence = sequence }
    }

    private func loop() {
        while true {
            condition.lock()
            while running, queue.isEmpty, slots.allSatisfy({ $0.job == nil }) { condition.wait() }
            if !running {
                let waiting = queue
                queue = []
                condition.unlock()
                for job in waiting { job.continuation.finish(throwing: ShutDown()) }
                for slot in slots where slot.job != nil { free(slot, error: ShutDown()) }
                return
            }
            queue.removeAll { job in
                guard job.cancelled.isCancelled else { return false }
                job.continuation.finish()
                return true
            }
            while !queue.isEmpty, let slot = bestSlot(for: queue[0].prompt) { admit(queue.removeFirst(), to: slot) }
            status.queued = queue.count
            condition.unlock()

            for slot in slots where slot.job?.cancelled.isCancelled == true { finish(slot, reason: .cancelled) }
            if slots.contains(where: { $0.job != nil }) { step() }
        }
    }

    /// The free slot whose cache shares the longest prefix with `prompt`; among equals, the one
    /// used least recently.
    private func bestSlot(for prompt: [TokenID]) -> Slot? {
        var best: (slot: Slot, common: Int)?
        for slot in slots where slot.job == nil {
            let common = reusablePrefix(slot.cached, prompt)
            if let b = best, common < b.common || (common == b.common && slot.lastUsed >= b.slot.lastUsed) { continue }
            best = (slot, common)
        }
        return best?.slot
    }

    private func admit(_ job: Job, to slot: Slot) {
        let common = reusablePrefix(slot.cached, job.prompt)
        context.truncate(to: common, sequence: slot.sequence)
        slot.cached.removeSubrange(common...)
        slot.pending = job.prompt[common...]
        slot.next = nil
        slot.job = job
        clock += 1
        slot.lastUsed = clock
        job.reused = common
        job.admitted = Date()
        status.busySlots += 1
        status.promptTokens += job.prompt.count
        status.reusedPromptTokens += common
    }

    /// One forward pass: the last sampled token of every generating slot, then as much of the
    /// waiting prompts as the batch holds; then a token is sampled for every slot that has logits.
    private func step() {
        batch.removeAll(keepingCapacity: true)
        sampling.removeAll(keepingCapacity: true)
        for slot in slots where slot.job != nil {
            guard let token = slot.next else { continue }
            batch.append(.init(sequence: slot.sequence, token: token, wantsLogits: true))
            slot.cached.append(token)
            slot.next = nil
            sampling.append(slot)
        }
        for slot in slots where slot.job != nil && !slot.pending.isEmpty {
            let room = configuration.batchSize - batch.count
            guard room > 0 else { break }
            let piece = slot.pending.prefix(room)
            slot.pending = slot.pending.dropFirst(piece.count)
            for (i, token) in piece.enumerated() {
                batch.append(.init(sequence: slot.sequence, token: token, wantsLogits: slot.pending.isEmpty && i == piece.count - 1))
            }
            slot.cached += piece
            if slot.pending.isEmpty { sampling.append(slot) }
        }
        guard !batch.isEmpty else { return }

        let start = Date()
        do {
            try context.evaluate(batch: batch, logits: &logits)
        } catch {
            // Cannot happen with the checks above; fail the step's requests rather than the server.
            for slot in slots where slot.job != nil {
                context.reset(sequence: slot.sequence)
                slot.cached = []
                free(slot, error: error)
            }
            return
        }
        let now = Date()
        let vocabulary = model.configuration.vocabularySize
        var generated = 0
        for (row, slot) in sampling.enumerated() {
            guard let job = slot.job else { continue }
            if job.promptDone == nil { job.promptDone = now }
            let continuation = job.continuation
            let before = job.state.generated
            let token: TokenID?
            do {
                token = try job.state.next(logits: logits[(row * vocabulary)..<((row + 1) * vocabulary)], history: slot.cached) {
                    continuation.yield($0)
                }
            } catch {
                free(slot, error: error)
                continue
            }
            let produced = job.state.generated - before
            if produced > 0 {
                generated += produced
                // Counted before the request can end, so a client that saw its end sees it counted.
                condition.withLock { status.generatedTokens += produced }
            }
            guard let token else {
                finish(slot, reason: nil)
                continue
            }
            if context.position(of: slot.sequence) >= contextSize {
                finish(slot, reason: .contextFull)
            } else {
                slot.next = token
            }
        }
        condition.withLock {
            status.busySeconds += now.timeIntervalSince(start)
            if generated > 0 { status.generatingSeconds += now.timeIntervalSince(start) }
        }
    }

    /// Ends a slot's job (with `reason` unless it ended already) and frees the slot, keeping its cache.
    private func finish(_ slot: Slot, reason: FinishReason?) {
        guard let job = slot.job else { return }
        let continuation = job.continuation
        if let reason { job.state.end(reason, emit: { continuation.yield($0) }) }
        let end = Date()
        var statistics = GenerationStatistics()
        statistics.promptTokens = job.prompt.count
        statistics.generatedTokens = job.state.generated
        statistics.promptSeconds = (job.promptDone ?? end).timeIntervalSince(job.admitted)
        statistics.generationSeconds = job.promptDone.map { end.timeIntervalSince($0) } ?? 0
        let summary = GenerationSummary(statistics: statistics, finishReason: job.state.finishReason ?? .cancelled,
                                        text: job.state.text, reusedPromptTokens: job.reused, stopSequence: job.state.stopper.matched)
        release(slot)
        continuation.yield(.finished(summary))
        continuation.finish()
    }

    private func free(_ slot: Slot, error: Error) {
        let continuation = slot.job?.continuation
        release(slot)
        continuation?.finish(throwing: error)
    }

    private func release(_ slot: Slot) {
        slot.job = nil
        slot.pending = []
        slot.next = nil
        // What was fed of an unfinished prompt stays cached and valid.
        condition.withLock {
            status.busySlots -= 1
            status.requestsFinished += 1
        }
    }
}

import Foundation
import Llama
import Testing
import TestSupport

/// Continuous batching: many generations on one context, joined and freed between steps.
@Suite(.serialized) struct BatchSchedulerTests {
    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    static func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> (String, GenerationSummary) {
        var text = ""
        var summary: GenerationSummary?
        for try await event in stream {
            switch event {
            case .text(let piece): text += piece
            case .finished(let s): summary = s
            case .notice, .logprob, .reasoning, .toolCall, .toolResult: break
            }
        }
        return (text, try #require(summary))
    }

    static func chat(_ question: String) throws -> [TokenID] {
        try model.chatPromptTokens([.user(question)])
    }

    static func greedy(_ maxTokens: Int) -> GenerationParameters {
        GenerationParameters(maxTokens: maxTokens, sampler: .greedy)
    }

    static func waitUntilIdle(_ scheduler: BatchScheduler) async throws {
        for _ in 0..<200 where scheduler.currentStatus.busySlots > 0 || scheduler.currentStatus.queued > 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// With one slot the scheduler runs exactly the steps a Session runs: the same text.
    @Test func oneSlotEqualsASession() async throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 1, contextSize: 256))
        defer { scheduler.shutdown() }
        let session = Session(model: Self.model, contextSize: 256)
        for question in ["What is the capital of France?", "Write a haiku about the sea."] {
            let prompt = try Self.chat(question)
            let (text, summary) = try await Self.collect(try scheduler.submit(prompt: prompt, parameters: Self.greedy(24), startOfAnswer: true))
            let (expected, _) = try await Self.collect(session.generate(prompt: prompt, parameters: Self.greedy(24), startOfAnswer: true))
            #expect(text == expected)
            #expect(summary.statistics.promptTokens == prompt.count)
            #expect(summary.text == text)
        }
    }

    /// Eight requests on four slots at once: all finish, each with its own answer.
    @Test func concurrentRequestsAllFinishWithTheirOwnAnswers() async throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 4, contextSize: 256))
        defer { scheduler.shutdown() }
        let questions = ["What is the capital of France?", "What is the capital of Italy?", "What is the capital of Germany?",
                         "What is the capital of Spain?", "What is the capital of France?", "What is the capital of Japan?",
                         "What is the capital of Italy?", "What is the capital of England?"]
        let scheduler1 = BatchScheduler(model: Self.model, configuration: .init(slots: 1, contextSize: 256))
        defer { scheduler1.shutdown() }
        var alone: [String] = []
        for q in questions { alone.append(try await Self.collect(try scheduler1.submit(prompt: try Self.chat(q), parameters: Self.greedy(12), startOfAnswer: true)).0) }

        let results = try await withThrowingTaskGroup(of: (Int, String, GenerationSummary).self) { group in
            for (i, q) in questions.enumerated() {
                let stream = try scheduler.submit(prompt: try Self.chat(q), parameters: Self.greedy(12), startOfAnswer: true)
                group.addTask { let (t, s) = try await Self.collect(stream); return (i, t, s) }
            }
            var out: [(Int, String, GenerationSummary)] = []
            for try await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        #expect(results.count == questions.count)
        for (i, text, summary) in results {
            #expect(summary.finishReason == .length || summary.finishReason == .stop)
            // Its own answer, not another slot's: the same start as alone. (Greedy choices between
            // near ties may then part, as a batch rounds differently from a single token.)
            let shared = zip(text, alone[i]).prefix { $0 == $1 }.count
            #expect(shared >= min(12, alone[i].count), "'\(text)' alone: '\(alone[i])'")
        }
        let status = scheduler.currentStatus
        #expect(status.requestsFinished == questions.count)
        #expect(status.busySlots == 0)
        #expect(status.generatedTokens == results.reduce(0) { $0 + $1.2.statistics.generatedTokens })
    }

    /// A slot keeps its tokens: the next request sharing a prefix evaluates only what is new.
    @Test func aSlotReusesTheCachedPrefix() async throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 2, contextSize: 256))
        defer { scheduler.shutdown() }
        let first = try Self.chat("Name three colors.")
        let (answer, s1) = try await Self.collect(try scheduler.submit(prompt: first, parameters: Self.greedy(8), startOfAnswer: true))
        #expect(s1.reusedPromptTokens == 0)
        let second = try Self.model.chatPromptTokens([.user("Name three colors."), .assistant(answer), .user("And three animals?")])
        let (_, s2) = try await Self.collect(try scheduler.submit(prompt: second, parameters: Self.greedy(4), startOfAnswer: true))
        #expect(s2.reusedPromptTokens >= first.count - 1, "reused \(s2.reusedPromptTokens) of \(first.count)")
        #expect(scheduler.currentStatus.reusedPromptTokens == s2.reusedPromptTokens)
    }

    @Test func aFullQueueRefusesAtOnce() async throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 1, contextSize: 256, queueLimit: 1))
        defer { scheduler.shutdown() }
        let prompt = try Self.chat("Tell me a long story.")
        let running = try scheduler.submit(prompt: prompt, parameters: Self.greedy(200))
        // Wait until the first one holds the slot, so the next one waits in the queue.
        for _ in 0..<200 where scheduler.currentStatus.busySlots == 0 { try await Task.sleep(for: .milliseconds(5)) }
        let waiting = try scheduler.submit(prompt: prompt, parameters: Self.greedy(2))
        #expect(throws: BatchScheduler.QueueFull.self) { _ = try scheduler.submit(prompt: prompt, parameters: Self.greedy(2)) }
        withExtendedLifetime((running, waiting)) {}
    }

    /// Dropping a stream (a client that went away) frees its slot within a step, for the next request.
    @Test func droppedStreamFreesTheSlot() async throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 1, contextSize: 512))
        defer { scheduler.shutdown() }
        let prompt = try Self.chat("Tell me a long story about a dragon.")
        let task = Task {
            var pieces = 0
            for try await event in try scheduler.submit(prompt: prompt, parameters: Self.greedy(400)) {
                if case .text = event { pieces += 1 }
                if pieces == 3 { break }
            }
            return pieces
        }
        #expect(try await task.value == 3)
        try await Self.waitUntilIdle(scheduler)
        #expect(scheduler.currentStatus.busySlots == 0)
        #expect(scheduler.currentStatus.generatedTokens < 20)
        let (_, summary) = try await Self.collect(try scheduler.submit(prompt: try Self.chat("Hi"), parameters: Self.greedy(3)))
        #expect(summary.statistics.generatedTokens <= 3)
    }

    /// `Cancellation` (what the server calls when a client leaves) frees the slot at the next step.
    /// The stream buffers what the scheduler makes, so a consumer slowed by other tests may see
    /// the fifth piece well after it was made: the bound allows for that lag, far below the 400
    /// tokens asked for.
    @Test func cancellationStopsAtTheNextStep() async throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 2, contextSize: 512))
        defer { scheduler.shutdown() }
        let cancellation = Cancellation()
        let stream = try scheduler.submit(prompt: try Self.chat("Tell me a long story."), parameters: Self.greedy(400), cancellation: cancellation)
        var pieces = 0
        var summary: GenerationSummary?
        for try await event in stream {
            switch event {
            case .text:
                pieces += 1
                if pieces == 5 { cancellation.cancel() }
            case .finished(let s): summary = s
            case .notice, .logprob, .reasoning, .toolCall, .toolResult: break
            }
        }
        let finished = try #require(summary)
        #expect(finished.finishReason == .cancelled)
        #expect(finished.statistics.generatedTokens <= 40, "\(finished.statistics.generatedTokens)")
        #expect(scheduler.currentStatus.busySlots == 0)
    }

    @Test func badRequestsAreRefusedAtOnce() throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 1, contextSize: 32))
        defer { scheduler.shutdown() }
        #expect(throws: LlamaError.self) { _ = try scheduler.submit(prompt: [TokenID](repeating: 1, count: 32), parameters: Self.greedy(1)) }
        #expect(throws: ModelError.self) { _ = try scheduler.submit(prompt: [], parameters: Self.greedy(1)) }
        #expect(throws: ModelError.self) { _ = try scheduler.submit(prompt: [1, 999_999], parameters: Self.greedy(1)) }
        var bad = Self.greedy(1)
        bad.grammar = "root ::= undefined-rule"
        #expect(throws: (any Error).self) { _ = try scheduler.submit(prompt: [1], parameters: bad) }
    }

    /// A generation that reaches the end of its slot's context ends with `contextFull`.
    @Test func fullContextEndsTheGeneration() async throws {
        let scheduler = BatchScheduler(model: Self.model, configuration: .init(slots: 2, contextSize: 40))
        defer { scheduler.shutdown() }
        var parameters = Self.greedy(-1)
        parameters.stopTokens = []
        let prompt = try Self.chat("Count to one hundred.")
        let (_, summary) = try await Self.collect(try scheduler.submit(prompt: prompt, parameters: parameters))
        #expect(summary.finishReason == .contextFull)
        #expect(summary.statistics.generatedTokens == 40 - prompt.count + 1)
    }
}

/// Embeddings against llama.cpp's (llama-cpp-python, mean pooling, normalized).
@Suite struct EmbeddingTests {
    struct Golden: Decodable {
        struct Case: Decodable { let text: String; let tokens: [TokenID]; let embedding: [Float] }
        let cases: [Case]
    }

    @Test func meanPooledEmbeddingsMatchLlamaCpp() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/embeddings.json")
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
        let model = try LlamaModel.load(path: DefaultModel.locate())
        let context = LlamaContext(model: model, contextSize: 512, threads: 2)
        var vectors: [[Float]] = []
        for c in golden.cases {
            #expect(model.tokenizer.encode(c.text) == c.tokens)
            let vector = try context.embedding(of: c.tokens)
            #expect(vector.count == c.embedding.count)
            let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(abs(norm - 1) < 1e-4)
            let cosine = zip(vector, c.embedding).reduce(0) { $0 + $1.0 * $1.1 }
            let maxDiff = zip(vector, c.embedding).map { abs($0 - $1) }.max()!
            print("embedding '\(c.text.prefix(20))': cosine to llama.cpp \(cosine), max difference \(maxDiff)")
            #expect(cosine > 0.999)
            vectors.append(vector)
        }
        // Another text is far away: the test can fail.
        let cross = zip(vectors[0], golden.cases[1].embedding).reduce(0) { $0 + $1.0 * $1.1 }
        #expect(cross < 0.99)
    }

    @Test func emptyAndTooLongInputsAreErrors() throws {
        let model = try LlamaModel.load(path: DefaultModel.locate())
        let context = LlamaContext(model: model, contextSize: 16, threads: 1)
        #expect(throws: ModelError.self) { _ = try context.embedding(of: []) }
        #expect(throws: LlamaError.self) { _ = try context.embedding(of: [TokenID](repeating: 1, count: 17)) }
    }
}

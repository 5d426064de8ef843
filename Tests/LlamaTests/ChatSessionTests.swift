import Foundation
import Llama
import Testing
import TestSupport

/// The library API on the default model: incremental chat, cancellation, sessions in parallel.
@Suite(.serialized) struct ChatSessionTests {
    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    static var greedy: GenerationParameters {
        GenerationParameters(maxTokens: 24, sampler: .greedy)
    }

    static func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> (String, GenerationSummary?) {
        var text = ""
        var summary: GenerationSummary? = nil
        for try await event in stream {
            switch event {
            case .text(let piece): text += piece
            case .finished(let s): summary = s
            case .notice, .logprob, .reasoning, .toolCall, .toolResult: break
            }
        }
        return (text, summary)
    }

    /// Each turn evaluates only what is new, and answers exactly as a fresh session given the whole transcript.
    @Test func incrementalChatEqualsReprocessingTheTranscript() async throws {
        let chat = ChatSession(model: Self.model, systemPrompt: "You are a helpful assistant who answers in English.", parameters: Self.greedy, contextSize: 1024, threads: 2)
        let questions = ["What is the capital of France?", "And of Italy?", "Name a famous dish from there."]
        var answers: [String] = []
        for (turn, question) in questions.enumerated() {
            let (answer, finished) = try await Self.collect(await chat.streamEvents(to: question))
            answers.append(answer)
            let summary = try #require(finished)
            if turn > 0 { #expect(summary.reusedPromptTokens > summary.statistics.promptTokens / 2, "turn \(turn) re-evaluated too much") }

            // The same transcript, from scratch.
            let fresh = Session(model: Self.model, contextSize: 1024, threads: 2)
            let prompt = try await chat.promptTokens(for: Array(await chat.messages.dropLast()))
            var text = ""
            let again = try fresh.run(prompt: prompt, parameters: Self.greedy, startOfAnswer: true) { event in
                if case .text(let piece) = event { text += piece }
            }
            #expect(again.reusedPromptTokens == 0)
            #expect(text == answer, "turn \(turn): incremental '\(answer)' vs whole transcript '\(text)'")
        }
        #expect(await chat.messages.count == 6)
        #expect(answers[0].contains("Paris"), "\(answers[0])")
    }

    @Test func cancellingStopsWithinAToken() async throws {
        let session = Session(model: Self.model, contextSize: 2048, threads: 2)
        var parameters = GenerationParameters(maxTokens: 1000, sampler: .greedy)
        parameters.stopTokens = []  // nothing ends it but the cancellation
        let stream = session.generate(prompt: "Once upon a time", parameters: parameters)
        let task = Task { () -> Int in
            var pieces = 0
            for try await event in stream {
                if case .text = event { pieces += 1 }
                if pieces == 5 { withUnsafeCurrentTask { $0?.cancel() } }
            }
            return pieces
        }
        let pieces = try await task.value
        #expect(pieces >= 5 && pieces < 1000)
        // The generation thread stops at the next token: the session is free again at once.
        let start = Date()
        var summary: GenerationSummary? = nil
        summary = try session.run(prompt: [Self.model.tokenizer.bos ?? 1], parameters: GenerationParameters(maxTokens: 1, sampler: .greedy)) { _ in }
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(summary?.statistics.generatedTokens == 1)
    }

    @Test func cancelledRunReportsCancelled() throws {
        let session = Session(model: Self.model, contextSize: 256, threads: 2)
        var count = 0
        let summary = try session.run(prompt: Self.model.tokenizer.encode("Hello"), parameters: GenerationParameters(maxTokens: 100, sampler: .greedy),
                                      isCancelled: { count >= 3 }) { event in
            if case .text = event { count += 1 }
        }
        #expect(summary.finishReason == .cancelled)
        #expect(summary.statistics.generatedTokens <= 4)
    }

    /// Two conversations on one loaded model at the same time answer as each does alone.
    @Test func twoSessionsShareOneModel() async throws {
        func ask(_ question: String) async throws -> String {
            let chat = ChatSession(model: Self.model, parameters: Self.greedy, contextSize: 512, threads: 1)
            return try await Self.collect(await chat.streamEvents(to: question)).0
        }
        let alone = (try await ask("What is the capital of France?"), try await ask("Write a haiku about the sea."))
        async let a = ask("What is the capital of France?")
        async let b = ask("Write a haiku about the sea.")
        let together = try await (a, b)
        #expect(together.0 == alone.0)
        #expect(together.1 == alone.1)
    }

    @Test func stopStringsEndTheAnswerAndAreNotShown() throws {
        let session = Session(model: Self.model, contextSize: 256, threads: 2)
        let prompt = Self.model.tokenizer.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n", parseSpecial: true)
        var full = ""
        _ = try session.run(prompt: prompt, parameters: GenerationParameters(maxTokens: 30, sampler: .greedy)) { if case .text(let p) = $0 { full += p } }
        #expect(full == "The capital of France is Paris.")
        // " Paris" spans tokens; "of France" is in the middle.
        var cut = ""
        let summary = try session.run(prompt: prompt, parameters: GenerationParameters(maxTokens: 30, sampler: .greedy, stop: ["of France"])) {
            if case .text(let p) = $0 { cut += p }
        }
        #expect(cut == "The capital ")
        #expect(summary.finishReason == .stop)
        #expect(summary.text == cut)
    }

    @Test func overflowingConversationDropsOldTurnsAndSaysSo() async throws {
        let chat = ChatSession(model: Self.model, systemPrompt: "Be brief.", parameters: GenerationParameters(maxTokens: 16, sampler: .greedy), contextSize: 160, threads: 2)
        var notices: [String] = []
        for i in 0..<6 {
            for try await event in await chat.streamEvents(to: "Tell me fact number \(i) about the Moon.") {
                if case .notice(let n) = event { notices.append(n) }
            }
        }
        #expect(!notices.isEmpty)
        #expect(await chat.messages.first?.content != "Tell me fact number 0 about the Moon.")
        #expect(await chat.systemPrompt == "Be brief.")
    }

    @Test func promptLongerThanTheContextIsAClearError() async throws {
        let chat = ChatSession(model: Self.model, contextSize: 64, threads: 2)
        await #expect(throws: LlamaError.self) {
            _ = try await Self.collect(await chat.streamEvents(to: String(repeating: "word ", count: 200)))
        }
        #expect(await chat.messages.isEmpty)
    }

    @Test func saveAndLoadRoundTrip() async throws {
        let chat = ChatSession(model: Self.model, systemPrompt: "S", parameters: GenerationParameters(maxTokens: 4, sampler: .greedy), contextSize: 256, threads: 2)
        _ = try await Self.collect(await chat.streamEvents(to: "Hi"))
        let path = TemporaryFile.path("chat.json")
        try await chat.save(to: path)
        let other = ChatSession(model: Self.model, contextSize: 256, threads: 2)
        try await other.load(from: path)
        #expect(await other.messages == chat.messages)
        #expect(await other.systemPrompt == "S")
        try Data("not json".utf8).write(to: URL(fileURLWithPath: path))
        await #expect(throws: LlamaError.self) { try await other.load(from: path) }
    }
}

import Foundation
import GGUF
import Llama
import Testing
import TestSupport

/// The library's everyday API, one test per item, written as an app would use it.
@Suite struct LibraryErgonomicsTests {
    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    static func parameters(seed: UInt64, maxTokens: Int = 24) -> GenerationParameters {
        GenerationParameters(maxTokens: maxTokens, sampler: SamplerSettings(temperature: 0.7, seed: seed))
    }

    /// A one-shot answer, and the same answer as a plain text stream.
    @Test func oneShotAndTextStream() async throws {
        let whole = try await ChatSession(model: Self.model, parameters: Self.parameters(seed: 5)).respond(to: "Name a fruit.")
        #expect(!whole.content.isEmpty && whole.content == whole.summary.text)
        #expect(whole.summary.statistics.generatedTokens > 0 && [.stop, .length].contains(whole.summary.finishReason))
        var streamed = ""
        for try await piece in await ChatSession(model: Self.model, parameters: Self.parameters(seed: 5)).streamResponse(to: "Name a fruit.") {
            streamed += piece
        }
        #expect(streamed == whole.content)
    }

    /// A conversation kept as a Codable value and taken up again: the same prompt follows.
    @Test func transcriptsAreValues() async throws {
        let first = ChatSession(model: Self.model, systemPrompt: "Be brief.", parameters: Self.parameters(seed: 2))
        _ = try await first.respond(to: "Hi!")
        let data = try JSONEncoder().encode(await first.transcript)
        let transcript = try JSONDecoder().decode(ChatSession.Transcript.self, from: data)
        #expect(transcript == (await first.transcript))
        #expect(transcript.messages.map(\.role) == ["user", "assistant"])
        let second = ChatSession(model: Self.model, transcript: transcript, parameters: Self.parameters(seed: 2))
        let next = [ChatMessage.user("And now?")]
        #expect(try await second.promptTokens(for: transcript.messages + next) == (try await first.promptTokens(for: transcript.messages + next)))
        await second.setTranscript(ChatSession.Transcript())
        #expect(await second.messages.isEmpty)
        #expect(await second.systemPrompt == nil)
    }

    /// Text-level conveniences: token counts and embeddings from strings.
    @Test func textConveniences() throws {
        let text = "The quick brown fox"
        #expect(Self.model.tokenCount(of: text) == Self.model.tokenizer.encode(text, addSpecial: true).count)
        let embedding = try Self.model.embedding(of: text)
        let tokens = Self.model.tokenizer.encode(text, addSpecial: true)
        let context = LlamaContext(model: Self.model, contextSize: 64, threads: 1)
        #expect(embedding == (try context.embedding(of: tokens)))
        let both = try Self.model.embeddings(of: [text, "A lazy dog"])
        #expect(both.count == 2 && both[0] == embedding && both[1] != embedding)
        #expect(throws: LlamaError.self) { try Self.model.embedding(of: "") == [] ? () : () }
    }

    /// A scheduler takes a conversation as messages; the answer equals the one from hand-rendered tokens.
    @Test func schedulerTakesMessages() async throws {
        // Two schedulers: a prompt already cached in a slot would be evaluated in other batch
        // shapes, whose float sums may differ in the last bits.
        let schedulers = (0..<2).map { _ in BatchScheduler(model: Self.model, configuration: .init(slots: 1, contextSize: 512, threads: 2)) }
        let messages: [ChatMessage] = [.system("Be brief."), .user("Name a colour.")]
        func text(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> String {
            var out = ""
            for try await event in stream { if case .text(let piece) = event { out += piece } }
            return out
        }
        let byMessages = try await text(schedulers[0].submit(messages: messages, parameters: Self.parameters(seed: 9)))
        let prompt = try Self.model.chatPromptTokens(messages)
        let byTokens = try await text(schedulers[1].submit(prompt: prompt, parameters: Self.parameters(seed: 9), startOfAnswer: true))
        #expect(!byMessages.isEmpty && byMessages == byTokens)
    }

    /// Settings by name, in one expression.
    @Test func memberwiseInitializers() {
        let sampler = SamplerSettings(temperature: 0.2, topK: 5, minP: 0.1, seed: 42)
        #expect(sampler.temperature == 0.2 && sampler.topK == 5 && sampler.minP == 0.1 && sampler.seed == 42 && sampler.topP == 0.95)
        let parameters = GenerationParameters(maxTokens: 8, sampler: sampler, stop: ["\n"], reasoningBudget: 4, logprobs: 2)
        #expect(parameters.maxTokens == 8 && parameters.stop == ["\n"] && parameters.reasoningBudget == 4 && parameters.logprobs == 2)
        let summary = GenerationSummary(finishReason: .stop, text: "hi")
        #expect(summary.text == "hi" && summary.statistics.generatedTokens == 0)
        #expect(GenerationStatistics(promptTokens: 3).promptTokens == 3)
    }

    /// A cancelled consumer still learns how the answer ended; cancelled before the first token,
    /// the transcript is as it was.
    @Test func cancellation() async throws {
        let chat = ChatSession(model: Self.model, parameters: Self.parameters(seed: 1, maxTokens: 200))
        let before = await chat.transcript
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }  // cancelled before the answer begins
            return try await chat.respond(to: "Tell me a long story.")
        }
        let response = try await early.value
        #expect(response.summary.finishReason == .cancelled)
        #expect(await Self.settles { await chat.lastSummary?.finishReason == .cancelled })
        #expect(await chat.transcript == before, "no question without an answer, no empty turn")

        // Cancelled after some text: the text so far is the answer, and the summary says why it stopped.
        let consumer = Task {
            var pieces = 0
            for try await event in await chat.streamEvents(to: "Tell me a long story.") {
                if case .text = event { pieces += 1 }
                if pieces == 3 { withUnsafeCurrentTask { $0?.cancel() } }
            }
        }
        try await consumer.value
        #expect(await Self.settles { await chat.messages.count == 2 })
        #expect(await chat.lastSummary?.finishReason == .cancelled)
        let answer = await chat.messages.last
        #expect(answer?.role == "assistant" && answer?.content.isEmpty == false)
    }

    /// Whether `condition` holds within ten seconds (the session records an answer as its task ends).
    static func settles(_ condition: () async -> Bool) async -> Bool {
        for _ in 0..<1000 {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    /// A session reserves a modest context by default; a scheduler that is dropped shuts down.
    @Test func modestDefaultsAndShutdownOnDrop() async throws {
        let chat = ChatSession(model: Self.model)
        #expect(await chat.contextSize == min(Self.model.configuration.contextLength, ChatSession.defaultContextSize))
        #expect(await ChatSession(model: Self.model, contextSize: 1024).contextSize == 1024)

        // A request keeps its scheduler alive (its stream is read after the scheduler's last use);
        // once the requests end, the dropped scheduler goes, and its thread with it.
        var scheduler: BatchScheduler? = BatchScheduler(model: Self.model, configuration: .init(slots: 1, contextSize: 64, threads: 1))
        weak let handle = scheduler
        let stream = try scheduler!.submit(prompt: [1, 2, 3], parameters: GenerationParameters(maxTokens: 10_000, stopTokens: []))
        scheduler = nil
        var reason: FinishReason?
        for try await event in stream { if case .finished(let summary) = event { reason = summary.finishReason } }
        #expect(reason == .contextFull)
        #expect(await Self.settles { handle == nil })
    }

    /// Every loading failure is a `LlamaError` case a caller can match, in the library's words.
    @Test func loadingErrorsAreCases() throws {
        func loadError(_ path: String) -> LlamaError? {
            do { _ = try LlamaModel.load(path: path); return nil } catch { return error }
        }
        if case .cannotRead = loadError("/nonexistent/model.gguf") {} else { Issue.record("a missing file") }
        let text = try TemporaryFile.write(Array("hello, not a model".utf8), "text.gguf")
        if case .notAModel = loadError(text) {} else { Issue.record("a text file: \(String(describing: loadError(text)))") }
        let bytes = try #require(FileManager.default.contents(atPath: Fixtures.path("tiny260K/tiny260K.gguf")))
        let cut = try TemporaryFile.write(Array(bytes.prefix(bytes.count * 2 / 3)), "cut.gguf")
        if case .truncated = loadError(cut) {} else { Issue.record("a cut file: \(String(describing: loadError(cut)))") }

        let original = try GGUFFile(path: Fixtures.path("tiny260K/tiny260K.gguf"))
        func rewritten(_ name: String, _ change: (inout GGUFWriter, GGUFTensorInfo) throws -> Bool, architecture: String = "llama") throws -> String {
            var writer = GGUFWriter()
            for (key, value) in original.metadata { writer.set(key.replacingOccurrences(of: "llama.", with: "\(architecture)."), value) }
            writer.set("general.architecture", .string(architecture))
            for t in original.tensors where try !change(&writer, t) {
                try writer.addTensor(name: t.name, shape: t.shape, type: t.type, data: Array(original.data(of: t)))
            }
            let path = TemporaryFile.path(name)
            try writer.write(to: path)
            return path
        }
        let alien = try rewritten("alien.gguf", { _, _ in false }, architecture: "mamba9")
        if case .unsupportedArchitecture(let message) = loadError(alien) { #expect(message.contains("mamba9")) } else { Issue.record("an unknown architecture") }
        let iq4 = GGMLType(name: "IQ4_NL")!
        let odd = try rewritten("odd-type.gguf", { writer, t in
            guard t.name == "blk.0.attn_q.weight" else { return false }
            try writer.addTensor(name: t.name, shape: t.shape, type: iq4, data: [UInt8](repeating: 0, count: t.elementCount / iq4.blockSize * iq4.bytesPerBlock))
            return true
        })
        if case .unsupportedType(let message) = loadError(odd) { #expect(message.contains("IQ4_NL")) } else { Issue.record("an unsupported type") }
    }
}

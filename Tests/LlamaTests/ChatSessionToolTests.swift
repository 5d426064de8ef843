import Foundation
import Jinja
import Llama
import Testing
import TestSupport

/// `ChatSession(model:tools:)` on the default model: the model calls Swift tools, their results go
/// back to it, and it answers; errors are results too; the rounds are bounded.
@Suite struct ChatSessionToolTests {
    /// What the tools were asked, across tasks.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [String] = []
        func add(_ entry: String) { lock.withLock { entries.append(entry) } }
        var all: [String] { lock.withLock { entries } }
    }

    struct Weather: Tool {
        struct Arguments: Decodable, Sendable { var city: String }
        let name = "get_weather"
        let description = "The current weather in a city."
        let parameters: JinjaValue = ["type": "object", "properties": ["city": ["type": "string", "maxLength": 30]], "required": ["city"]]
        let log: Log
        func call(arguments: Arguments) async throws -> String {
            log.add("weather \(arguments.city)")
            return "18 degrees and clear in \(arguments.city)"
        }
    }

    struct Clock: Tool {
        struct Arguments: Decodable, Sendable { var timezone: String }
        struct Output: Encodable, Sendable { var time: String; var timezone: String }
        let name = "get_time"
        let description = "The local time in a time zone, such as Europe/Paris."
        let parameters: JinjaValue = ["type": "object", "properties": ["timezone": ["type": "string", "maxLength": 30]], "required": ["timezone"]]
        let log: Log
        func call(arguments: Arguments) async throws -> Output {
            log.add("time \(arguments.timezone)")
            return Output(time: "14:05", timezone: arguments.timezone)
        }
    }

    struct Broken: Tool {
        struct Arguments: Decodable, Sendable {}
        struct Failure: LocalizedError { var errorDescription: String? { "the service is down" } }
        let name = "get_weather"
        let description = "The current weather in a city."
        let parameters: JinjaValue = ["type": "object", "properties": [:]]
        func call(arguments: Arguments) async throws -> String { throw Failure() }
    }

    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    static func run(_ chat: ChatSession, _ question: String) async throws -> (text: String, calls: [ToolCall], results: [ToolResult], summary: GenerationSummary?) {
        var text = "", calls: [ToolCall] = [], results: [ToolResult] = [], summary: GenerationSummary?
        for try await event in await chat.streamEvents(to: question) {
            switch event {
            case .text(let piece): text += piece
            case .toolCall(let call): calls.append(call)
            case .toolResult(let result): results.append(result)
            case .finished(let s): summary = s
            case .reasoning, .logprob, .notice: break
            }
        }
        return (text, calls, results, summary)
    }

    static func parameters(seed: UInt64) -> GenerationParameters {
        var sampler = SamplerSettings()
        sampler.seed = seed
        sampler.temperature = 0.8
        return GenerationParameters(maxTokens: 300, sampler: sampler)
    }

    @Test func twoToolsAnswerAQuestionThatNeedsBoth() async throws {
        var bothCalled = false
        for seed in UInt64(1)...6 {
            let log = Log()
            let chat = ChatSession(model: Self.model, parameters: Self.parameters(seed: seed), contextSize: 4096,
                                   tools: [Weather(log: log), Clock(log: log)])
            await chat.setMaxToolRounds(3)
            let (text, calls, results, summary) = try await Self.run(chat, "I need two things: the weather in Paris (get_weather) and the time in Europe/Paris (get_time).")
            // Every call ran (decoded, no errors) and its result went back under its id.
            #expect(results.map(\.callID) == calls.map(\.id))
            #expect(results.allSatisfy { !$0.isError }, "seed \(seed): \(results)")
            #expect(log.all.count == calls.count)
            let transcript = await chat.messages
            #expect(transcript.filter { $0.role == "tool" }.map(\.toolCallID) == calls.map(\.id))
            // It ends with an answer in words.
            #expect(!text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "seed \(seed)")
            #expect(summary?.finishReason == .stop || summary?.finishReason == .length)
            #expect(transcript.last?.role == "assistant" && transcript.last?.toolCalls == nil)
            if Set(calls.map(\.name)) == ["get_weather", "get_time"] { bothCalled = true }
        }
        #expect(bothCalled, "no seed called both tools")
    }

    @Test func toolErrorsGoBackToTheModel() async throws {
        // The first seed whose answer calls the tool (which seed does depends on the kernels'
        // rounding, as with any sampled answer of a 135M model).
        var called = false
        for seed in UInt64(1)...6 where !called {
            let chat = ChatSession(model: Self.model, parameters: Self.parameters(seed: seed), contextSize: 4096, tools: [Broken()])
            await chat.setMaxToolRounds(1)
            let (text, calls, results, _) = try await Self.run(chat, "What is the weather in Paris? Use get_weather.")
            guard !calls.isEmpty else { continue }
            called = true
            #expect(results.count == calls.count)
            #expect(results.allSatisfy { $0.isError && $0.output.contains("the service is down") })
            let transcript = await chat.messages
            #expect(transcript.contains { $0.role == "tool" && $0.content.contains("the service is down") })
            // One round of calls, then text.
            #expect(calls.count <= ToolUse.maxParallelCalls)
            #expect(!text.isEmpty)
        }
        #expect(called, "no seed called the tool")
    }
}

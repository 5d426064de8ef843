// Embedding swift-llama: load a model, chat with it, stream the answer.
//   swift run chat-example [MODEL.gguf] ["your question"]
import Llama

let arguments = CommandLine.arguments.dropFirst()
let path = try arguments.first ?? DefaultModel.locate { print($0) }
let question = arguments.dropFirst().first ?? "What is the capital of France?"

let model = try LlamaModel.load(path: path) { fraction in
    if fraction == 1 { print("model loaded") }
}
var parameters = GenerationParameters(maxTokens: 128)
parameters.sampler.temperature = 0.7
let chat = ChatSession(model: model, systemPrompt: "You are a helpful assistant.", parameters: parameters)

for try await event in await chat.streamEvents(to: question) {
    switch event {
    case .text(let piece): print(piece, terminator: "")
    case .notice(let notice): print("[\(notice)]")
    case .logprob, .reasoning, .toolCall, .toolResult: break
    case .finished(let summary): print("\n\(summary.statistics.generatedTokens) tokens at \(Int(summary.statistics.generationTokensPerSecond)) tokens/s")
    }
}

import Foundation
import Llama

extension Response where Content: Generable {
    /// The JSON the value came from.
    public var rawContent: GeneratedContent { (try? GeneratedContent(json: text)) ?? content.generatedContent }
}

/// A moment in a streamed typed answer: what has arrived, as a partially filled value.
public struct ResponseSnapshot<Content: Generable>: Sendable {
    public var content: Content.PartiallyGenerated
    public var rawContent: GeneratedContent
}

/// Why a typed answer could not be made.
public enum GenerableError: LocalizedError, Sendable {
    /// The answer hit `maxTokens` (or the context) before its JSON closed.
    case cutShort(tokens: Int)
    /// The JSON did not convert to the type (a grammar makes this rare: a value out of an
    /// enforced range cannot happen, a `Double` out of its guide's range can).
    case mismatch(String)

    public var errorDescription: String? {
        switch self {
        case .cutShort(let tokens):
            return "the answer ended after \(tokens) tokens, before its JSON was complete; allow more tokens (GenerationParameters.maxTokens) or bound the type's arrays and strings with @Guide"
        case .mismatch(let reason): return reason
        }
    }
}

extension ChatSession {
    /// Asks for an answer of type `Content`: the model writes JSON that a grammar built from the
    /// type's schema holds to that shape, and the answer is converted. The schema is also shown
    /// to the model after the prompt, unless `includeSchemaInPrompt` is false. Tools are not
    /// offered during a typed answer.
    public func respond<Content: Generable>(to prompt: String, generating type: Content.Type = Content.self,
                                            includeSchemaInPrompt: Bool = true,
                                            parameters: GenerationParameters? = nil) async throws -> Response<Content> {
        let answer = try await respond(to: try typedPrompt(prompt, Content.self, includeSchemaInPrompt),
                                       parameters: try typedParameters(Content.self, parameters))
        let summary = answer.summary
        if summary.finishReason == .length || summary.finishReason == .contextFull { throw GenerableError.cutShort(tokens: summary.statistics.generatedTokens) }
        if summary.finishReason == .cancelled { throw CancellationError() }
        do {
            let content = try Content(GeneratedContent(json: answer.text))
            return Response(content: content, text: answer.text, reasoning: answer.reasoning, summary: summary)
        } catch {
            throw GenerableError.mismatch((error as? LocalizedError)?.errorDescription ?? "\(error)")
        }
    }

    /// `respond(to:generating:)` streamed: a snapshot each time more of the value has arrived,
    /// as `Content.PartiallyGenerated` (for a struct, the properties so far; strings grow, other
    /// values appear when whole). The stream throws as `respond` does if the value cannot be made.
    public func streamResponse<Content: Generable>(to prompt: String, generating type: Content.Type = Content.self,
                                                   includeSchemaInPrompt: Bool = true, parameters: GenerationParameters? = nil)
        -> AsyncThrowingStream<ResponseSnapshot<Content>, Error> {
        let events: AsyncThrowingStream<GenerationEvent, Error>
        do {
            events = streamEvents(to: try typedPrompt(prompt, Content.self, includeSchemaInPrompt),
                                  parameters: try typedParameters(Content.self, parameters))
        } catch {
            return AsyncThrowingStream { $0.finish(throwing: error) }
        }
        return AsyncThrowingStream { continuation in
            let task = Task {
                var raw = "", last: GeneratedContent?
                do {
                    for try await event in events {
                        switch event {
                        case .text(let piece):
                            raw += piece
                            let content = try GeneratedContent(partialJSON: raw)
                            guard content != last, let partial = try? Content.PartiallyGenerated(content) else { continue }
                            last = content
                            continuation.yield(.init(content: partial, rawContent: content))
                        case .finished(let summary):
                            if summary.finishReason == .length || summary.finishReason == .contextFull { throw GenerableError.cutShort(tokens: summary.statistics.generatedTokens) }
                            let whole = try GeneratedContent(json: raw)
                            _ = try Content(whole)
                            if whole != last { continuation.yield(.init(content: try Content.PartiallyGenerated(whole), rawContent: whole)) }
                        default: break
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    private func typedParameters<Content: Generable>(_ type: Content.Type, _ override: GenerationParameters?) throws -> GenerationParameters {
        var step = override ?? parameters
        step.grammar = try Content.generationSchema.grammar()
        step.grammarTriggers = []
        return step
    }

    private func typedPrompt<Content: Generable>(_ prompt: String, _ type: Content.Type, _ includeSchema: Bool) throws -> String {
        includeSchema ? prompt + "\n\nAnswer in JSON that follows this schema:\n" + Content.generationSchema.description : prompt
    }
}

import Foundation
import Hummingbird
import Jinja
import Llama
import LlamaAPI

/// Anthropic's Messages API over the same engine, for agents that speak it: `POST /v1/messages`
/// (system prompt, text, `tool_use` and `tool_result` blocks, thinking, whole or as its event
/// stream) and `POST /v1/messages/count_tokens`. Errors take its shape (see `APIError.anthropicJSON`).
extension Routes {
    /// Reads and checks a Messages request (`counting`: for count_tokens, which needs no max_tokens).
    func anthropicRequest(_ fields: JSONFields, counting: Bool) throws -> AnthropicRequest {
        try AnthropicRequest(fields, counting: counting, template: engine.chatTemplate, reasoningBudget: reasoningBudget,
                             keptSpecialTokens: model.specialTokens(ToolUse.formatTags))
    }

    func countTokens(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        defer { scope.end() }
        let parsed = try anthropicRequest(fields, counting: true)
        let (prompt, _) = try await chatPrompt(parsed.messages, tools: parsed.tools, variables: [:], scope: scope)
        return json(.object([("input_tokens", .int(prompt.count))]))
    }

    func messages(_ fields: JSONFields, _ context: Context, scope: RequestScope) async throws -> Response {
        do {
            var parsed = try anthropicRequest(fields, counting: false)
            let (prompt, opensThinking) = try await chatPrompt(parsed.messages, tools: parsed.tools, variables: [:], scope: scope)
            parsed.parameters.startsInReasoning = opensThinking
            let idPrefix = parsed.tools?.format == .mistral ? nil : "toolu_" + Self.randomHex(12) + "_"
            let parser = ToolCallParser(format: parsed.tools?.format ?? .generic, parsesToolCalls: parsed.tools?.isActive ?? false,
                                        startsInReasoning: opensThinking, idPrefix: idPrefix)
            let stream = try await submit(prompt: prompt, parameters: parsed.parameters, chat: true, scope: scope)
            let id = "msg_" + Self.randomHex(12)
            let modelName = engine.modelID
            guard parsed.stream else {
                defer { scope.end() }
                var text = ""
                var summary: GenerationSummary?
                for try await event in stream {
                    switch event {
                    case .text(let piece): text += piece
                    case .finished(let s):
                        Self.log(s, chat: true, logger: context.logger)
                        summary = s
                    case .logprob, .notice, .reasoning, .toolCall, .toolResult: break
                    }
                }
                if scope.timedOut { throw scope.timeoutError }
                guard let summary else { throw BatchScheduler.ShutDown() }
                let answer = parser.parse(text)
                return json(.object([("id", .string(id)), ("type", "message"), ("role", "assistant"), ("model", .string(modelName)),
                                     ("content", .array(Self.blocks(answer))), ("stop_reason", Self.stopReason(summary, calledTools: !answer.toolCalls.isEmpty)),
                                     ("stop_sequence", summary.stopSequence.map { .string($0) } ?? .none),
                                     ("usage", Self.anthropicUsage(input: prompt.count, output: summary.statistics.generatedTokens))]))
            }
            let logger = context.logger
            let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                defer { scope.end() }
                func send(_ event: String, _ value: JinjaValue) async throws {
                    try await writer.write(ByteBuffer(string: "event: \(event)\ndata: " + value.jsonText + "\n\n"))
                }
                do {
                    try await send("message_start", .object([("type", "message_start"), ("message", .object([
                        ("id", .string(id)), ("type", "message"), ("role", "assistant"), ("model", .string(modelName)), ("content", .array([])),
                        ("stop_reason", .none), ("stop_sequence", .none), ("usage", Self.anthropicUsage(input: prompt.count, output: 0))]))]))
                    var blocks = AnthropicBlockStream()
                    var pieces = ToolCallStream(parser: parser)
                    var summary: GenerationSummary?
                    for try await event in stream {
                        switch event {
                        case .text(let piece):
                            for (name, value) in blocks.events(for: pieces.add(piece)) { try await send(name, value) }
                        case .finished(let s):
                            Self.log(s, chat: true, logger: logger)
                            summary = s
                            for (name, value) in blocks.events(for: pieces.finish().deltas) { try await send(name, value) }
                        case .logprob, .notice, .reasoning, .toolCall, .toolResult: break
                        }
                    }
                    if scope.timedOut { throw scope.timeoutError }
                    guard let summary else { throw BatchScheduler.ShutDown() }
                    for (name, value) in blocks.finish() { try await send(name, value) }
                    try await send("message_delta", .object([
                        ("type", "message_delta"),
                        ("delta", .object([("stop_reason", Self.stopReason(summary, calledTools: blocks.calledTools)),
                                           ("stop_sequence", summary.stopSequence.map { .string($0) } ?? .none)])),
                        ("usage", .object([("output_tokens", .int(summary.statistics.generatedTokens))]))]))
                    try await send("message_stop", .object([("type", "message_stop")]))
                } catch let error as CancellationError {
                    throw error
                } catch {
                    try await send("error", APIError.from(error).anthropicJSON)
                }
                try await writer.finish(nil)
            })
        } catch {
            scope.end()
            throw scope.timedOut ? scope.timeoutError : error
        }
    }

    static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    static func anthropicUsage(input: Int, output: Int) -> JinjaValue {
        .object([("input_tokens", .int(input)), ("output_tokens", .int(output))])
    }

    /// Anthropic's stop reasons: a call, the token limit (or a full context), a stop sequence, or the end of the turn.
    static func stopReason(_ summary: GenerationSummary, calledTools: Bool) -> JinjaValue {
        switch summary.finishReason {
        case .length, .contextFull: return "max_tokens"
        case .cancelled: return .none
        case .stop:
            if calledTools { return "tool_use" }
            return summary.stopSequence == nil ? "end_turn" : "stop_sequence"
        }
    }

    /// An answer's content blocks: thinking, text, tool uses (input as an object).
    static func blocks(_ answer: ParsedAnswer) -> [JinjaValue] {
        var blocks: [JinjaValue] = []
        if let reasoning = answer.reasoning { blocks.append(.object([("type", "thinking"), ("thinking", .string(reasoning)), ("signature", "")])) }
        if !answer.content.isEmpty || answer.toolCalls.isEmpty { blocks.append(.object([("type", "text"), ("text", .string(answer.content))])) }
        for call in answer.toolCalls {
            blocks.append(.object([("type", "tool_use"), ("id", .string(call.id)), ("name", .string(call.name)),
                                   ("input", (try? JinjaValue(json: call.arguments)) ?? .object([]))]))
        }
        return blocks
    }
}

/// The content blocks of a streamed answer as Anthropic's events: a block opens
/// (`content_block_start`), grows (`text_delta`, `thinking_delta`, `input_json_delta`) and
/// closes (`content_block_stop`) before the next opens.
struct AnthropicBlockStream {
    enum Kind: Equatable { case text, thinking, toolUse(Int) }
    private var open: Kind?
    private var index = -1
    private(set) var calledTools = false

    mutating func events(for deltas: [ToolCallStream.Delta]) -> [(String, JinjaValue)] {
        var out: [(String, JinjaValue)] = []
        for delta in deltas {
            switch delta {
            case .reasoning(let text):
                out += start(.thinking, .object([("type", "thinking"), ("thinking", ""), ("signature", "")]))
                out.append(self.delta(.object([("type", "thinking_delta"), ("thinking", .string(text))])))
            case .content(let text):
                out += start(.text, .object([("type", "text"), ("text", "")]))
                out.append(self.delta(.object([("type", "text_delta"), ("text", .string(text))])))
            case .toolCall(let call, let id, let name, let arguments):
                calledTools = true
                if let id, let name {
                    out += start(.toolUse(call), .object([("type", "tool_use"), ("id", .string(id)), ("name", .string(name)), ("input", .object([]))]))
                }
                if !arguments.isEmpty, open == .toolUse(call) {
                    out.append(self.delta(.object([("type", "input_json_delta"), ("partial_json", .string(arguments))])))
                }
            }
        }
        return out
    }

    /// Closes the last block (an answer with no block gets an empty text block).
    mutating func finish() -> [(String, JinjaValue)] {
        var out: [(String, JinjaValue)] = []
        if open == nil, index < 0 { out += start(.text, .object([("type", "text"), ("text", "")])) }
        if open != nil {
            out.append(("content_block_stop", .object([("type", "content_block_stop"), ("index", .int(index))])))
            open = nil
        }
        return out
    }

    private mutating func start(_ kind: Kind, _ block: JinjaValue) -> [(String, JinjaValue)] {
        guard open != kind else { return [] }
        var out: [(String, JinjaValue)] = []
        if open != nil { out.append(("content_block_stop", .object([("type", "content_block_stop"), ("index", .int(index))]))) }
        index += 1
        open = kind
        out.append(("content_block_start", .object([("type", "content_block_start"), ("index", .int(index)), ("content_block", block)])))
        return out
    }

    private func delta(_ delta: JinjaValue) -> (String, JinjaValue) {
        ("content_block_delta", .object([("type", "content_block_delta"), ("index", .int(index)), ("delta", delta)]))
    }
}

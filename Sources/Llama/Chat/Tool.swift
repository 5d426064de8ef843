import Foundation
import Jinja

/// A function written in Swift that a model may call, in the shape of Apple's Foundation Models
/// `Tool`: a name, a description, the schema of its arguments, and `call(arguments:)`.
///
///     struct Weather: Tool {
///         struct Arguments: Decodable, Sendable { var city: String }
///         let name = "get_weather"
///         let description = "The current weather in a city."
///         let parameters: JinjaValue = ["type": "object", "properties": ["city": ["type": "string"]], "required": ["city"]]
///         func call(arguments: Arguments) async throws -> String { "18 °C and clear in \(arguments.city)" }
///     }
///     let chat = ChatSession(model: model, tools: [Weather()])
public protocol Tool: Sendable {
    /// The arguments, from the JSON object the model writes: `Decodable` (or, with
    /// `LlamaGenerable`, `@Generable`, which also gives `parameters`).
    associatedtype Arguments: Sendable
    /// What the model reads back: text as it is; anything `Encodable` as JSON; else its description.
    associatedtype Output: Sendable

    var name: String { get }
    var description: String { get }
    /// JSON Schema of `Arguments` (an object). The model's calls are held to it by a grammar.
    var parameters: JinjaValue { get }

    /// The arguments read from the JSON text of a call.
    func decodeArguments(_ json: String) throws -> Arguments

    func call(arguments: Arguments) async throws -> Output
}

extension Tool where Arguments: Decodable {
    public func decodeArguments(_ json: String) throws -> Arguments {
        try JSONDecoder().decode(Arguments.self, from: Data(json.utf8))
    }
}

/// What a tool answered to one call (an error is answered too: the model reads it and may try again).
public struct ToolResult: Sendable, Equatable {
    public var callID: String
    public var name: String
    public var output: String
    public var isError: Bool
}

extension Tool {
    public var spec: ToolSpec { ToolSpec(name: name, description: description, parameters: parameters) }

    /// Decodes the model's arguments and runs the call. Arguments that do not decode and errors
    /// the tool throws become the result, for the model to read.
    func run(_ call: ToolCall) async -> ToolResult {
        let arguments: Arguments
        do {
            arguments = try decodeArguments(call.arguments)
        } catch {
            return ToolResult(callID: call.id, name: name, output: "Error: the arguments \(call.arguments) do not fit \(name): \(error)", isError: true)
        }
        do {
            let output = try await self.call(arguments: arguments)
            return ToolResult(callID: call.id, name: name, output: Self.text(output), isError: false)
        } catch {
            return ToolResult(callID: call.id, name: name, output: "Error: \(error.localizedDescription)", isError: true)
        }
    }

    static func text(_ output: Output) -> String {
        if let text = output as? String { return text }
        if let value = output as? any Encodable {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            if let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) { return text }
        }
        return String(describing: output)
    }
}

import Jinja
import Llama

/// A type that can be built from generated content (Foundation Models' name).
public protocol ConvertibleFromGeneratedContent: Sendable {
    init(_ content: GeneratedContent) throws
}

/// A type that can be written as generated content, e.g. to show a model an example.
public protocol ConvertibleToGeneratedContent {
    var generatedContent: GeneratedContent { get }
}

/// A type a model can generate: it has a JSON schema, which a grammar holds the model to, and
/// converts from the JSON the model writes. `@Generable` derives all of it for structs and enums.
///
///     @Generable(description: "A dish")
///     struct Recipe {
///         @Guide(description: "Its name") var name: String
///         @Guide(description: "How many it feeds", .range(1...8)) var servings: Int
///         @Guide(.maximumCount(6)) var ingredients: [String]
///         var course: Course
///         var note: String?
///     }
///     @Generable enum Course { case starter, main, dessert }
public protocol Generable: ConvertibleFromGeneratedContent, ConvertibleToGeneratedContent {
    /// What a value looks like while it is being generated: for structs, every property optional.
    associatedtype PartiallyGenerated: ConvertibleFromGeneratedContent = Self
    static var generationSchema: GenerationSchema { get }
}

/// `T.PartiallyGenerated`, written so that any type syntax (`[String]`, `Int?`) can name it.
public typealias GeneratedPartial<T: Generable> = T.PartiallyGenerated

/// Makes a struct or enum `Generable`. Stored properties become the schema's properties, in
/// order; optional ones may be left out. Enums are their case names.
@attached(extension, conformances: Generable,
          names: named(init(_:)), named(generationSchema), named(generatedContent), named(PartiallyGenerated))
public macro Generable(description: String? = nil) = #externalMacro(module: "LlamaGenerableMacros", type: "GenerableMacro")

/// Describes a property of a `@Generable` type to the model, and bounds it (see `GenerationGuide`).
@attached(peer)
public macro Guide(description: String? = nil, _ guides: GenerationGuide...) = #externalMacro(module: "LlamaGenerableMacros", type: "GuideMacro")

// MARK: - The standard types

extension String: Generable {
    public static var generationSchema: GenerationSchema { GenerationSchema(json: ["type": "string"]) }
    public init(_ content: GeneratedContent) throws {
        guard case .string(let text) = content.kind else { throw GeneratedContent.Mismatch(expected: "a string", found: content) }
        self = text
    }
    public var generatedContent: GeneratedContent { GeneratedContent(self) }
}

extension Bool: Generable {
    public static var generationSchema: GenerationSchema { GenerationSchema(json: ["type": "boolean"]) }
    public init(_ content: GeneratedContent) throws {
        guard case .bool(let value) = content.kind else { throw GeneratedContent.Mismatch(expected: "true or false", found: content) }
        self = value
    }
    public var generatedContent: GeneratedContent { GeneratedContent(kind: .bool(self)) }
}

extension Int: Generable {
    public static var generationSchema: GenerationSchema { GenerationSchema(json: ["type": "integer"]) }
    /// A whole number that fits; a number still being written is not yet one.
    public init(_ content: GeneratedContent) throws {
        guard content.isComplete, case .number(let n) = content.kind, n.rounded() == n, let value = Int(exactly: n) else {
            throw GeneratedContent.Mismatch(expected: "a whole number", found: content)
        }
        self = value
    }
    public var generatedContent: GeneratedContent { GeneratedContent(kind: .number(Double(self))) }
}

extension Double: Generable {
    public static var generationSchema: GenerationSchema { GenerationSchema(json: ["type": "number"]) }
    public init(_ content: GeneratedContent) throws {
        guard content.isComplete, case .number(let n) = content.kind else { throw GeneratedContent.Mismatch(expected: "a number", found: content) }
        self = n
    }
    public var generatedContent: GeneratedContent { GeneratedContent(kind: .number(self)) }
}

extension Float: Generable {
    public static var generationSchema: GenerationSchema { GenerationSchema(json: ["type": "number"]) }
    public init(_ content: GeneratedContent) throws { self = Float(try Double(content)) }
    public var generatedContent: GeneratedContent { GeneratedContent(kind: .number(Double(self))) }
}

extension Array: ConvertibleFromGeneratedContent where Element: ConvertibleFromGeneratedContent {
    /// The elements; of an array still being written, those that convert so far (the last one
    /// may not yet).
    public init(_ content: GeneratedContent) throws {
        guard case .array(let items) = content.kind else { throw GeneratedContent.Mismatch(expected: "an array", found: content) }
        var elements: [Element] = []
        for item in items {
            do {
                elements.append(try Element(item))
            } catch where !item.isComplete {
                break
            }
        }
        self = elements
    }
}

extension Array: ConvertibleToGeneratedContent where Element: ConvertibleToGeneratedContent {
    public var generatedContent: GeneratedContent { GeneratedContent(kind: .array(map(\.generatedContent))) }
}

extension Array: Generable where Element: Generable {
    public typealias PartiallyGenerated = [Element.PartiallyGenerated]
    public static var generationSchema: GenerationSchema {
        GenerationSchema(json: ["type": "array", "items": GenerationSchema.Property.nested(Element.self)])
    }
}

/// Types that wrap another generable type (arrays, optionals): a recursion is the wrapped type's.
protocol GenerableContainer {}
extension Array: GenerableContainer {}
extension Optional: GenerableContainer {}

extension Optional: ConvertibleFromGeneratedContent where Wrapped: ConvertibleFromGeneratedContent {
    public init(_ content: GeneratedContent) throws {
        self = content.kind == .null ? nil : try Wrapped(content)
    }
}

extension Optional: ConvertibleToGeneratedContent where Wrapped: ConvertibleToGeneratedContent {
    public var generatedContent: GeneratedContent { self?.generatedContent ?? GeneratedContent(kind: .null) }
}

extension Optional: Generable where Wrapped: Generable {
    public typealias PartiallyGenerated = Wrapped.PartiallyGenerated?
    public static var generationSchema: GenerationSchema {
        GenerationSchema(json: ["anyOf": [GenerationSchema.Property.nested(Wrapped.self), ["type": "null"]]])
    }
}

extension GeneratedContent: Generable {
    /// Any JSON value.
    public static var generationSchema: GenerationSchema { GenerationSchema(json: [:]) }
    public init(_ content: GeneratedContent) throws { self = content }
    public var generatedContent: GeneratedContent { self }
}

// MARK: - Tools with generable arguments

/// A tool whose `Arguments` are `@Generable` needs no hand-written schema: its parameters are
/// the type's schema, and calls are read with the type's own conversion.
///
///     struct Weather: Tool {
///         @Generable struct Arguments { @Guide(description: "A city") var city: String }
///         let name = "get_weather"
///         let description = "The current weather in a city."
///         func call(arguments: Arguments) async throws -> String { "18 °C in \(arguments.city)" }
///     }
extension Tool where Arguments: Generable {
    public var parameters: JinjaValue { Arguments.generationSchema.json }
    public func decodeArguments(_ json: String) throws -> Arguments { try Arguments(GeneratedContent(json: json)) }
}

import Jinja
import Llama

/// The JSON Schema of a `Generable` type: what the model is shown, and what its grammar holds it to.
public struct GenerationSchema: Sendable, CustomStringConvertible {
    /// The schema as a JSON value.
    public let json: JinjaValue

    public init(json: JinjaValue) { self.json = json }

    /// An object with these properties, in this order (the optional ones may be left out).
    public init(type: any Generable.Type, description: String? = nil, properties: [Property]) {
        var schema: [(String, JinjaValue)] = [("type", "object")]
        if let description { schema.append(("description", .string(description))) }
        schema.append(("properties", .object(properties.map { ($0.name, $0.schema) })))
        schema.append(("required", .array(properties.filter { !$0.isOptional }.map { .string($0.name) })))
        schema.append(("additionalProperties", false))
        json = .object(schema)
    }

    /// One of these strings (an enum's cases).
    public init(type: any Generable.Type, description: String? = nil, anyOf choices: [String]) {
        var schema: [(String, JinjaValue)] = [("type", "string")]
        if let description { schema.append(("description", .string(description))) }
        schema.append(("enum", .array(choices.map { .string($0) })))
        json = .object(schema)
    }

    /// The grammar that holds a model to the schema.
    public func grammar() throws -> String {
        if let name = Self.recursiveType(in: json) {
            throw LlamaError.grammar("\(name) contains itself; a @Generable type cannot be recursive (a grammar would not end)")
        }
        return try JSONGrammar.grammar(schema: json)
    }

    public var description: String { json.jsonText }

    /// A property of an object schema: its name, what it means, its type's schema and its guides.
    public struct Property: Sendable {
        public let name: String
        let schema: JinjaValue
        let isOptional: Bool

        public init<Value: Generable>(name: String, description: String? = nil, type: Value.Type, guides: [GenerationGuide] = []) {
            self.init(name: name, description: description, schema: Self.nested(Value.self), guides: guides, isOptional: false)
        }

        /// An optional property: the model may leave it out.
        public init<Value: Generable>(name: String, description: String? = nil, type: Value?.Type, guides: [GenerationGuide] = []) {
            self.init(name: name, description: description, schema: Self.nested(Value.self), guides: guides, isOptional: true)
        }

        init(name: String, description: String?, schema: JinjaValue, guides: [GenerationGuide], isOptional: Bool) {
            var pairs: [(String, JinjaValue)] = []
            if case .object(let existing) = schema { pairs = existing }
            if let description { pairs.removeAll { $0.0 == "description" }; pairs.insert(("description", .string(description)), at: 0) }
            for guide in guides { guide.apply(&pairs) }
            self.name = name
            self.schema = .object(pairs)
            self.isOptional = isOptional
        }

        /// A nested type's schema. A type that contains itself would nest forever: where a type
        /// comes round again, a marker stands in, and `grammar()` refuses it by name.
        static func nested<Value: Generable>(_ type: Value.Type) -> JinjaValue {
            if Value.self is any GenerableContainer.Type { return Value.generationSchema.json }  // arrays, optionals: their element counts
            let id = ObjectIdentifier(Value.self)
            guard !GenerationSchema.building.contains(id) else { return [GenerationSchema.recursionKey: .string("\(Value.self)")] }
            return GenerationSchema.$building.withValue(GenerationSchema.building + [id]) { Value.generationSchema.json }
        }
    }

    /// The named types whose schemas are being built, outermost first.
    @TaskLocal static var building: [ObjectIdentifier] = []
    static let recursionKey = "x-recursive-type"

    /// The name of a type that contains itself, if the schema has one.
    static func recursiveType(in value: JinjaValue) -> String? {
        switch value {
        case .object(let pairs):
            for (key, item) in pairs {
                if key == recursionKey, case .string(let name) = item { return name }
                if let name = recursiveType(in: item) { return name }
            }
        case .array(let items):
            for item in items { if let name = recursiveType(in: item) { return name } }
        default: break
        }
        return nil
    }
}

/// Bounds on a generated property, written in `@Guide(...)`: they go into the schema, and
/// the grammar enforces those it can (all but the bounds of a `Double`).
public struct GenerationGuide: Sendable {
    let apply: @Sendable (inout [(String, JinjaValue)]) -> Void

    static func setting(_ entries: [(String, JinjaValue)]) -> GenerationGuide {
        GenerationGuide { pairs in
            for (key, value) in entries {
                pairs.removeAll { $0.0 == key }
                pairs.append((key, value))
            }
        }
    }

    /// A whole number in `range`.
    public static func range(_ range: ClosedRange<Int>) -> GenerationGuide {
        setting([("minimum", .int(range.lowerBound)), ("maximum", .int(range.upperBound))])
    }
    public static func minimum(_ value: Int) -> GenerationGuide { setting([("minimum", .int(value))]) }
    public static func maximum(_ value: Int) -> GenerationGuide { setting([("maximum", .int(value))]) }

    /// A number in `range` (told to the model; not enforced by the grammar).
    public static func range(_ range: ClosedRange<Double>) -> GenerationGuide {
        setting([("minimum", .double(range.lowerBound)), ("maximum", .double(range.upperBound))])
    }
    public static func minimum(_ value: Double) -> GenerationGuide { setting([("minimum", .double(value))]) }
    public static func maximum(_ value: Double) -> GenerationGuide { setting([("maximum", .double(value))]) }

    /// One of these strings.
    public static func anyOf(_ choices: [String]) -> GenerationGuide { setting([("enum", .array(choices.map { .string($0) }))]) }
    /// Exactly this string.
    public static func constant(_ text: String) -> GenerationGuide { setting([("const", .string(text))]) }
    /// A string of at most `count` characters.
    public static func maximumLength(_ count: Int) -> GenerationGuide { setting([("maxLength", .int(count))]) }
    /// A string of at least `count` characters.
    public static func minimumLength(_ count: Int) -> GenerationGuide { setting([("minLength", .int(count))]) }

    /// An array of exactly `count` elements.
    public static func count(_ count: Int) -> GenerationGuide { setting([("minItems", .int(count)), ("maxItems", .int(count))]) }
    /// An array of `range.lowerBound` to `range.upperBound` elements.
    public static func count(_ range: ClosedRange<Int>) -> GenerationGuide {
        setting([("minItems", .int(range.lowerBound)), ("maxItems", .int(range.upperBound))])
    }
    public static func minimumCount(_ count: Int) -> GenerationGuide { setting([("minItems", .int(count))]) }
    public static func maximumCount(_ count: Int) -> GenerationGuide { setting([("maxItems", .int(count))]) }

    /// Guides for each element of an array.
    public static func element(_ guides: GenerationGuide...) -> GenerationGuide {
        GenerationGuide { pairs in
            var items: [(String, JinjaValue)] = []
            if let index = pairs.firstIndex(where: { $0.0 == "items" }), case .object(let existing) = pairs[index].1 { items = existing }
            for guide in guides { guide.apply(&items) }
            pairs.removeAll { $0.0 == "items" }
            pairs.append(("items", .object(items)))
        }
    }
}

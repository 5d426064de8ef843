import Foundation
import Jinja

/// A JSON value a model wrote, as Foundation Models names it: whole, or the part that has arrived
/// of a streamed one (`isComplete` false on every value still open).
public struct GeneratedContent: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case null
        case bool(Bool)
        case number(Double)
        case string(String)
        case array([GeneratedContent])
        /// An object: its properties, and their keys in the order written.
        case structure(properties: [String: GeneratedContent], orderedKeys: [String])
    }

    public var kind: Kind
    public var isComplete: Bool

    public init(kind: Kind, isComplete: Bool = true) {
        self.kind = kind
        self.isComplete = isComplete
    }

    public init(_ text: String) { self.init(kind: .string(text)) }

    /// An object with these properties, in this order.
    public init(properties: [(String, GeneratedContent)]) {
        var map: [String: GeneratedContent] = [:]
        var keys: [String] = []
        for (key, value) in properties where map.updateValue(value, forKey: key) == nil { keys.append(key) }
        self.init(kind: .structure(properties: map, orderedKeys: keys))
    }

    /// Parses whole JSON text (whitespace around it allowed).
    public init(json: String) throws {
        var parser = JSONReader(Array(json.utf8), partial: false)
        self = try parser.document()
    }

    /// Parses the beginning of JSON text: what is there, with open values marked incomplete
    /// (a string cut short keeps its characters; a number, `true` or key cut short is left out).
    public init(partialJSON: String) throws {
        var parser = JSONReader(Array(partialJSON.utf8), partial: true)
        self = try parser.document()
    }

    /// The property `name` of an object, converted; a `Mismatch` if it is missing or another kind.
    public func value<Value: ConvertibleFromGeneratedContent>(_ type: Value.Type = Value.self, forProperty name: String) throws -> Value {
        guard case .structure(let properties, _) = kind else { throw Mismatch(expected: "an object", found: self) }
        guard let property = properties[name] else { throw Mismatch(expected: "a property '\(name)'", found: self) }
        return try Value(property)
    }

    /// The property `name` of an object, converted; nil if it is missing or null.
    public func value<Value: ConvertibleFromGeneratedContent>(_ type: Value?.Type, forProperty name: String) throws -> Value? {
        guard case .structure(let properties, _) = kind else { throw Mismatch(expected: "an object", found: self) }
        guard let property = properties[name], property.kind != .null else { return nil }
        return try Value(property)
    }

    /// The value as JSON text (keys in the order written).
    public var jsonString: String { jinjaValue.jsonText }

    /// The value as the JSON value templates and schemas use.
    public var jinjaValue: JinjaValue {
        switch kind {
        case .null: return .none
        case .bool(let b): return .bool(b)
        case .number(let n): return n.rounded() == n && abs(n) < 9e15 ? .int(Int(n)) : .double(n)
        case .string(let s): return .string(s)
        case .array(let items): return .array(items.map(\.jinjaValue))
        case .structure(let properties, let keys): return .object(keys.map { ($0, properties[$0]?.jinjaValue ?? .none) })
        }
    }

    public var description: String { jsonString + (isComplete ? "" : " (incomplete)") }

    /// Generated content that does not have the shape a Swift type needs.
    public struct Mismatch: LocalizedError, Sendable {
        public var expected: String
        public var found: GeneratedContent
        public init(expected: String, found: GeneratedContent) {
            self.expected = expected
            self.found = found
        }
        public var errorDescription: String? {
            let text = found.jsonString
            return "the generated content is not \(expected): \(text.count > 200 ? text.prefix(200) + "…" : text)"
        }
    }

    /// Text that is not JSON (or, when whole text was asked for, not all of it).
    public struct SyntaxError: LocalizedError, Sendable {
        public var offset: Int
        public var reason: String
        public var errorDescription: String? { "the generated text is not JSON at byte \(offset): \(reason)" }
    }
}

/// A recursive-descent JSON reader that can stop where the text stops.
struct JSONReader {
    let bytes: [UInt8]
    let partial: Bool
    var index = 0
    /// Deep enough for any schema a grammar takes; bounded, so hostile text cannot exhaust the stack.
    static let maxDepth = 128

    init(_ bytes: [UInt8], partial: Bool) {
        self.bytes = bytes
        self.partial = partial
    }

    /// Thrown (in partial mode) where the text ends before a value has begun to show.
    struct Ended: Error {}

    mutating func document() throws -> GeneratedContent {
        do {
            let value = try self.value(depth: 0)
            skipSpace()
            guard index == bytes.count else { throw fail("text after the value") }
            return value
        } catch is Ended {
            return GeneratedContent(kind: .null, isComplete: false)
        }
    }

    func fail(_ reason: String) -> GeneratedContent.SyntaxError { GeneratedContent.SyntaxError(offset: index, reason: reason) }

    mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[index]) { index += 1 }
    }

    /// The end of the text: fine in partial mode (the caller stops), an error otherwise.
    func ended() throws -> Never {
        if partial { throw Ended() }
        throw fail("the text ends inside a value")
    }

    mutating func value(depth: Int) throws -> GeneratedContent {
        guard depth < Self.maxDepth else { throw fail("values nest more than \(Self.maxDepth) deep") }
        skipSpace()
        guard index < bytes.count else { try ended() }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""):
            let (text, complete) = try string()
            return GeneratedContent(kind: .string(text), isComplete: complete)
        case UInt8(ascii: "t"): return try word("true", .bool(true))
        case UInt8(ascii: "f"): return try word("false", .bool(false))
        case UInt8(ascii: "n"): return try word("null", .null)
        default: return try number()
        }
    }

    mutating func word(_ text: String, _ kind: GeneratedContent.Kind) throws -> GeneratedContent {
        for byte in text.utf8 {
            guard index < bytes.count else { try ended() }
            guard bytes[index] == byte else { throw fail("expected \(text)") }
            index += 1
        }
        return GeneratedContent(kind: kind)
    }

    mutating func number() throws -> GeneratedContent {
        let start = index
        while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
        guard index > start else { throw fail("expected a value") }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        let atEnd = index == bytes.count
        guard let n = Double(text), text.first != "+", text.last != "." else {
            if atEnd { try ended() }  // "-" or "1." so far
            throw fail("'\(text)' is not a number")
        }
        // A number that reaches the end of the text may go on: known, but not yet complete.
        return GeneratedContent(kind: .number(n), isComplete: !(atEnd && partial))
    }

    /// A string and whether its closing quote has arrived.
    mutating func string() throws -> (String, Bool) {
        index += 1  // the opening quote
        var out: [UInt8] = []
        while true {
            guard index < bytes.count else {
                if partial { return (String(decoding: out, as: UTF8.self), false) }
                try ended()
            }
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""): return (String(decoding: out, as: UTF8.self), true)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else {
                    if partial { return (String(decoding: out, as: UTF8.self), false) }
                    try ended()
                }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "u"):
                    guard index + 4 <= bytes.count else {
                        if partial { index = bytes.count; return (String(decoding: out, as: UTF8.self), false) }
                        try ended()
                    }
                    guard var code = hex4(at: index) else { throw fail("a bad \\u escape") }
                    index += 4
                    // A surrogate pair (\ud83e\udd89) is one character; a lone half becomes U+FFFD.
                    if partial, (0xD800..<0xDC00).contains(code), index + 6 > bytes.count {
                        index = bytes.count  // the low half may still come
                        return (String(decoding: out, as: UTF8.self), false)
                    }
                    if (0xD800..<0xDC00).contains(code), index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"),
                       bytes[index + 1] == UInt8(ascii: "u"), let low = hex4(at: index + 2), (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        index += 6
                    }
                    out += Array(String(Unicode.Scalar(code).map(Character.init) ?? "\u{FFFD}").utf8)
                default: throw fail("a bad escape")
                }
            case 0..<0x20: throw fail("a control character inside a string")
            default: out.append(byte)
            }
        }
    }

    /// The four hex digits at `position`, if there are.
    func hex4(at position: Int) -> UInt32? {
        guard position + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for byte in bytes[position..<position + 4] {
            guard let digit = Character(Unicode.Scalar(byte)).hexDigitValue else { return nil }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    mutating func array(depth: Int) throws -> GeneratedContent {
        index += 1
        var items: [GeneratedContent] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return GeneratedContent(kind: .array([]))
        }
        while true {
            do {
                items.append(try value(depth: depth + 1))
            } catch is Ended {
                return GeneratedContent(kind: .array(items), isComplete: false)
            }
            skipSpace()
            guard index < bytes.count else {
                if partial { return GeneratedContent(kind: .array(items), isComplete: false) }
                try ended()
            }
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "]") { return GeneratedContent(kind: .array(items)) }
            guard byte == UInt8(ascii: ",") else { throw fail("expected , or ] in an array") }
        }
    }

    mutating func object(depth: Int) throws -> GeneratedContent {
        index += 1
        var properties: [String: GeneratedContent] = [:]
        var keys: [String] = []
        func open() -> GeneratedContent {
            GeneratedContent(kind: .structure(properties: properties, orderedKeys: keys), isComplete: false)
        }
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return GeneratedContent(kind: .structure(properties: [:], orderedKeys: []))
        }
        while true {
            skipSpace()
            guard index < bytes.count else {
                if partial { return open() }
                try ended()
            }
            guard bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key in an object") }
            let (key, keyComplete) = try string()
            skipSpace()
            guard keyComplete, index < bytes.count else {
                if partial { return open() }
                try ended()
            }
            guard bytes[index] == UInt8(ascii: ":") else { throw fail("expected : after a key") }
            index += 1
            let item: GeneratedContent
            do {
                item = try value(depth: depth + 1)
            } catch is Ended {
                return open()
            }
            if properties.updateValue(item, forKey: key) == nil { keys.append(key) }
            skipSpace()
            guard index < bytes.count else {
                if partial { return open() }
                try ended()
            }
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "}") { return GeneratedContent(kind: .structure(properties: properties, orderedKeys: keys)) }
            guard byte == UInt8(ascii: ",") else { throw fail("expected , or } in an object") }
        }
    }
}

/// A value inside a template: what Python would hand Jinja for a chat template (JSON-like data),
/// plus `undefined` and the callables the language needs.
public enum JinjaValue: Sendable, Equatable {
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    /// A string marked safe (`|safe`, `|e`): Python's `Markup`. It matters to `+` only, where a
    /// plain string beside it is HTML-escaped first; everywhere else it is read as a plain string.
    case markup(String)
    case array([JinjaValue])
    /// What Jinja's `map`, `select`, `selectattr`, `unique`, `reverse`, ... return: a generator,
    /// which loops and feeds `list`, `join` or `first` but has no length, index or JSON form and
    /// is always true (a condition on it holds even when it is empty, as in Jinja). Unlike
    /// Python's, it may be looped over more than once.
    case generator([JinjaValue])
    /// A mapping with string keys, in insertion order (as Python dicts keep it).
    case object([(String, JinjaValue)])
    /// A `namespace(...)`: attributes that `{% set ns.x = ... %}` may change from inside loops and
    /// macros. One object, shared by every name and list that holds it, as in Jinja.
    case namespace(JinjaNamespace)
    case macro(Macro)
    /// A built-in global function (`range`, `namespace`, `strftime_now`, ...), so that
    /// `strftime_now is defined` holds as in Hugging Face's environment.
    case function(String)

    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.string(let x), .string(let y)), (.markup(let x), .markup(let y)), (.string(let x), .markup(let y)), (.markup(let x), .string(let y)):
            return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.generator, .generator): return false  // Python compares generators by identity
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.allSatisfy { key, value in y.first { $0.0 == key }?.1 == value }
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.macro(let x), .macro(let y)): return x.name == y.name
        case (.function(let x), .function(let y)): return x == y
        default:
            // Numbers compare across int, float and bool, as in Python.
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Python's truthiness.
    public var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s), .markup(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.isEmpty
        case .generator, .namespace, .macro, .function: return true
        }
    }

    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    var isDefined: Bool { if case .undefined = self { return false } else { return true } }

    /// A safe string read as the plain string it is (every operation but `+` and output does so).
    var plain: JinjaValue { if case .markup(let s) = self { return .string(s) } else { return self } }

    /// The pairs of a mapping or a namespace.
    var mapping: [(String, JinjaValue)]? {
        switch self {
        case .object(let pairs): return pairs
        case .namespace(let ns): return ns.pairs
        default: return nil
        }
    }

    /// The value at `key` of a mapping or namespace (undefined when absent).
    public subscript(key: String) -> JinjaValue {
        switch self {
        case .object(let pairs): return pairs.last { $0.0 == key }?.1 ?? .undefined
        case .namespace(let ns): return ns.pairs.last { $0.0 == key }?.1 ?? .undefined
        default: return .undefined
        }
    }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .markup: return "Markup"
        case .array: return "list"
        case .generator: return "generator"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "macro"
        case .function: return "builtin_function_or_method"
        }
    }

    /// The text `{{ value }}` prints: Python's `str()`.
    public var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s), .markup(let s): return s
        default: return repr
        }
    }

    /// Python's `repr()`, which is how lists and dicts print. Past `Interpreter.maxValueDepth`
    /// levels it prints `[...]` (values that deep cannot be built by a template; this guards the stack).
    var repr: String { repr(depth: 0) }

    private func repr(depth: Int) -> String {
        if depth > Interpreter.maxValueDepth { return "[...]" }
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return Self.pythonFloat(d)
        case .string(let s): return Self.pythonQuoted(s)
        case .markup(let s): return "Markup(" + Self.pythonQuoted(s) + ")"
        case .array(let a): return "[" + a.map { $0.repr(depth: depth + 1) }.joined(separator: ", ") + "]"
        case .generator: return "<generator object>"
        case .object(let o): return "{" + o.map { Self.pythonQuoted($0.0) + ": " + $0.1.repr(depth: depth + 1) }.joined(separator: ", ") + "}"
        case .namespace(let ns): return "<Namespace " + ns.pairs.map { "\($0.0)=\($0.1.repr(depth: depth + 1))" }.joined(separator: ", ") + ">"
        case .macro(let m): return "<Macro '\(m.name)'>"
        case .function(let f): return "<built-in function \(f)>"
        }
    }

    /// Python's float formatting: shortest round-trip digits, always with a point or exponent.
    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded(), abs(d) < 1e16 { return "\(Int(d)).0" }
        return "\(d)"  // Swift also prints the shortest round-trip digits
    }

    /// Python's `repr` of a string: single quotes unless the text holds one and no double quote.
    static func pythonQuoted(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(c) == quote { out += "\\" + String(quote) }
                else if c.value < 0x20 || c.value == 0x7F { out += "\\x" + (c.value < 16 ? "0" : "") + String(c.value, radix: 16) }
                else { out.unicodeScalars.append(c) }
            }
        }
        return out + String(quote)
    }
}

/// A `{% macro %}` definition: its parameters (with defaults) and body.
public struct Macro: Sendable {
    let name: String
    let parameters: [(String, Expression?)]
    let body: [Node]
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .object(elements) }
}

/// The object behind a `namespace(...)` value. Rendering is single-threaded and a namespace never
/// leaves the render that made it, so it is shared without locks.
public final class JinjaNamespace: @unchecked Sendable {
    /// The attributes, in the order they were first set.
    var pairs: [(String, JinjaValue)]

    init(_ pairs: [(String, JinjaValue)]) { self.pairs = pairs }

    /// Whether `value` holds this namespace anywhere inside it (storing it would make a cycle).
    func isReachable(from value: JinjaValue) -> Bool {
        var work = [value]
        var seen = Set<ObjectIdentifier>()
        while let v = work.popLast() {
            switch v {
            case .array(let a), .generator(let a): work.append(contentsOf: a.filter(\.isContainer))
            case .object(let o): work.append(contentsOf: o.map(\.1).filter(\.isContainer))
            case .namespace(let ns):
                if ns === self { return true }
                if seen.insert(ObjectIdentifier(ns)).inserted { work.append(contentsOf: ns.pairs.map(\.1).filter(\.isContainer)) }
            default: break
            }
        }
        return false
    }
}

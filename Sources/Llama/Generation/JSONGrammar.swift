import Jinja

/// Grammars for JSON output: any JSON object (OpenAI's `json_object` mode), or the values a
/// JSON Schema describes (`json_schema` mode). The schema subset: `type` (object, array, string,
/// number, integer, boolean, null, or a list of them), `properties` with `required` (properties
/// come in the order given), `items`, `minItems`/`maxItems`, `minLength`/`maxLength`, `enum`,
/// `const`, `anyOf`/`oneOf`, `minimum`/`maximum` of integers, and `$ref` into `#/$defs` or
/// `#/definitions`.
public enum JSONGrammar {
    /// Whitespace stays short (a space, or a newline and some indentation), so a small model
    /// cannot wander off into blank lines.
    static let basics = #"""
    ws ::= ([ ] | [\n] [ \t]{0,20})?
    json-value ::= json-object | json-array | json-string | json-number | ("true" | "false" | "null")
    json-object ::= "{" ws ( json-string ws ":" ws json-value ws ( "," ws json-string ws ":" ws json-value ws )* )? "}"
    json-array ::= "[" ws ( json-value ws ( "," ws json-value ws )* )? "]"
    json-char ::= [^"\\\x00-\x1F\x7F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
    json-string ::= "\"" json-char* "\""
    json-integer ::= "-"? ( [0] | [1-9] [0-9]{0,15} )
    json-number ::= json-integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
    """#

    /// Any JSON object, with optional whitespace around it.
    public static var anyObject: String { "root ::= ws json-object ws\n" + basics }

    /// The grammar for values of `schema` (a JSON Schema as JSON text or parsed value).
    public static func grammar(schema: JinjaValue) throws -> String {
        var converter = Converter(root: schema)
        let body = try converter.rule(for: schema, depth: 0)
        return "root ::= ws " + body + " ws\n" + converter.extraRules.joined(separator: "\n") + "\n" + basics
    }

    public static func grammar(schemaJSON: String) throws -> String {
        try grammar(schema: JinjaValue(json: schemaJSON))
    }

    /// Rules for several schemas in one grammar (each with its own `$ref` root): rule
    /// `{name}-i` matches values of `schemas[i]`. The rules end with the JSON basics.
    static func rules(for schemas: [JinjaValue], name: String) throws -> String {
        var rules: [String] = []
        for (i, schema) in schemas.enumerated() {
            var converter = Converter(root: schema, prefix: "\(name)-\(i)-")
            let body = try converter.rule(for: schema, depth: 0)
            rules.append("\(name)-\(i) ::= \(body)")
            rules += converter.extraRules
        }
        return rules.joined(separator: "\n") + "\n" + basics
    }

    struct Converter {
        let root: JinjaValue
        /// Put before the names of the rules this converter makes (several schemas, one grammar).
        var prefix = ""
        var extraRules: [String] = []
        var references: [String: String] = [:]

        /// A GBNF literal for `text` (inside double quotes, escaped).
        static func literal(_ text: String) -> String {
            var out = "\""
            for c in text.unicodeScalars {
                switch c {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if c.value < 0x20 { out += "\\x" + (c.value < 16 ? "0" : "") + String(c.value, radix: 16) } else { out.unicodeScalars.append(c) }
                }
            }
            return out + "\""
        }

        /// A JSON value written as a GBNF literal (for enum and const).
        static func jsonLiteral(_ value: JinjaValue) -> String {
            literal(value.jsonText)
        }

        mutating func rule(for schema: JinjaValue, depth: Int) throws -> String {
            guard depth < 32 else { throw LlamaError.grammar("the JSON schema nests too deeply (or refers to itself)") }
            if case .bool(true) = schema { return "json-value" }
            guard case .object = schema else {
                if case .bool(false) = schema { throw LlamaError.grammar("a JSON schema of `false` matches nothing") }
                throw LlamaError.grammar("a JSON schema must be an object, not \(schema.text)")
            }
            if case .string(let ref) = schema["$ref"] {
                return try reference(ref, depth: depth)
            }
            if schema["const"].isDefinedValue { return Self.jsonLiteral(schema["const"]) }
            if case .array(let options) = schema["enum"] {
                guard !options.isEmpty else { throw LlamaError.grammar("an empty enum matches nothing") }
                return "(" + options.map(Self.jsonLiteral).joined(separator: " | ") + ")"
            }
            for key in ["anyOf", "oneOf"] {
                if case .array(let options) = schema[key] {
                    return "(" + (try options.map { try rule(for: $0, depth: depth + 1) }).joined(separator: " | ") + ")"
                }
            }
            if case .array(let parts) = schema["allOf"], parts.count == 1 { return try rule(for: parts[0], depth: depth + 1) }
            switch schema["type"] {
            case .array(let listed):
                // Each type once: a list repeating one type must not multiply the grammar.
                var types: [JinjaValue] = []
                for type in listed where !types.contains(type) { types.append(type) }
                return "(" + (try types.map { type -> String in
                    var single = schema
                    if case .object(var pairs) = single {
                        pairs.removeAll { $0.0 == "type" }
                        pairs.append(("type", type))
                        single = .object(pairs)
                    }
                    return try rule(for: single, depth: depth + 1)
                }).joined(separator: " | ") + ")"
            case .string(let type):
                return try rule(type: type, schema: schema, depth: depth)
            default:
                if schema["properties"].isDefinedValue { return try rule(type: "object", schema: schema, depth: depth) }
                if schema["items"].isDefinedValue { return try rule(type: "array", schema: schema, depth: depth) }
                return "json-value"
            }
        }

        mutating func rule(type: String, schema: JinjaValue, depth: Int) throws -> String {
            switch type {
            case "string":
                let (low, high) = try bounds(schema, "minLength", "maxLength")
                if low == 0, high == nil { return "json-string" }
                return "\"\\\"\" json-char{\(low),\(high.map(String.init) ?? "")} \"\\\"\""
            case "integer": return try integerRule(schema)
            case "number": return "json-number"
            case "boolean": return "(\"true\" | \"false\")"
            case "null": return "\"null\""
            case "array":
                let item = schema["items"].isDefinedValue ? try rule(for: schema["items"], depth: depth + 1) : "json-value"
                let (low, high) = try bounds(schema, "minItems", "maxItems")
                let name = "\(prefix)array-\(extraRules.count)-item"
                extraRules.append("\(name) ::= \(item)")
                if let high, high == 0 { return "\"[\" ws \"]\"" }
                let more = "( \",\" ws \(name) ws )"
                let rest = high.map { "\(more){\(max(low - 1, 0)),\($0 - 1)}" } ?? (low > 1 ? "\(more){\(low - 1),}" : "\(more)*")
                let items = "\(name) ws \(rest)"
                return low > 0 ? "\"[\" ws \(items) \"]\"" : "\"[\" ws ( \(items) )? \"]\""
            case "object":
                guard case .object(let properties) = schema["properties"], !properties.isEmpty else { return "json-object" }
                var required: Set<String> = []
                if case .array(let names) = schema["required"] { for case .string(let n) in names { required.insert(n) } }
                var pairs: [(String, Bool)] = []
                for (key, value) in properties {
                    let valueRule = try rule(for: value, depth: depth + 1)
                    pairs.append((Self.literal(JinjaValue.string(key).jsonText) + " ws \":\" ws " + valueRule, required.contains(key)))
                }
                let mandatory = pairs.filter(\.1).map(\.0)
                let optional = pairs.filter { !$0.1 }.map(\.0)
                var body = mandatory.joined(separator: " ws \",\" ws ")
                if mandatory.isEmpty {
                    // No required property: any ordered subset of the optional ones. One rule per
                    // suffix keeps the grammar linear in the number of properties:
                    //   rest-k ::= ( ws "," ws p_k )? rest-(k+1)      (rest-n is empty)
                    //   body   ::= ( p_0 rest-1 | p_1 rest-2 | ... )?
                    var rest = "\"\""
                    var starts: [String] = []
                    for k in optional.indices.reversed() {
                        starts.append("\(optional[k]) \(rest)")
                        let name = "\(prefix)props-\(extraRules.count)"
                        extraRules.append("\(name) ::= ( ws \",\" ws \(optional[k]) )? \(rest)")
                        rest = name
                    }
                    body = starts.isEmpty ? "" : "( " + starts.reversed().joined(separator: " | ") + " )?"
                } else {
                    for o in optional { body += " ( ws \",\" ws \(o) )?" }
                }
                return "\"{\" ws \(body) ws \"}\""
            default:
                throw LlamaError.grammar("JSON schema type '\(type)' is not supported")
            }
        }

        /// `minimum` and `maximum` counts of a string or array, checked: whole numbers from 0 to
        /// the grammar's repetition limit, the first no larger than the second.
        func bounds(_ schema: JinjaValue, _ minimumKey: String, _ maximumKey: String) throws -> (Int, Int?) {
            func count(_ key: String) throws -> Int? {
                let value = schema[key]
                guard value.isDefinedValue, value != .none else { return nil }
                guard let n = value.intValue, n >= 0, n <= Self.maxCount else {
                    throw LlamaError.grammar("\(key) in a JSON schema must be a whole number from 0 to \(Self.maxCount), not \(value.jsonText)")
                }
                return n
            }
            let low = try count(minimumKey) ?? 0
            let high = try count(maximumKey)
            if let high, high < low { throw LlamaError.grammar("\(maximumKey) (\(high)) is smaller than \(minimumKey) (\(low)) in a JSON schema") }
            return (low, high)
        }

        /// An integer between `minimum` and `maximum` (either may be missing), digit by digit.
        func integerRule(_ schema: JinjaValue) throws -> String {
            func bound(_ key: String, roundingUp: Bool) throws -> Int? {
                let value = schema[key]
                guard value.isDefinedValue, value != .none else { return nil }
                let number: Double
                switch value {
                case .int(let i): number = Double(i)
                case .double(let d) where d.isFinite: number = roundingUp ? d.rounded(.up) : d.rounded(.down)
                default: throw LlamaError.grammar("\(key) in a JSON schema must be a number, not \(value.jsonText)")
                }
                return Int(max(-Self.integerLimit, min(Self.integerLimit, number)))
            }
            let low = try bound("minimum", roundingUp: true), high = try bound("maximum", roundingUp: false)
            if low == nil, high == nil { return "json-integer" }
            let lo = low ?? -Int(Self.integerLimit), hi = high ?? Int(Self.integerLimit)
            guard lo <= hi else { throw LlamaError.grammar("maximum (\(hi)) is smaller than minimum (\(lo)) in a JSON schema") }
            var options: [String] = []
            if lo < 0 { options.append("\"-\" ( " + Self.naturals(max(1, -hi), -lo).joined(separator: " | ") + " )") }
            if hi >= 0 { options += Self.naturals(max(0, lo), hi) }
            return "( " + options.joined(separator: " | ") + " )"
        }

        /// json-integer's 16 digits: the bounds a grammar range is clamped to.
        static let integerLimit = 9_999_999_999_999_999.0

        /// Alternatives matching the whole numbers from `low` to `high` (0 <= low <= high)
        /// written without leading zeros: one set per digit count.
        static func naturals(_ low: Int, _ high: Int) -> [String] {
            var options: [String] = []
            var start = low
            while start <= high {
                let digits = String(start).count
                let top = Int(String(repeating: "9", count: digits))!
                let end = min(high, top)
                options += sameLength(Array(String(start)), Array(String(end).leftPadded(to: digits)))
                if end == high { break }
                start = end + 1
            }
            return options
        }

        /// Alternatives matching the digit strings from `a` to `b` (same length, a <= b), leading zeros allowed.
        static func sameLength(_ a: [Character], _ b: [Character]) -> [String] {
            guard let first = a.first, let last = b.first else { return [""] }
            let restA = Array(a.dropFirst()), restB = Array(b.dropFirst())
            let any = restA.isEmpty ? "" : " [0-9]{\(restA.count)}"
            if first == last { return sameLength(restA, restB).map { "[\(first)]" + ($0.isEmpty ? "" : " " + $0) } }
            let lowFull = restA.allSatisfy { $0 == "0" }, highFull = restB.allSatisfy { $0 == "9" }
            let low = first.wholeNumberValue!, high = last.wholeNumberValue!
            var options: [String] = []
            let from = lowFull ? low : low + 1, to = highFull ? high : high - 1
            if !lowFull {
                options += sameLength(restA, Array(repeating: "9", count: restA.count)).map { "[\(first)] " + $0 }
            }
            if from <= to { options.append("[\(from)-\(to)]" + any) }
            if !highFull {
                options += sameLength(Array(repeating: "0", count: restB.count), restB).map { "[\(last)] " + $0 }
            }
            return options
        }

        /// The largest minLength, maxLength, minItems or maxItems a grammar can express.
        static let maxCount = 10_000

        mutating func reference(_ ref: String, depth: Int) throws -> String {
            if let name = references[ref] { return name }
            guard ref.hasPrefix("#/") else { throw LlamaError.grammar("only local references (#/$defs/...) are supported, not '\(ref)'") }
            var target = root
            for part in ref.dropFirst(2).split(separator: "/") { target = target[String(part)] }
            guard target.isDefinedValue else { throw LlamaError.grammar("the reference '\(ref)' points nowhere") }
            let name = "\(prefix)ref-\(references.count)"
            references[ref] = name
            extraRules.append("\(name) ::= " + (try rule(for: target, depth: depth + 1)))
            return name
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

extension JinjaValue {
    var isDefinedValue: Bool { if case .undefined = self { return false } else { return true } }
    var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 0x1p62: return Int(d)
        default: return nil
        }
    }
}

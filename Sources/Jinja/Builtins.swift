#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Operators, filters, tests, Python methods and global functions, with Python's semantics
/// where templates can tell the difference.
enum Builtins {
    /// The longest string (in UTF-8 bytes) and list any operation may build. Templates come
    /// with downloaded model files: `'a' * 10**10` must fail cleanly, not allocate 10 GB.
    static let maxStringBytes = 32 << 20
    static let maxListCount = 2_000_000

    static func checkedString(_ s: String) throws(JinjaError) -> JinjaValue {
        guard s.utf8.count <= maxStringBytes else { throw tooLong }
        return .string(s)
    }

    static let tooLong = JinjaError("a string would be longer than \(maxStringBytes >> 20) MiB")
    static let tooMany = JinjaError("a list would hold more than \(maxListCount) items")

    /// Throws unless `count` copies of something of `size` fit under `limit`.
    static func checkProduct(_ size: Int, _ count: Int, limit: Int, _ error: JinjaError) throws(JinjaError) {
        let (total, overflow) = size.multipliedReportingOverflow(by: max(0, count))
        guard !overflow, total <= limit else { throw error }
    }

    /// Whether the text of `value` (its `str()`, `repr` or JSON) could be longer than `limit`
    /// bytes: a walk that stops as soon as it has seen that much, so a list of a million
    /// references to one long string is caught before any text is built.
    static func textMayExceed(_ value: JinjaValue, _ limit: Int) -> Bool {
        var total = 0
        var work: [JinjaValue] = [value]
        while let v = work.popLast() {
            switch v {
            case .string(let s), .markup(let s): total += s.utf8.count + 2
            case .array(let a), .generator(let a):
                total += 2 + 2 * a.count
                if total > limit { return true }
                work.append(contentsOf: a)
            case .object, .namespace:
                let o = v.mapping ?? []
                total += 2 + 4 * o.count
                if total > limit { return true }
                for (k, item) in o {
                    total += k.utf8.count + 2
                    work.append(item)
                }
            default: total += 24
            }
            if total > limit { return true }
        }
        return false
    }

    /// `str(value)`, refused when it would be longer than the string limit.
    static func checkedText(_ value: JinjaValue) throws(JinjaError) -> String {
        if case .string(let s) = value.plain { return s }
        guard !textMayExceed(value, maxStringBytes) else { throw tooLong }
        return value.text
    }

    /// `separator.join(str(v) for v in values)` (the filter and the method), refused when too long.
    static func checkedJoin(_ values: [JinjaValue], separator: String) throws(JinjaError) -> String {
        try checkProduct(separator.utf8.count, values.count, limit: maxStringBytes, tooLong)
        guard !textMayExceed(.array(values), maxStringBytes) else { throw tooLong }
        return values.map(\.text).joined(separator: separator)
    }

    // MARK: Items and slices

    /// `value[key]` and `value.key`: a mapping's entry, a list's or string's element (negative
    /// indices count from the end); undefined when absent, as Jinja's getitem gives.
    static func item(_ value: JinjaValue, _ key: JinjaValue) -> JinjaValue {
        switch (value, key) {
        case (.object, .string(let k)), (.namespace, .string(let k)): return value[k]
        case (.array(let a), .int(let i)):
            let j = i < 0 ? a.count + i : i
            return a.indices.contains(j) ? a[j] : .undefined
        case (.string(let s), .int(let i)):
            let chars = Array(s)
            let j = i < 0 ? chars.count + i : i
            return chars.indices.contains(j) ? .string(String(chars[j])) : .undefined
        default: return .undefined
        }
    }

    static func slice(_ value: JinjaValue, start: JinjaValue?, stop: JinjaValue?, step: JinjaValue?) throws(JinjaError) -> JinjaValue {
        func integer(_ v: JinjaValue?) throws(JinjaError) -> Int? {
            switch v {
            case nil, .none?, .undefined?: return nil
            case .int(let i)?: return i
            default: throw JinjaError("slice indices must be integers")
            }
        }
        let step = try integer(step) ?? 1
        guard step != 0 else { throw JinjaError("slice step cannot be zero") }
        func indices(count: Int) throws(JinjaError) -> [Int] {
            func clamp(_ i: Int?, _ fallback: Int) -> Int {
                guard var i else { return fallback }
                if i < 0 { i += count }
                return step > 0 ? min(max(i, 0), count) : min(max(i, -1), count - 1)
            }
            let from = clamp(try integer(start), step > 0 ? 0 : count - 1)
            let to = clamp(try integer(stop), step > 0 ? count : -1)
            return Array(stride(from: from, to: to, by: step))
        }
        switch value {
        case .array(let a): return .array(try indices(count: a.count).map { a[$0] })
        case .string(let s):
            let chars = Array(s)
            return .string(String(try indices(count: chars.count).map { chars[$0] }))
        default: throw JinjaError("'\(value.typeName)' object cannot be sliced")
        }
    }

    // MARK: Operators

    static func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaError) -> JinjaValue {
        switch op {
        case "==": return .bool(a == b)
        case "!=": return .bool(a != b)
        case "<", ">", "<=", ">=":
            let order: Int
            if let x = a.number, let y = b.number { order = x < y ? -1 : (x > y ? 1 : 0) }
            else if case .string(let x) = a, case .string(let y) = b {
                order = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : (x == y ? 0 : 1)
            } else { throw JinjaError("'\(op)' is not supported between '\(a.typeName)' and '\(b.typeName)'") }
            switch op {
            case "<": return .bool(order < 0)
            case ">": return .bool(order > 0)
            case "<=": return .bool(order <= 0)
            default: return .bool(order >= 0)
            }
        case "in": return .bool(try contains(b, a))
        case "not in": return .bool(!(try contains(b, a)))
        case "~":
            let (x, y) = (try checkedText(a), try checkedText(b))
            guard x.utf8.count + y.utf8.count <= maxStringBytes else { throw tooLong }
            return .string(x + y)
        case "+":
            switch (a, b) {
            // Markup + str escapes the str (and str + Markup, through Markup.__radd__).
            case (.markup, .string), (.markup, .markup), (.string, .markup):
                func safe(_ v: JinjaValue) -> String {
                    switch v {
                    case .markup(let s): return s
                    default: return htmlEscape(v.text)
                    }
                }
                let (l, r) = (safe(a), safe(b))
                guard l.utf8.count + r.utf8.count <= maxStringBytes else { throw tooLong }
                return .markup(l + r)
            case (.string(let x), .string(let y)):
                guard x.utf8.count + y.utf8.count <= maxStringBytes else { throw tooLong }
                return .string(x + y)
            case (.array(let x), .array(let y)):
                guard x.count + y.count <= maxListCount else { throw tooMany }
                return .array(x + y)
            default: return try arithmetic(op, a, b)
            }
        case "*":
            switch (a, b) {
            case (.string(let s), .int(let n)), (.int(let n), .string(let s)):
                try checkProduct(s.utf8.count, n, limit: maxStringBytes, tooLong)
                return .string(String(repeating: s, count: max(0, n)))
            case (.array(let x), .int(let n)), (.int(let n), .array(let x)):
                try checkProduct(x.count, n, limit: maxListCount, tooMany)
                return .array(Array([[JinjaValue]](repeating: x, count: max(0, n)).joined()))
            default: return try arithmetic(op, a, b)
            }
        default: return try arithmetic(op, a, b)
        }
    }

    private static func arithmetic(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaError) -> JinjaValue {
        if case .undefined = a { throw JinjaError("an undefined value was used in '\(op)'") }
        if case .undefined = b { throw JinjaError("an undefined value was used in '\(op)'") }
        func intValue(_ v: JinjaValue) -> Int? {
            switch v {
            case .int(let i): return i
            case .bool(let b): return b ? 1 : 0
            default: return nil
            }
        }
        if let x = intValue(a), let y = intValue(b), op != "/" {
            // Python's integers are unbounded; these are 64-bit, so overflow is an error.
            let overflow = JinjaError("integer overflow in \(x) \(op) \(y) (integers here are 64-bit)")
            func checked(_ result: (partialValue: Int, overflow: Bool)) throws(JinjaError) -> JinjaValue {
                guard !result.overflow else { throw overflow }
                return .int(result.partialValue)
            }
            switch op {
            case "+": return try checked(x.addingReportingOverflow(y))
            case "-": return try checked(x.subtractingReportingOverflow(y))
            case "*": return try checked(x.multipliedReportingOverflow(by: y))
            case "//", "%":
                guard y != 0 else { throw JinjaError("integer division or modulo by zero") }
                if y == -1, op == "%" { return .int(0) }  // Int.min % -1 would overflow on the way
                // Floor division and a remainder with the divisor's sign, as Python's.
                let (quotient, quotientOverflow) = x.dividedReportingOverflow(by: y)
                guard !quotientOverflow else { throw overflow }
                var q = quotient, r = x - quotient * y
                if r != 0, (r < 0) != (y < 0) {
                    q -= 1
                    r += y
                }
                return op == "//" ? .int(q) : .int(r)
            case "**":
                guard y >= 0 else { return .double(pow(Double(x), Double(y))) }
                var result = 1, base = x, exponent = y
                while exponent > 0 {
                    if exponent & 1 == 1 {
                        let (product, o) = result.multipliedReportingOverflow(by: base)
                        guard !o else { throw overflow }
                        result = product
                    }
                    exponent >>= 1
                    if exponent > 0 {
                        let (square, o) = base.multipliedReportingOverflow(by: base)
                        guard !o else { throw overflow }
                        base = square
                    }
                }
                return .int(result)
            default: break
            }
        }
        guard let x = a.number, let y = b.number else {
            throw JinjaError("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw JinjaError("division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw JinjaError("float floor division by zero") }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw JinjaError("float modulo by zero") }
            return .double(x - (x / y).rounded(.down) * y)
        case "**": return .double(pow(x, y))
        default: throw JinjaError("unknown operator \(op)")
        }
    }

    static func contains(_ container: JinjaValue, _ element: JinjaValue) throws(JinjaError) -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let e) = element else { throw JinjaError("'in <string>' requires a string on the left, not \(element.typeName)") }
            return e.isEmpty || s.contains(e)
        case .array(let a), .generator(let a): return a.contains(element)
        case .object, .namespace:
            guard case .string(let k) = element else { return false }
            return container.mapping!.contains { $0.0 == k }
        case .undefined: return false
        default: throw JinjaError("argument of type '\(container.typeName)' is not iterable")
        }
    }

    // MARK: Tests (`x is name`)

    static func test(_ name: String, _ value: JinjaValue, _ args: [JinjaValue]) throws(JinjaError) -> Bool {
        switch name {
        case "defined": return value.isDefined
        case "undefined": return !value.isDefined
        case "none": if case .none = value { return true } else { return false }
        case "string": if case .string = value { return true } else { return false }
        case "number":
            switch value { case .int, .double: return true; default: return false }
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "mapping": switch value { case .object, .namespace: return true; default: return false }
        case "iterable": switch value { case .array, .generator, .object, .string: return true; default: return false }
        case "sequence": switch value { case .array, .object, .string: return true; default: return false }
        case "callable": switch value { case .macro, .function: return true; default: return false }
        case "equalto", "eq", "==", "sameas": return value == (args.first ?? .undefined)
        case "ne", "!=": return value != (args.first ?? .undefined)
        case "gt", ">", "lt", "<", "ge", ">=", "le", "<=":
            let op = ["gt": ">", "lt": "<", "ge": ">=", "le": "<="][name] ?? name
            return try binary(op, value, args.first ?? .undefined).isTruthy
        case "odd", "even":
            guard case .int(let i) = value else { throw JinjaError("'\(name)' needs an integer") }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard case .int(let i) = value, case .int(let d)? = args.first, d != 0 else { throw JinjaError("'divisibleby' needs integers") }
            return i.remainderReportingOverflow(dividingBy: d).partialValue == 0
        case "in": return try contains(args.first ?? .undefined, value)
        case "lower": if case .string(let s) = value { return s == s.lowercased() } else { return false }
        case "upper": if case .string(let s) = value { return s == s.uppercased() } else { return false }
        default: throw JinjaError("no test named '\(name)'")
        }
    }

    // MARK: Filters (`x | name`)

    static func filter(_ name: String, _ value: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaError) -> JinjaValue {
        // Jinja's sequence filters test the value's truth first: none is an empty sequence.
        var value = value
        if case .none = value, ["selectattr", "rejectattr", "select", "reject", "map", "join", "list", "unique", "sort", "sum"].contains(name) {
            value = .array([])
        }
        func argument(_ index: Int, _ key: String) -> JinjaValue? {
            kwargs.last { $0.0 == key }?.1 ?? (index < args.count ? args[index] : nil)
        }
        switch name {
        case "trim":
            return .string(strip(value.text, argument(0, "chars")?.stringValue, leading: true, trailing: true))
        case "length", "count":
            switch value {
            case .string(let s): return .int(s.count)
            case .array(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .namespace(let ns): return .int(ns.pairs.count)
            case .undefined: return .int(0)
            default: throw JinjaError("object of type '\(value.typeName)' has no len()")
            }
        case "string": return .string(try checkedText(value))
        case "list":
            switch value {
            case .array: return value
            default: return .array(try Interpreter(globals: [:]).iterate(value))
            }
        case "first":
            if case .string(let s) = value { return s.first.map { .string(String($0)) } ?? .undefined }
            return try Interpreter(globals: [:]).iterate(value).first ?? .undefined
        case "last":
            if case .string(let s) = value { return s.last.map { .string(String($0)) } ?? .undefined }
            if case .generator = value { throw JinjaError("'generator' object is not reversible") }
            return try Interpreter(globals: [:]).iterate(value).last ?? .undefined
        case "upper": return .string(value.text.uppercased())
        case "lower": return .string(value.text.lowercased())
        case "capitalize": return .string(capitalize(value.text))
        case "title": return .string(title(value.text))
        case "replace":
            guard case .string(let old)? = argument(0, "old"), case .string(let new)? = argument(1, "new") else {
                throw JinjaError("replace needs two strings")
            }
            var count: Int? = nil
            if case .int(let c)? = argument(2, "count"), c >= 0 { count = c }
            return .string(try replace(try checkedText(value), old, new, count: count))
        case "default", "d":
            let fallback = argument(0, "default_value") ?? .string("")
            let boolean = argument(1, "boolean")?.isTruthy ?? false
            return (boolean ? value.isTruthy : value.isDefined) ? value : fallback
        case "join":
            let separator = argument(0, "d")?.text ?? ""
            var items = try Interpreter(globals: [:]).iterate(value)
            if let attribute = argument(1, "attribute") { items = items.map { item($0, attribute) } }
            return .string(try checkedJoin(items, separator: separator))
        case "items":
            guard case .object(let o) = value else {
                if case .undefined = value { return .array([]) }
                throw JinjaError("items needs a mapping, not \(value.typeName)")
            }
            return .generator(o.map { .array([.string($0.0), $0.1]) })
        case "selectattr", "rejectattr":
            let keep = name == "selectattr"
            guard case .string(let attribute)? = args.first else { throw JinjaError("\(name) needs an attribute name") }
            let items = try Interpreter(globals: [:]).iterate(value)
            var out: [JinjaValue] = []
            for element in items {
                let v = item(element, .string(attribute))
                let passed: Bool
                if args.count > 1, case .string(let testName) = args[1] {
                    passed = try test(testName, v, Array(args.dropFirst(2)))
                } else {
                    passed = v.isTruthy
                }
                if passed == keep { out.append(element) }
            }
            return .generator(out)
        case "select", "reject":
            let keep = name == "select"
            var out: [JinjaValue] = []
            for element in try Interpreter(globals: [:]).iterate(value) {
                let passed: Bool
                if case .string(let testName)? = args.first {
                    passed = try test(testName, element, Array(args.dropFirst()))
                } else {
                    passed = element.isTruthy
                }
                if passed == keep { out.append(element) }
            }
            return .generator(out)
        case "map":
            let items = try Interpreter(globals: [:]).iterate(value)
            if let attribute = kwargs.last(where: { $0.0 == "attribute" })?.1 {
                let fallback = kwargs.last { $0.0 == "default" }?.1
                return .generator(items.map { element in
                    let v = item(element, attribute)
                    if let fallback, !v.isDefined { return fallback }
                    return v
                })
            }
            guard case .string(let filterName)? = args.first else { throw JinjaError("map needs a filter name or attribute=") }
            var out: [JinjaValue] = []
            for element in items { out.append(try filter(filterName, element, Array(args.dropFirst()), [])) }
            return .generator(out)
        case "unique":
            var out: [JinjaValue] = []
            for element in try Interpreter(globals: [:]).iterate(value) where !out.contains(element) { out.append(element) }
            return .generator(out)
        case "reverse":
            if case .string(let s) = value { return .string(String(s.reversed())) }
            let items = try Interpreter(globals: [:]).iterate(value)
            // A list reversed is an iterator; anything else is listed first, then reversed.
            if case .array = value { return .generator(items.reversed()) }
            return .array(items.reversed())
        case "sort":
            let reverse = argument(0, "reverse")?.isTruthy ?? false
            let attribute = argument(2, "attribute")
            var items = try Interpreter(globals: [:]).iterate(value)
            var failure: JinjaError? = nil
            items.sort { x, y in
                let (a, b) = attribute.map { (item(x, $0), item(y, $0)) } ?? (x, y)
                do { return try binary(reverse ? ">" : "<", a, b).isTruthy } catch let error as JinjaError {
                    failure = error
                    return false
                } catch { return false }
            }
            if let failure { throw failure }
            return .array(items)
        case "tojson":
            var indent: Int? = nil
            // Python indents by " " * n, which is empty for a negative n.
            if case .int(let i)? = argument(0, "indent") { indent = max(0, i) }
            let sortKeys = kwargs.last { $0.0 == "sort_keys" }?.1.isTruthy ?? false
            var separators: (String, String)? = nil
            if case .array(let s)? = kwargs.last(where: { $0.0 == "separators" })?.1, s.count == 2 { separators = (s[0].text, s[1].text) }
            return .string(try JSON.encode(value, indent: indent, sortKeys: sortKeys, separators: separators))
        case "int":
            // Jinja: int(value), else int(float(value)), else the default (0).
            let fallback = argument(0, "default") ?? .int(0)
            func truncated(_ d: Double) throws(JinjaError) -> JinjaValue {
                if d.isNaN { return fallback }
                guard d.isFinite, abs(d) < 0x1p63 else { throw JinjaError("cannot convert \(JinjaValue.pythonFloat(d)) to a 64-bit integer") }
                return .int(Int(d))
            }
            switch value {
            case .int: return value
            case .double(let d): return try truncated(d)
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s):
                if let i = Int(s.trimmingSpaces) { return .int(i) }
                guard let d = Double(s.trimmingSpaces) else { return fallback }
                return try truncated(d)
            default: return fallback
            }
        case "float":
            switch value {
            case .int(let i): return .double(Double(i))
            case .double: return value
            case .string(let s): return .double(Double(s.trimmingSpaces) ?? 0)
            default: return .double(0)
            }
        case "abs":
            switch value {
            case .int(let i):
                guard i != .min else { throw JinjaError("integer overflow in abs(\(i)) (integers here are 64-bit)") }
                return .int(abs(i))
            case .double(let d): return .double(abs(d))
            default: throw JinjaError("bad operand type for abs(): '\(value.typeName)'")
            }
        case "round":
            guard let x = value.number else { throw JinjaError("round needs a number") }
            var precision = 0
            if case .int(let p)? = argument(0, "precision") { precision = p }
            let scale = pow(10, Double(precision))
            let method = argument(1, "method")?.text ?? "common"
            let scaled = x * scale
            let rounded = method == "floor" ? scaled.rounded(.down) : method == "ceil" ? scaled.rounded(.up) : scaled.rounded(.toNearestOrAwayFromZero)
            return .double(rounded / scale)
        case "safe":
            return .markup(try checkedText(value))
        case "escape", "e", "forceescape":
            if case .markup = value, name != "forceescape" { return value }
            let escaped = htmlEscape(try checkedText(value))
            guard escaped.utf8.count <= maxStringBytes else { throw tooLong }
            return .markup(escaped)
        case "indent":
            var width = "    "
            switch argument(0, "width") {
            case .int(let w)?:
                guard w <= maxStringBytes else { throw tooLong }
                width = String(repeating: " ", count: max(0, w))  // " " * -1 is empty in Python
            case .string(let s)?: width = s
            default: break
            }
            let first = argument(1, "first")?.isTruthy ?? false
            let blank = argument(2, "blank")?.isTruthy ?? false
            let text = try checkedText(value)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            try checkProduct(width.utf8.count, lines.count, limit: maxStringBytes - text.utf8.count, tooLong)
            var out: [String] = []
            for (i, line) in lines.enumerated() {
                let pad = (i > 0 || first) && (blank || !line.isEmpty)
                out.append(pad ? width + line : String(line))
            }
            return .string(out.joined(separator: "\n"))
        case "wordcount":
            return .int(value.text.split(whereSeparator: { $0.isWhitespace }).count)
        case "sum":
            var total: JinjaValue = argument(1, "start") ?? .int(0)
            for element in try Interpreter(globals: [:]).iterate(value) {
                total = try binary("+", total, argument(0, "attribute").map { item(element, $0) } ?? element)
            }
            return total
        case "min", "max":
            let items = try Interpreter(globals: [:]).iterate(value)
            guard var best = items.first else { return .undefined }
            for element in items.dropFirst() where try binary(name == "min" ? "<" : ">", element, best).isTruthy { best = element }
            return best
        case "dictsort":
            guard case .object(let o) = value else { throw JinjaError("dictsort needs a mapping") }
            return .array(o.sorted { $0.0 < $1.0 }.map { .array([.string($0.0), $0.1]) })
        default:
            throw JinjaError("no filter named '\(name)'")
        }
    }

    // MARK: Python methods

    static func method(_ value: JinjaValue, _ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaError) -> JinjaValue {
        func argument(_ index: Int, _ key: String) -> JinjaValue? {
            kwargs.last { $0.0 == key }?.1 ?? (index < args.count ? args[index] : nil)
        }
        switch value {
        case .string(let s):
            switch name {
            case "strip", "lstrip", "rstrip":
                let chars = argument(0, "chars")
                let set: String? = if case .string(let c)? = chars { c } else { nil }
                return .string(strip(s, set, leading: name != "rstrip", trailing: name != "lstrip"))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(title(s))
            case "capitalize": return .string(capitalize(s))
            case "startswith", "endswith":
                let candidates: [JinjaValue] = if case .array(let a)? = args.first { a } else { args.first.map { [$0] } ?? [] }
                return .bool(candidates.contains { c in
                    guard case .string(let p) = c else { return false }
                    return name == "startswith" ? s.unicodeScalars.starts(with: p.unicodeScalars) : s.unicodeScalars.reversed().starts(with: p.unicodeScalars.reversed())
                })
            case "split", "rsplit":
                var limit = -1
                if case .int(let m)? = argument(1, "maxsplit") { limit = max(-1, m) }
                let separator: String? = if case .string(let sep)? = argument(0, "sep") { sep } else { nil }
                if separator == "" { throw JinjaError("empty separator") }
                return .array(split(s, separator, limit: limit, fromRight: name == "rsplit").map { .string($0) })
            case "splitlines":
                return .array(s.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).map { .string(String($0)) }.dropLastIfEmpty(s))
            case "replace":
                guard case .string(let old)? = args.first, args.count > 1, case .string(let new) = args[1] else { throw JinjaError("replace needs two strings") }
                var count: Int? = nil
                if args.count > 2, case .int(let c) = args[2], c >= 0 { count = c }
                return .string(try replace(s, old, new, count: count))
            case "find", "count", "index":
                guard case .string(let needle)? = args.first else { throw JinjaError("\(name) needs a string") }
                let hay = Array(s.utf8)
                let found = occurrences(of: Array(needle.utf8), in: hay, limit: name == "count" ? nil : 1)
                if name == "count" { return .int(needle.isEmpty ? s.unicodeScalars.count + 1 : found.count) }
                if needle.isEmpty { return .int(0) }
                if found.isEmpty, name == "index" { throw JinjaError("substring not found") }
                return .int(found.first.map { scalarIndex(hay, $0) } ?? -1)
            case "join":
                guard let items = args.first else { throw JinjaError("join needs a list") }
                return .string(try checkedJoin(try Interpreter(globals: [:]).iterate(items), separator: s))
            case "isdigit": return .bool(!s.isEmpty && s.allSatisfy(\.isNumber))
            case "isspace": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(isPythonSpace))
            case "isalpha": return .bool(!s.isEmpty && s.allSatisfy(\.isLetter))
            case "format":
                var out = s
                for a in args { if let r = out.range(of: "{}") { out.replaceSubrange(r, with: a.text) } }
                return .string(out)
            default: break
            }
        case .object(let o):
            switch name {
            case "items": return .array(o.map { .array([.string($0.0), $0.1]) })
            case "keys": return .array(o.map { .string($0.0) })
            case "values": return .array(o.map(\.1))
            case "get":
                guard case .string(let k)? = args.first else { return args.count > 1 ? args[1] : .none }
                let v = value[k]
                return v.isDefined ? v : (args.count > 1 ? args[1] : .none)
            default: break
            }
        case .undefined:
            throw JinjaError("an undefined value has no method '\(name)'")
        default: break
        }
        throw JinjaError("'\(value.typeName)' object has no method '\(name)'")
    }

    // MARK: Global functions

    static let globalFunctions: Set<String> = ["raise_exception", "range", "namespace", "dict", "strftime_now"]

    static func function(_ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], now fixed: Int? = nil) throws(JinjaError) -> JinjaValue {
        switch name {
        case "raise_exception":
            throw JinjaError(args.first?.text ?? "the template raised an exception")
        case "range":
            var bounds: [Int] = []
            for a in args {
                guard case .int(let i) = a else { throw JinjaError("range needs integers") }
                bounds.append(i)
            }
            let (start, stop, step) = switch bounds.count {
            case 1: (0, bounds[0], 1)
            case 2: (bounds[0], bounds[1], 1)
            case 3: (bounds[0], bounds[1], bounds[2])
            default: (0, 0, 1)
            }
            guard step != 0 else { throw JinjaError("range step cannot be zero") }
            // The length, computed without overflow (the bounds may be anywhere in 64 bits).
            let distance: UInt = step > 0 ? (stop > start ? UInt(bitPattern: stop &- start) : 0) : (start > stop ? UInt(bitPattern: start &- stop) : 0)
            let length = distance == 0 ? 0 : (distance - 1) / step.magnitude + 1
            guard length <= UInt(maxListCount) else { throw JinjaError("range of \(length) numbers is larger than \(maxListCount)") }
            // Every value lies between start and stop, so the wrapping arithmetic is exact.
            return .array((0..<Int(length)).map { .int(start &+ $0 &* step) })
        case "namespace":
            var pairs: [(String, JinjaValue)] = []
            if case .object(let o)? = args.first { pairs = o }
            for (k, v) in kwargs {
                if let i = pairs.firstIndex(where: { $0.0 == k }) { pairs[i].1 = v } else { pairs.append((k, v)) }
            }
            return .namespace(JinjaNamespace(pairs))
        case "dict":
            var pairs: [(String, JinjaValue)] = []
            if case .object(let o)? = args.first { pairs = o }
            for (k, v) in kwargs {
                if let i = pairs.firstIndex(where: { $0.0 == k }) { pairs[i].1 = v } else { pairs.append((k, v)) }
            }
            return .object(pairs)
        case "strftime_now":
            guard case .string(let format)? = args.first else { throw JinjaError("strftime_now needs a format string") }
            var now = fixed.map { time_t($0) } ?? time(nil)
            var parts = tm()
            localtime_r(&now, &parts)
            var buffer = [CChar](repeating: 0, count: 256)
            let n = strftime(&buffer, buffer.count, format, &parts)
            return .string(String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        default:
            throw JinjaError("'\(name)' is undefined (no such function)")
        }
    }

    // MARK: String helpers with Python's semantics

    /// Python's `str.isspace` characters (Unicode White_Space plus the ASCII separators 0x1C-0x1F).
    static func isPythonSpace(_ c: Unicode.Scalar) -> Bool {
        c.properties.isWhitespace || (0x1C...0x1F).contains(c.value)
    }

    static func strip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        let drop: (Unicode.Scalar) -> Bool = { c in set.map { $0.contains(c) } ?? isPythonSpace(c) }
        var scalars = Substring(s).unicodeScalars[...]
        if leading { while let f = scalars.first, drop(f) { scalars.removeFirst() } }
        if trailing { while let l = scalars.last, drop(l) { scalars.removeLast() } }
        return String(String.UnicodeScalarView(scalars))
    }

    /// Where `pin` occurs in `hay`, left to right without overlaps (at most `limit` places):
    /// Knuth-Morris-Pratt, linear in both, so no text can make a search quadratic. On UTF-8
    /// bytes, a valid needle matches only at character boundaries of a valid text.
    static func occurrences(of pin: [UInt8], in hay: [UInt8], limit: Int? = nil) -> [Int] {
        guard !pin.isEmpty, pin.count <= hay.count else { return [] }
        var border = [Int](repeating: 0, count: pin.count)
        var k = 0
        for i in 1..<max(pin.count, 1) {
            while k > 0, pin[i] != pin[k] { k = border[k - 1] }
            if pin[i] == pin[k] { k += 1 }
            border[i] = k
        }
        var found: [Int] = []
        k = 0
        for i in hay.indices {
            while k > 0, hay[i] != pin[k] { k = border[k - 1] }
            if hay[i] == pin[k] { k += 1 }
            if k == pin.count {
                found.append(i + 1 - pin.count)
                if let limit, found.count >= limit { break }
                k = 0  // no overlaps, as Python's count and replace
            }
        }
        return found
    }

    /// The code point index of a UTF-8 byte offset (Python's str indices count code points).
    static func scalarIndex(_ bytes: [UInt8], _ offset: Int) -> Int {
        var n = 0
        for b in bytes[..<offset] where b & 0xC0 != 0x80 { n += 1 }
        return n
    }

    static func replace(_ s: String, _ old: String, _ new: String, count: Int?) throws(JinjaError) -> String {
        let hay = Array(s.utf8), pin = Array(old.utf8), insert = Array(new.utf8)
        var out: [UInt8] = []
        if pin.isEmpty {
            // Python puts `new` before every character and at the end.
            let characters = s.unicodeScalars.count
            let places = min(count ?? Int.max, characters + 1)
            try checkProduct(insert.count, places, limit: maxStringBytes - hay.count, tooLong)
            out.reserveCapacity(hay.count + insert.count * places)
            var done = 0
            for b in hay {
                if b & 0xC0 != 0x80, done < places {
                    out += insert
                    done += 1
                }
                out.append(b)
            }
            if done < places { out += insert }
            return String(decoding: out, as: UTF8.self)
        }
        var found = occurrences(of: pin, in: hay)
        if let count, found.count > count { found.removeSubrange(count...) }
        if insert.count > pin.count {
            try checkProduct(insert.count - pin.count, found.count, limit: maxStringBytes - hay.count, tooLong)
        }
        out.reserveCapacity(hay.count + found.count * max(0, insert.count - pin.count))
        var i = 0
        for start in found {
            out += hay[i..<start]
            out += insert
            i = start + pin.count
        }
        out += hay[i...]
        return String(decoding: out, as: UTF8.self)
    }

    static func split(_ s: String, _ separator: String?, limit: Int, fromRight: Bool) -> [String] {
        guard let separator else {
            // Runs of whitespace separate; leading and trailing whitespace is ignored.
            var words = s.unicodeScalars.split(whereSeparator: isPythonSpace).map { String(String.UnicodeScalarView($0)) }
            if limit >= 0, limit < words.count - 1 {
                // Keep the remainder as Python does (approximately: rejoined by single spaces is wrong),
                // so cut the original text after `limit` words instead.
                var rest = Substring(s).unicodeScalars[...]
                var head: [String] = []
                for _ in 0..<limit {
                    while let f = rest.first, isPythonSpace(f) { rest.removeFirst() }
                    var word = String.UnicodeScalarView()
                    while let f = rest.first, !isPythonSpace(f) { word.append(f); rest.removeFirst() }
                    head.append(String(word))
                }
                while let f = rest.first, isPythonSpace(f) { rest.removeFirst() }
                words = head + [String(String.UnicodeScalarView(rest))]
            }
            return words
        }
        var parts = s.components(separatedBy: separator)
        if limit >= 0, limit < parts.count - 1 {
            if fromRight {
                let keep = parts.suffix(limit)
                parts = [parts.dropLast(limit).joined(separator: separator)] + keep
            } else {
                parts = Array(parts.prefix(limit)) + [parts.dropFirst(limit).joined(separator: separator)]
            }
        }
        return parts
    }

    static func capitalize(_ s: String) -> String {
        guard let first = s.first else { return s }
        return first.uppercased() + s.dropFirst().lowercased()
    }

    static func title(_ s: String) -> String {
        var out = ""
        var previousIsLetter = false
        for c in s {
            out += previousIsLetter ? c.lowercased() : c.uppercased()
            previousIsLetter = c.isLetter
        }
        return out
    }

    static func htmlEscape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}

extension JinjaValue {
    var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
}

extension String {
    var trimmingSpaces: String { Builtins.strip(self, nil, leading: true, trailing: true) }

    /// Splits on every occurrence of `separator` (no Foundation needed).
    func components(separatedBy separator: String) -> [String] {
        let hay = Array(utf8), pin = Array(separator.utf8)
        var parts: [String] = []
        var i = 0
        for start in Builtins.occurrences(of: pin, in: hay) {
            parts.append(String(decoding: hay[i..<start], as: UTF8.self))
            i = start + pin.count
        }
        parts.append(String(decoding: hay[i...], as: UTF8.self))
        return parts
    }

    func range(of needle: String) -> Range<String.Index>? {
        guard !needle.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(needle) { return index..<self.index(index, offsetBy: needle.count) }
            index = self.index(after: index)
        }
        return nil
    }
}

extension Array where Element == JinjaValue {
    /// Python's `splitlines` drops the empty piece after a final line break.
    func dropLastIfEmpty(_ source: String) -> [JinjaValue] {
        if let last = self.last, last == .string(""), source.last?.isNewline == true { return Array(dropLast()) }
        return self
    }
}

extension JinjaValue {
    /// The value as compact JSON text (Python's `json.dumps(..., ensure_ascii=False)`); undefined
    /// values and functions, which JSON cannot hold, are written as null.
    public var jsonText: String {
        (try? JSON.encode(self, indent: nil, sortKeys: false, separators: nil)) ?? "null"
    }
}

/// `tojson` as Hugging Face defines it: Python's `json.dumps` with `ensure_ascii=False`.
enum JSON {
    static func encode(_ value: JinjaValue, indent: Int?, sortKeys: Bool, separators: (String, String)?) throws(JinjaError) -> String {
        let (itemSeparator, keySeparator) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        guard !Builtins.textMayExceed(value, Builtins.maxStringBytes) else { throw Builtins.tooLong }
        var out = ""
        func write(_ v: JinjaValue, level: Int) throws(JinjaError) {
            guard level <= Interpreter.maxValueDepth else { throw JinjaError("a value nests too deeply to write as JSON") }
            guard out.utf8.count <= Builtins.maxStringBytes else { throw Builtins.tooLong }
            switch v {
            case .none: out += "null"
            case .bool(let b): out += b ? "true" : "false"
            case .int(let i): out += String(i)
            case .double(let d):
                out += d.isNaN ? "NaN" : d.isInfinite ? (d > 0 ? "Infinity" : "-Infinity") : JinjaValue.pythonFloat(d)
            case .string(let s), .markup(let s): out += quoted(s)
            case .array(let a):
                guard !a.isEmpty else { out += "[]"; return }
                out += "["
                for (i, element) in a.enumerated() {
                    if i > 0 { out += itemSeparator }
                    try newline(level + 1)
                    try write(element, level: level + 1)
                }
                try newline(level)
                out += "]"
            case .object(let pairs):
                guard !pairs.isEmpty else { out += "{}"; return }
                out += "{"
                let ordered = sortKeys ? pairs.sorted { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) } : pairs
                for (i, (key, element)) in ordered.enumerated() {
                    if i > 0 { out += itemSeparator }
                    try newline(level + 1)
                    out += quoted(key) + keySeparator
                    try write(element, level: level + 1)
                }
                try newline(level)
                out += "}"
            case .namespace: throw JinjaError("Object of type Namespace is not JSON serializable")
            case .generator: throw JinjaError("Object of type generator is not JSON serializable")
            case .undefined: throw JinjaError("an undefined value cannot be written as JSON")
            case .macro, .function: throw JinjaError("a function cannot be written as JSON")
            }
        }
        func newline(_ level: Int) throws(JinjaError) {
            guard let indent else { return }
            let (width, overflow) = indent.multipliedReportingOverflow(by: level)
            guard !overflow, width <= Builtins.maxStringBytes - out.utf8.count else { throw Builtins.tooLong }
            out += "\n" + String(repeating: " ", count: width)
        }
        try write(value, level: 0)
        return out
    }

    static func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 {
                    let hex = String(c.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        return out + "\""
    }
}

extension JinjaValue {
    /// Parses JSON text, keeping the order of object keys (templates can iterate them).
    public init(json text: String) throws(JinjaError) {
        var parser = JSONParser(bytes: Array(text.utf8))
        parser.skipSpace()
        self = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.i == parser.bytes.count else { throw JinjaError("unexpected text after the JSON value at byte \(parser.i)") }
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var i = 0

    mutating func skipSpace() {
        while i < bytes.count, [32, 9, 10, 13].contains(bytes[i]) { i += 1 }
    }

    mutating func value(depth: Int) throws(JinjaError) -> JinjaValue {
        guard depth < 512 else { throw JinjaError("JSON nests too deeply") }
        guard i < bytes.count else { throw JinjaError("JSON ends where a value was expected") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var pairs: [(String, JinjaValue)] = []
            // Where each key stands, so a repeated key (the last one wins) is found in constant
            // time: an object with 200k keys parses in linear time.
            var positions: [String: Int] = [:]
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(pairs) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw JinjaError("expected a string key in JSON at byte \(i)") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                let v = try value(depth: depth + 1)
                if let k = positions[key] {
                    pairs[k].1 = v
                } else {
                    positions[key] = pairs.count
                    pairs.append((key, v))
                }
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect("}")
                return .object(pairs)
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JinjaValue] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect("]")
                return .array(items)
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .none
        // Python's json module writes and reads these (tojson of an infinite float), so do we.
        case UInt8(ascii: "N"): try literal("NaN"); return .double(.nan)
        case UInt8(ascii: "I"): try literal("Infinity"); return .double(.infinity)
        case UInt8(ascii: "-") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "I"):
            i += 1
            try literal("Infinity")
            return .double(-.infinity)
        default: return try number()
        }
    }

    mutating func expect(_ c: Character) throws(JinjaError) {
        guard i < bytes.count, bytes[i] == c.asciiValue! else { throw JinjaError("expected '\(c)' in JSON at byte \(i)") }
        i += 1
    }

    mutating func literal(_ word: String) throws(JinjaError) {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else { throw JinjaError("invalid JSON literal at byte \(i)") }
        i += w.count
    }

    mutating func number() throws(JinjaError) -> JinjaValue {
        let start = i
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        var isFloat = false
        while i < bytes.count {
            let b = bytes[i]
            if b >= 48 && b <= 57 { i += 1 }
            else if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") || ((b == UInt8(ascii: "+") || b == UInt8(ascii: "-")) && isFloat) {
                isFloat = true
                i += 1
            } else { break }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        guard !text.isEmpty, text != "-" else { throw JinjaError("invalid JSON at byte \(start)") }
        if !isFloat, let n = Int(text) { return .int(n) }
        guard let d = Double(text) else { throw JinjaError("invalid JSON number '\(text)'") }
        return .double(d)
    }

    mutating func string() throws(JinjaError) -> String {
        i += 1
        var out: [UInt8] = []
        while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
            if bytes[i] == UInt8(ascii: "\\") {
                i += 1
                guard i < bytes.count else { break }
                switch bytes[i] {
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "u"):
                    guard var code = hex4(at: i + 1) else { throw JinjaError("invalid \\u escape in JSON at byte \(i)") }
                    i += 4
                    if (0xD800..<0xDC00).contains(code), i + 6 < bytes.count, bytes[i + 1] == UInt8(ascii: "\\"), bytes[i + 2] == UInt8(ascii: "u"),
                       let low = hex4(at: i + 3), (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                    out += Array(String(UnicodeScalar(code).map(Character.init) ?? "\u{FFFD}").utf8)
                default: out.append(bytes[i])
                }
                i += 1
            } else {
                guard bytes[i] >= 0x20 else { throw JinjaError("a control character inside a JSON string at byte \(i)") }
                out.append(bytes[i])
                i += 1
            }
        }
        guard i < bytes.count else { throw JinjaError("a JSON string is never closed") }
        i += 1
        return String(decoding: out, as: UTF8.self)
    }

    func hex4(at j: Int) -> UInt32? {
        guard j + 4 <= bytes.count else { return nil }
        return UInt32(String(decoding: bytes[j..<j + 4], as: UTF8.self), radix: 16)
    }
}

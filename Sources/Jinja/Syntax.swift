/// The parsed form of a template: nodes for text and tags, expressions inside them.
indirect enum Expression: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([Expression])
    case dict([(Expression, Expression)])
    case attribute(Expression, String)
    case `subscript`(Expression, Expression)
    case slice(Expression, start: Expression?, stop: Expression?, step: Expression?)
    case call(Expression, [Expression], [(String, Expression)])
    case filter(Expression, String, [Expression], [(String, Expression)])
    case test(Expression, String, [Expression], negated: Bool)
    case unary(String, Expression)
    case binary(String, Expression, Expression)
    case conditional(Expression, condition: Expression, otherwise: Expression?)
}

enum SetTarget: Sendable {
    case names([String])
    case attribute(String, String)
}

indirect enum Node: Sendable {
    case text(String)
    case output(Expression)
    case conditional([(Expression, [Node])], otherwise: [Node])
    case loop(targets: [String], iterable: Expression, filter: Expression?, body: [Node], otherwise: [Node])
    case set(SetTarget, Expression)
    case setBlock(String, [Node])
    /// `{% filter name(args) %}...{% endfilter %}`: the body's text through a filter.
    case filterBlock(String, [Expression], [Node])
    case macro(Macro)
    case breakLoop
    case continueLoop
}

/// Recursive descent over the lexer's segments, with Jinja's operator precedence:
/// conditional < or < and < not < comparisons < + - < ~ < * / // % < ** < unary, with filters
/// and tests binding to the operand before them.
///
/// Templates come with downloaded model files, so nesting is bounded: blocks inside blocks,
/// brackets, operator chains (`a + b + ...` builds a tree as deep as it is long) and prefix
/// operators all count towards `maxDepth`, and the parser fails cleanly past it instead of
/// overflowing its stack (or the interpreter's).
struct Parser {
    static let maxDepth = 200

    private let segments: [Segment]
    private var index = 0
    private var tokens: [Token] = []
    private var position = 0
    private var depth = 0

    init(_ segments: [Segment]) { self.segments = segments }

    static func parse(_ source: String) throws(JinjaError) -> [Node] {
        var parser = Parser(try Lexer.segments(source))
        let (nodes, end) = try parser.nodes(until: [])
        if let end { throw JinjaError("unexpected {% \(end) %}") }
        return nodes
    }

    /// One level deeper: a nested block, bracket, prefix operator or link of an operator chain.
    /// Callers save `depth` and restore it when they return.
    private mutating func deeper() throws(JinjaError) {
        depth += 1
        guard depth <= Self.maxDepth else { throw JinjaError("the template nests more than \(Self.maxDepth) levels deep (blocks, brackets and operator chains)") }
    }

    // MARK: Statements

    /// Nodes up to one of the `terminators` (a statement keyword such as `endif`), which is
    /// returned with the statement's tokens left for the caller to read.
    private mutating func nodes(until terminators: Set<String>) throws(JinjaError) -> ([Node], String?) {
        let saved = depth
        defer { depth = saved }
        if !terminators.isEmpty { try deeper() }
        var nodes: [Node] = []
        while index < segments.count {
            let segment = segments[index]
            index += 1
            switch segment {
            case .text(let s):
                nodes.append(.text(s))
            case .output(let t):
                begin(t)
                nodes.append(.output(try expression()))
                try end()
            case .statement(let t):
                begin(t)
                guard case .name(let keyword)? = next() else { throw JinjaError("a {% %} tag must start with a keyword") }
                if terminators.contains(keyword) { return (nodes, keyword) }
                nodes.append(contentsOf: try statement(keyword))
            }
        }
        if !terminators.isEmpty {
            throw JinjaError("the template ends inside a block (expected {% \(terminators.sorted().joined(separator: " or ")) %})")
        }
        return (nodes, nil)
    }

    private mutating func statement(_ keyword: String) throws(JinjaError) -> [Node] {
        switch keyword {
        case "if":
            var branches: [(Expression, [Node])] = []
            var condition = try expression()
            try end()
            while true {
                let (body, terminator) = try nodes(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                switch terminator {
                case "elif":
                    condition = try expression()
                    try end()
                case "else":
                    try end()
                    let (otherwise, _) = try nodes(until: ["endif"])
                    try end()
                    return [.conditional(branches, otherwise: otherwise)]
                default:
                    try end()
                    return [.conditional(branches, otherwise: [])]
                }
            }
        case "for":
            var targets = [try name()]
            while accept(.op(",")) { targets.append(try name()) }
            try expect(.name("in"))
            let iterable = try expression(allowConditional: false)
            let filter = accept(.name("if")) ? try expression(allowConditional: false) : nil
            _ = accept(.name("recursive"))
            try end()
            let (body, terminator) = try nodes(until: ["else", "endfor"])
            var otherwise: [Node] = []
            try end()
            if terminator == "else" {
                (otherwise, _) = try nodes(until: ["endfor"])
                try end()
            }
            return [.loop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)]
        case "set":
            let first = try name()
            if accept(.op(".")) {
                let attribute = try name()
                try expect(.op("="))
                let value = try expression()
                try end()
                return [.set(.attribute(first, attribute), value)]
            }
            var names = [first]
            while accept(.op(",")) { names.append(try name()) }
            if accept(.op("=")) {
                let value = try tupleOrExpression()
                try end()
                return [.set(.names(names), value)]
            }
            try end()
            let (body, _) = try nodes(until: ["endset"])
            try end()
            return [.setBlock(first, body)]
        case "macro":
            let macroName = try name()
            try expect(.op("("))
            var parameters: [(String, Expression?)] = []
            while !accept(.op(")")) {
                let parameter = try name()
                parameters.append((parameter, accept(.op("=")) ? try expression() : nil))
                if !accept(.op(",")) {
                    try expect(.op(")"))
                    break
                }
            }
            try end()
            let (body, _) = try nodes(until: ["endmacro"])
            try end()
            return [.macro(Macro(name: macroName, parameters: parameters, body: body))]
        case "filter":
            let filterName = try name()
            let arguments = accept(.op("(")) ? try callArguments().0 : []
            try end()
            let (body, _) = try nodes(until: ["endfilter"])
            try end()
            return [.filterBlock(filterName, arguments, body)]
        case "break":
            try end()
            return [.breakLoop]
        case "continue":
            try end()
            return [.continueLoop]
        case "generation":
            // Hugging Face's marker around assistant text (for training masks): renders its body.
            try end()
            let (body, _) = try nodes(until: ["endgeneration"])
            try end()
            return body
        default:
            throw JinjaError("unknown or misplaced tag {% \(keyword) %}")
        }
    }

    // MARK: Expressions

    private mutating func begin(_ t: [Token]) {
        tokens = t
        position = 0
    }

    private mutating func end() throws(JinjaError) {
        if position < tokens.count { throw JinjaError("unexpected \(describe(tokens[position])) in a tag") }
    }

    private func peek(_ offset: Int = 0) -> Token? { position + offset < tokens.count ? tokens[position + offset] : nil }

    private mutating func next() -> Token? {
        defer { position += 1 }
        return peek()
    }

    private mutating func accept(_ token: Token) -> Bool {
        guard peek() == token else { return false }
        position += 1
        return true
    }

    private mutating func expect(_ token: Token) throws(JinjaError) {
        guard accept(token) else {
            throw JinjaError("expected \(describe(token)) but found \(peek().map(describe) ?? "the end of the tag")")
        }
    }

    private mutating func name() throws(JinjaError) -> String {
        guard case .name(let n)? = next() else { throw JinjaError("expected a name in a tag") }
        return n
    }

    private func describe(_ token: Token) -> String {
        switch token {
        case .name(let n): return "'\(n)'"
        case .string(let s): return "the string '\(s)'"
        case .int(let i): return "\(i)"
        case .double(let d): return "\(d)"
        case .op(let o): return "'\(o)'"
        }
    }

    /// `a, b` without brackets is a tuple (a list here), as in `{% set x = 1, 2 %}`.
    private mutating func tupleOrExpression() throws(JinjaError) -> Expression {
        let first = try expression()
        guard peek() == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) { items.append(try expression()) }
        return .list(items)
    }

    mutating func expression(allowConditional: Bool = true) throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        try deeper()
        let value = try or()
        guard allowConditional, accept(.name("if")) else { return value }
        let condition = try or()
        let otherwise = accept(.name("else")) ? try expression() : nil
        return .conditional(value, condition: condition, otherwise: otherwise)
    }

    private mutating func or() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var left = try and()
        while accept(.name("or")) {
            try deeper()
            left = .binary("or", left, try and())
        }
        return left
    }

    private mutating func and() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var left = try not()
        while accept(.name("and")) {
            try deeper()
            left = .binary("and", left, try not())
        }
        return left
    }

    private mutating func not() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        try deeper()
        if accept(.name("not")) { return .unary("not", try not()) }
        return try comparison()
    }

    /// Comparisons chain as in Python: `a < b < c` is `a < b and b < c`.
    private mutating func comparison() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var operand = try sum()
        var links: [Expression] = []
        while true {
            let op: String
            if case .op(let o)? = peek(), ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                position += 1
                op = o
            } else if accept(.name("in")) {
                op = "in"
            } else if peek() == .name("not"), peek(1) == .name("in") {
                position += 2
                op = "not in"
            } else {
                break
            }
            try deeper()
            let right = try sum()
            links.append(.binary(op, operand, right))
            operand = right
        }
        guard var chain = links.first else { return operand }
        for link in links.dropFirst() { chain = .binary("and", chain, link) }
        return chain
    }

    private mutating func sum() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var left = try concatenation()
        while case .op(let o)? = peek(), o == "+" || o == "-" {
            position += 1
            try deeper()
            left = .binary(o, left, try concatenation())
        }
        return left
    }

    private mutating func concatenation() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var left = try product()
        while accept(.op("~")) {
            try deeper()
            left = .binary("~", left, try product())
        }
        return left
    }

    private mutating func product() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var left = try power()
        while case .op(let o)? = peek(), ["*", "/", "//", "%"].contains(o) {
            position += 1
            try deeper()
            left = .binary(o, left, try power())
        }
        return left
    }

    private mutating func power() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var left = try unary()
        while accept(.op("**")) {
            try deeper()
            left = .binary("**", left, try unary())
        }
        return left
    }

    private mutating func unary() throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        try deeper()
        if accept(.op("-")) { return try filtersAndTests(.unary("-", try unary(filtered: false))) }
        if accept(.op("+")) { return try filtersAndTests(try unary(filtered: false)) }
        return try unary(filtered: true)
    }

    private mutating func unary(filtered: Bool) throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        try deeper()
        if accept(.op("-")) { return .unary("-", try unary(filtered: false)) }
        let value = try postfix(try primary())
        return filtered ? try filtersAndTests(value) : value
    }

    private mutating func primary() throws(JinjaError) -> Expression {
        guard let token = next() else { throw JinjaError("a tag ends where a value was expected") }
        switch token {
        case .string(var s):
            while case .string(let more)? = peek() {  // adjacent literals join, as in Python
                s += more
                position += 1
            }
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .double(let d): return .literal(.double(d))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            if accept(.op(")")) { return .list([]) }
            let inner = try expression()
            if accept(.op(",")) {
                var items = [inner]
                while !accept(.op(")")) {
                    items.append(try expression())
                    if !accept(.op(",")) { try expect(.op(")")); break }
                }
                return .list(items)
            }
            try expect(.op(")"))
            return inner
        case .op("["):
            var items: [Expression] = []
            while !accept(.op("]")) {
                items.append(try expression())
                if !accept(.op(",")) { try expect(.op("]")); break }
            }
            return .list(items)
        case .op("{"):
            var pairs: [(Expression, Expression)] = []
            while !accept(.op("}")) {
                let key = try expression()
                try expect(.op(":"))
                pairs.append((key, try expression()))
                if !accept(.op(",")) { try expect(.op("}")); break }
            }
            return .dict(pairs)
        default:
            throw JinjaError("unexpected \(describe(token)) where a value was expected")
        }
    }

    private mutating func postfix(_ base: Expression) throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var value = base
        while true {
            try deeper()
            if accept(.op(".")) {
                guard let token = next() else { throw JinjaError("a name must follow '.'") }
                switch token {
                case .name(let n): value = .attribute(value, n)
                case .int(let i): value = .subscript(value, .literal(.int(i)))
                default: throw JinjaError("a name must follow '.'")
                }
            } else if accept(.op("[")) {
                value = try subscriptOrSlice(value)
            } else if peek() == .op("(") {
                position += 1
                let (arguments, keywords) = try callArguments()
                value = .call(value, arguments, keywords)
            } else {
                return value
            }
        }
    }

    private mutating func subscriptOrSlice(_ value: Expression) throws(JinjaError) -> Expression {
        var parts: [Expression?] = [nil]
        var colons = 0
        while !accept(.op("]")) {
            if accept(.op(":")) {
                colons += 1
                parts.append(nil)
                continue
            }
            guard parts[parts.count - 1] == nil else { throw JinjaError("expected ':' or ']' in a subscript") }
            parts[parts.count - 1] = try expression()
        }
        if colons == 0 {
            guard let key = parts[0] else { throw JinjaError("an empty subscript []") }
            return .subscript(value, key)
        }
        guard colons <= 2 else { throw JinjaError("a slice takes at most two ':'") }
        return .slice(value, start: parts[0], stop: parts.count > 1 ? parts[1] : nil, step: parts.count > 2 ? parts[2] : nil)
    }

    /// After `(`: positional and `name=value` arguments up to `)`.
    private mutating func callArguments() throws(JinjaError) -> ([Expression], [(String, Expression)]) {
        var arguments: [Expression] = []
        var keywords: [(String, Expression)] = []
        while !accept(.op(")")) {
            if case .name(let n)? = peek(), peek(1) == .op("=") {
                position += 2
                keywords.append((n, try expression()))
            } else {
                arguments.append(try expression())
            }
            if !accept(.op(",")) { try expect(.op(")")); break }
        }
        return (arguments, keywords)
    }

    private mutating func filtersAndTests(_ base: Expression) throws(JinjaError) -> Expression {
        let saved = depth
        defer { depth = saved }
        var value = base
        while true {
            try deeper()
            if accept(.op("|")) {
                let filter = try name()
                var (arguments, keywords): ([Expression], [(String, Expression)]) = ([], [])
                if accept(.op("(")) { (arguments, keywords) = try callArguments() }
                value = .filter(value, filter, arguments, keywords)
            } else if accept(.name("is")) {
                let negated = accept(.name("not"))
                var test = try name()
                if test == "none" || test == "true" || test == "false" { test = test.lowercased() }
                var arguments: [Expression] = []
                if accept(.op("(")) {
                    arguments = try callArguments().0
                } else if let token = peek(), Self.startsTestArgument(token) {
                    // `x is divisibleby 3`, `x is equalto 'a'`: one argument without brackets.
                    arguments = [try postfix(try primary())]
                }
                value = .test(value, test, arguments, negated: negated)
            } else {
                return value
            }
        }
    }

    private static func startsTestArgument(_ token: Token) -> Bool {
        switch token {
        case .string, .int, .double: return true
        case .name(let n): return !["and", "or", "else", "if", "in", "not", "is"].contains(n)
        case .op(let o): return o == "[" || o == "{"
        }
    }
}

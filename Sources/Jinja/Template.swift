/// A Jinja template parsed once and rendered many times: the subset of Jinja that chat templates
/// in GGUF and Hugging Face files use, rendered as Hugging Face's `apply_chat_template` renders
/// it (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `tojson` with
/// `ensure_ascii=False`).
public struct Template: Sendable {
    let nodes: [Node]

    /// What one rendering may spend. Templates come with downloaded model files, so a template
    /// that loops forever, fans out macro calls or prints without end stops with an error.
    /// The defaults are far above what real chat templates use.
    public struct Limits: Sendable {
        /// Loop iterations, macro calls, expression steps and items processed by filters.
        public var maxSteps = 5_000_000
        /// Bytes of rendered text.
        public var maxOutputBytes = Builtins.maxStringBytes
        /// Wall time of one rendering.
        public var timeLimit: Duration? = .seconds(10)
        /// Checked now and then; true stops the rendering (a client went away).
        public var isCancelled: (@Sendable () -> Bool)? = nil

        public init() {}
    }

    public init(_ source: String) throws(JinjaError) {
        nodes = try Parser.parse(source)
    }

    /// Renders with `variables` as the template's globals (e.g. `messages`, `bos_token`,
    /// `add_generation_prompt`). Errors carry the template's own message for `raise_exception`.
    /// `now` (seconds since 1970) fixes the clock `strftime_now` reads; nil reads the real one.
    public func render(_ variables: [String: JinjaValue], now: Int? = nil, limits: Limits = Limits()) throws(JinjaError) -> String {
        var interpreter = Interpreter(globals: variables)
        interpreter.now = now
        interpreter.limits = limits
        interpreter.deadline = limits.timeLimit.map { ContinuousClock.now + $0 }
        defer { interpreter.releaseNamespaces() }
        var out = ""
        _ = try interpreter.render(nodes, into: &out)
        return out
    }
}

/// Walks the nodes with a stack of scopes: a `for` body gets its own scope (its `set`s do not
/// leak out, as in Jinja), `if` does not; namespaces are values changed in the scope that holds them.
struct Interpreter {
    /// Lists and mappings nest at most this deep once stored in a variable.
    static let maxValueDepth = 256
    /// Evaluation nesting (expressions, blocks, macro bodies) at most this deep.
    static let maxNesting = 2_000
    static let maxCallDepth = 64

    var scopes: [[String: JinjaValue]]
    var depth = 0
    var now: Int? = nil
    var limits = Template.Limits()
    var deadline: ContinuousClock.Instant? = nil
    private var steps = 0
    private var nesting = 0

    /// Every namespace this render made (see releaseNamespaces).
    private var namespaces: [JinjaNamespace] = []

    init(globals: [String: JinjaValue]) { scopes = [globals] }

    /// Empties every namespace the render made while all are still held here, so that a long
    /// chain of them (`{% set n.next = m %}` in a loop) is freed one at a time, not by recursion.
    mutating func releaseNamespaces() {
        for ns in namespaces { ns.pairs = [] }
        namespaces = []
    }

    enum Flow { case normal, breakLoop, continueLoop }

    /// Counts `cost` steps; checks the clock and the cancellation every 4096.
    mutating func charge(_ cost: Int = 1) throws(JinjaError) {
        let before = steps
        steps &+= cost
        guard steps <= limits.maxSteps else {
            throw JinjaError("the template took more than \(limits.maxSteps) steps (an endless or exploding loop or macro?)")
        }
        guard before >> 12 != steps >> 12 else { return }
        if let deadline, ContinuousClock.now > deadline {
            throw JinjaError("the template took longer than \(limits.timeLimit.map { "\($0)" } ?? "allowed") to render")
        }
        if limits.isCancelled?() == true { throw JinjaError("the rendering was cancelled") }
    }

    /// Filters whose cost does not grow with their input (templates call `messages | length` in loops).
    static let constantTimeFilters: Set<String> = ["length", "count", "first", "last", "default", "d", "safe", "abs", "int", "float", "round"]

    /// Roughly what an operation on `value` costs, in steps.
    static func cost(_ value: JinjaValue) -> Int {
        switch value {
        case .array(let a), .generator(let a): return a.count
        case .object(let o): return o.count
        case .namespace(let ns): return ns.pairs.count
        case .string(let s): return s.utf8.count >> 4
        default: return 0
        }
    }

    /// Refuses to store a value nested deeper than `maxValueDepth` (deeper values would overflow
    /// the stack when printed, compared or freed). The walk is charged as steps.
    mutating func checkDepth(_ value: JinjaValue) throws(JinjaError) {
        switch value {
        case .array, .generator, .object, .namespace: break
        default: return
        }
        var work: [(JinjaValue, Int)] = [(value, 0)]
        var visited = 0
        while let (v, level) = work.popLast() {
            visited += 1
            guard level <= Self.maxValueDepth else { throw JinjaError("a list or mapping nests more than \(Self.maxValueDepth) levels deep") }
            switch v {
            case .array(let a), .generator(let a): for item in a { if item.isContainer { work.append((item, level + 1)) } }
            case .object, .namespace: for (_, item) in v.mapping! where item.isContainer { work.append((item, level + 1)) }
            default: break
            }
        }
        try charge(visited)
    }

    mutating func render(_ nodes: [Node], into out: inout String) throws(JinjaError) -> Flow {
        nesting += 1
        defer { nesting -= 1 }
        guard nesting <= Self.maxNesting else { throw JinjaError("the template nests too deeply while rendering (recursive macros?)") }
        for node in nodes {
            try charge()
            if out.utf8.count > limits.maxOutputBytes {
                throw JinjaError("the template's output is longer than \(limits.maxOutputBytes >> 20) MiB")
            }
            switch node {
            case .text(let s):
                out += s
            case .output(let e):
                out += try Builtins.checkedText(try evaluate(e))
            case .conditional(let branches, let otherwise):
                var taken = false
                for (condition, body) in branches {
                    guard try evaluate(condition).isTruthy else { continue }
                    taken = true
                    let flow = try render(body, into: &out)
                    if flow != .normal { return flow }
                    break
                }
                if !taken {
                    let flow = try render(otherwise, into: &out)
                    if flow != .normal { return flow }
                }
            case .loop(let targets, let iterable, let filter, let body, let otherwise):
                try loop(targets: targets, over: try evaluate(iterable), filter: filter, body: body, otherwise: otherwise, into: &out)
            case .set(.names(let names), let e):
                let value = try evaluate(e)
                try checkDepth(value)
                if names.count == 1 {
                    scopes[scopes.count - 1][names[0]] = value
                } else {
                    let items = try iterate(value)
                    guard items.count == names.count else { throw JinjaError("cannot unpack \(items.count) values into \(names.count) names") }
                    for (name, item) in zip(names, items) { scopes[scopes.count - 1][name] = item }
                }
            case .set(.attribute(let object, let attribute), let e):
                let value = try evaluate(e)
                try checkDepth(value)
                guard let level = scopes.lastIndex(where: { $0[object] != nil }), case .namespace(let ns)? = scopes[level][object] else {
                    throw JinjaError("cannot set an attribute of '\(object)': only a namespace() takes attributes")
                }
                guard !ns.isReachable(from: value) else { throw JinjaError("cannot store namespace '\(object)' inside itself") }
                if let i = ns.pairs.firstIndex(where: { $0.0 == attribute }) { ns.pairs[i].1 = value } else { ns.pairs.append((attribute, value)) }
                try checkDepth(.namespace(ns))
            case .setBlock(let name, let body):
                var captured = ""
                _ = try render(body, into: &captured)
                scopes[scopes.count - 1][name] = .string(captured)
            case .filterBlock(let name, let arguments, let body):
                var captured = ""
                _ = try render(body, into: &captured)
                var args: [JinjaValue] = []
                for a in arguments { args.append(try operand(a)) }
                out += try Builtins.checkedText(try Builtins.filter(name, .string(captured), args, []))
            case .macro(let m):
                scopes[scopes.count - 1][m.name] = .macro(m)
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        if out.utf8.count > limits.maxOutputBytes {
            throw JinjaError("the template's output is longer than \(limits.maxOutputBytes >> 20) MiB")
        }
        return .normal
    }

    private mutating func loop(targets: [String], over sequence: JinjaValue, filter: Expression?, body: [Node], otherwise: [Node],
                               into out: inout String) throws(JinjaError) {
        var items = try iterate(sequence)
        scopes.append([:])
        defer { scopes.removeLast() }
        func bind(_ item: JinjaValue) throws(JinjaError) {
            if targets.count == 1 {
                scopes[scopes.count - 1][targets[0]] = item
            } else {
                let parts = try iterate(item)
                guard parts.count == targets.count else { throw JinjaError("cannot unpack \(parts.count) values into \(targets.count) loop names") }
                for (name, part) in zip(targets, parts) { scopes[scopes.count - 1][name] = part }
            }
        }
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                try charge()
                try bind(item)
                if try evaluate(filter).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            scopes[scopes.count - 1] = [:]
            _ = try render(otherwise, into: &out)
            return
        }
        for (i, item) in items.enumerated() {
            try charge()
            scopes[scopes.count - 1] = [:]
            try bind(item)
            scopes[scopes.count - 1]["loop"] = .object([
                ("index", .int(i + 1)), ("index0", .int(i)), ("revindex", .int(items.count - i)), ("revindex0", .int(items.count - i - 1)),
                ("first", .bool(i == 0)), ("last", .bool(i == items.count - 1)), ("length", .int(items.count)),
                ("previtem", i > 0 ? items[i - 1] : .undefined), ("nextitem", i + 1 < items.count ? items[i + 1] : .undefined),
            ])
            if try render(body, into: &out) == .breakLoop { break }
        }
    }

    func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() {
            if let value = scope[name] { return value }
        }
        return Builtins.globalFunctions.contains(name) ? .function(name) : .undefined
    }

    /// The items a `for` walks: a list's elements, a mapping's keys, a string's characters.
    func iterate(_ value: JinjaValue) throws(JinjaError) -> [JinjaValue] {
        switch value.plain {
        case .array(let a), .generator(let a): return a
        case .object(let o): return o.map { .string($0.0) }
        case .string(let s):
            guard s.utf8.count <= Builtins.maxListCount else { throw Builtins.tooMany }
            return s.map { .string(String($0)) }
        case .undefined: return []
        default: throw JinjaError("'\(value.typeName)' object is not iterable")
        }
    }

    /// An expression's value as an operation reads it: a safe string as the plain string.
    private mutating func operand(_ expression: Expression) throws(JinjaError) -> JinjaValue {
        try evaluate(expression).plain
    }

    static let markupFilters: Set<String> = ["safe", "escape", "e", "forceescape"]

    mutating func evaluate(_ expression: Expression) throws(JinjaError) -> JinjaValue {
        try charge()
        nesting += 1
        defer { nesting -= 1 }
        guard nesting <= Self.maxNesting else { throw JinjaError("the template nests too deeply while rendering (recursive macros?)") }
        switch expression {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items):
            var values: [JinjaValue] = []
            for item in items { values.append(try operand(item)) }
            return .array(values)
        case .dict(let pairs):
            var values: [(String, JinjaValue)] = []
            for (k, v) in pairs {
                let key = try operand(k)
                guard case .string(let s) = key else { throw JinjaError("dictionary keys must be strings here, not \(key.typeName)") }
                let value = try operand(v)
                if let i = values.firstIndex(where: { $0.0 == s }) { values[i].1 = value } else { values.append((s, value)) }
            }
            return .object(values)
        case .attribute(let base, let name):
            let value = try operand(base)
            if case .undefined = value { throw JinjaError("'\(Self.describe(base))' is undefined (reading .\(name))") }
            return Builtins.item(value, .string(name))
        case .subscript(let base, let key):
            let value = try operand(base)
            if case .undefined = value { throw JinjaError("'\(Self.describe(base))' is undefined (reading an item)") }
            return Builtins.item(value, try operand(key))
        case .slice(let base, let start, let stop, let step):
            return try Builtins.slice(try operand(base), start: try start.map { e throws(JinjaError) in try operand(e) },
                                      stop: try stop.map { e throws(JinjaError) in try operand(e) }, step: try step.map { e throws(JinjaError) in try operand(e) })
        case .call(let callee, let arguments, let keywords):
            var args: [JinjaValue] = []
            for a in arguments { args.append(try operand(a)) }
            var kwargs: [(String, JinjaValue)] = []
            for (k, v) in keywords { kwargs.append((k, try operand(v))) }
            for a in args { try charge(Self.cost(a)) }
            if case .attribute(let base, let method) = callee {
                let receiver = try operand(base)
                try charge(Self.cost(receiver))
                if case .macro(let m) = Builtins.item(receiver, .string(method)) { return try call(m, args, kwargs) }
                return try Builtins.method(receiver, method, args, kwargs)
            }
            if case .name(let name) = callee {
                if case .macro(let m) = lookup(name) { return try call(m, args, kwargs) }
                let result = try Builtins.function(name, args, kwargs, now: now)
                if case .namespace(let ns) = result { namespaces.append(ns) }
                return result
            }
            throw JinjaError("this value cannot be called")
        case .filter(let base, let name, let arguments, let keywords):
            // The escaping filters tell a safe string from a plain one; the rest read it plain.
            let value = Self.markupFilters.contains(name) ? try evaluate(base) : try operand(base)
            var args: [JinjaValue] = []
            for a in arguments { args.append(try operand(a)) }
            var kwargs: [(String, JinjaValue)] = []
            for (k, v) in keywords { kwargs.append((k, try operand(v))) }
            if !Self.constantTimeFilters.contains(name) { try charge(Self.cost(value) + args.reduce(0) { $0 + Self.cost($1) }) }
            return try Builtins.filter(name, value, args, kwargs)
        case .test(let base, let name, let arguments, let negated):
            let value = try operand(base)
            var args: [JinjaValue] = []
            for a in arguments { args.append(try operand(a)) }
            try charge(Self.cost(value) + args.reduce(0) { $0 + Self.cost($1) })
            return .bool(try Builtins.test(name, value, args) != negated)
        case .unary(let op, let base):
            let value = try operand(base)
            switch op {
            case "not": return .bool(!value.isTruthy)
            default:
                switch value {
                case .int(let i):
                    guard i != .min else { throw JinjaError("integer overflow in -(\(i)) (integers here are 64-bit)") }
                    return .int(-i)
                case .double(let d): return .double(-d)
                case .bool(let b): return .int(b ? -1 : 0)
                default: throw JinjaError("bad operand type for unary -: '\(value.typeName)'")
                }
            }
        case .binary("and", let l, let r):
            let left = try evaluate(l)
            return left.isTruthy ? try evaluate(r) : left
        case .binary("or", let l, let r):
            let left = try evaluate(l)
            return left.isTruthy ? left : try evaluate(r)
        case .binary(let op, let l, let r):
            // Only `+` tells a safe string from a plain one (it escapes the plain side).
            let (left, right) = op == "+" ? (try evaluate(l), try evaluate(r)) : (try operand(l), try operand(r))
            try charge(Self.cost(left) + Self.cost(right))
            return try Builtins.binary(op, left, right)
        case .conditional(let value, let condition, let otherwise):
            if try evaluate(condition).isTruthy { return try evaluate(value) }
            return try otherwise.map { e throws(JinjaError) in try evaluate(e) } ?? .undefined
        }
    }

    /// A macro call renders its body in a fresh scope over the globals, with its parameters bound.
    private mutating func call(_ m: Macro, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaError) -> JinjaValue {
        guard depth < Self.maxCallDepth else { throw JinjaError("macros nest too deeply (recursion?)") }
        for a in args { try checkDepth(a) }
        var scope: [String: JinjaValue] = [:]
        for (i, (name, defaultValue)) in m.parameters.enumerated() {
            if i < args.count {
                scope[name] = args[i]
            } else if let given = kwargs.last(where: { $0.0 == name }) {
                scope[name] = given.1
            } else if let defaultValue {
                scope[name] = try evaluate(defaultValue)
            } else {
                scope[name] = .undefined
            }
        }
        let saved = scopes
        scopes = [scopes[0], scope]
        depth += 1
        defer {
            scopes = saved
            depth -= 1
        }
        var out = ""
        _ = try render(m.body, into: &out)
        return .string(out)
    }

    static func describe(_ e: Expression) -> String {
        switch e {
        case .name(let n): return n
        case .attribute(let b, let n): return describe(b) + "." + n
        case .subscript(let b, _): return describe(b) + "[...]"
        default: return "value"
        }
    }
}

extension JinjaValue {
    var isContainer: Bool {
        switch self {
        case .array, .generator, .object, .namespace: return true
        default: return false
        }
    }
}

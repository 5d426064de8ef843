import Foundation
import Tokenizers

/// A context-free grammar in llama.cpp's GBNF notation, for constrained generation:
///
///     root   ::= "yes" | "no" | number
///     number ::= [0-9]+ ("." [0-9]+)?
///
/// Supported: rules (`name ::= ...`, `root` is the start), alternatives `|`, groups `( )`,
/// string literals with escapes (`\n \t \r \" \\ \xHH \uHHHH`), character classes `[a-z_]`
/// and `[^...]`, `.` (any character), repetition `* + ?` and `{m}`, `{m,}`, `{m,n}`, comments `#`.
public struct Grammar: Sendable {
    /// One thing to match: a character from a set of ranges (or outside it), or a rule.
    enum Element: Sendable, Equatable {
        case characters([ClosedRange<UInt32>], negated: Bool)
        case rule(Int)
    }

    /// rules[r] = alternatives; each alternative a sequence of elements.
    let rules: [[[Element]]]
    let ruleNames: [String]
    let root: Int

    public init(_ source: String) throws(LlamaError) {
        var parser = GBNFParser(source)
        try parser.parse()
        guard let root = parser.ids["root"] else { throw LlamaError.grammar("the grammar has no 'root' rule") }
        for (name, id) in parser.ids where parser.rules[id] == nil {
            throw LlamaError.grammar("rule '\(name)' is used but never defined")
        }
        rules = parser.rules.map { $0! }
        ruleNames = parser.names
        self.root = root
        try checkLeftRecursion()
    }

    /// Rules that can start with themselves without consuming a character would expand forever.
    /// One depth-first walk over "may begin with" edges (linear in the grammar's size): a rule met
    /// again while it is still on the walk's path is on a left-recursive cycle.
    private func checkLeftRecursion() throws(LlamaError) {
        // nullable[r]: r can match the empty string. An alternative is nullable when it has no
        // character element and all its rules are nullable; a worklist counts down the rules each
        // alternative still waits for.
        var nullable = [Bool](repeating: false, count: rules.count)
        var users = [[(rule: Int, alternative: Int)]](repeating: [], count: rules.count)
        var waiting: [[Int]] = []
        var ready: [Int] = []
        for r in rules.indices {
            var counts: [Int] = []
            for (a, alternative) in rules[r].enumerated() {
                let hasCharacters = alternative.contains { if case .characters = $0 { true } else { false } }
                var count = 0
                if !hasCharacters {
                    for case .rule(let s) in alternative {
                        users[s].append((r, a))
                        count += 1
                    }
                    if count == 0, !nullable[r] { nullable[r] = true; ready.append(r) }
                }
                counts.append(hasCharacters ? -1 : count)
            }
            waiting.append(counts)
        }
        while let s = ready.popLast() {
            for (r, a) in users[s] {
                waiting[r][a] -= 1
                if waiting[r][a] == 0, !nullable[r] {
                    nullable[r] = true
                    ready.append(r)
                }
            }
        }
        // edges[r]: the rules r may begin with.
        let edges: [[Int]] = rules.map { alternatives in
            var out: [Int] = []
            for alternative in alternatives {
                for element in alternative {
                    guard case .rule(let s) = element else { break }
                    out.append(s)
                    if !nullable[s] { break }
                }
            }
            return out
        }
        var state = [UInt8](repeating: 0, count: rules.count)  // 0 new, 1 on the path, 2 done
        for start in rules.indices where state[start] == 0 {
            var path: [(rule: Int, next: Int)] = [(start, 0)]
            state[start] = 1
            while let (r, next) = path.last {
                if next < edges[r].count {
                    path[path.count - 1].next += 1
                    let s = edges[r][next]
                    if state[s] == 1 { throw LlamaError.grammar("rule '\(ruleNames[s])' is left-recursive, which this grammar engine cannot run") }
                    if state[s] == 0 {
                        state[s] = 1
                        path.append((s, 0))
                    }
                } else {
                    state[r] = 2
                    path.removeLast()
                }
            }
        }
    }
}


/// GBNF text to rules. Repetitions and groups become generated rules, as llama.cpp does.
/// The grammar comes from requests, so its size after expansion is bounded: groups nest at most
/// `maxDepth` deep, and repetitions may not expand it past `maxElements` elements or `maxRules` rules.
struct GBNFParser {
    static let maxDepth = 200
    static let maxElements = 1_000_000
    static let maxRules = 200_000

    let text: [UInt32]
    var i = 0
    var ids: [String: Int] = [:]
    var names: [String] = []
    var rules: [[[Grammar.Element]]?] = []
    /// Groups open around the current position.
    var depth = 0
    /// Elements in all rules so far, repetitions expanded.
    var size = 0

    init(_ source: String) { text = source.unicodeScalars.map(\.value) }

    /// Counts `count` more elements against the size limit.
    mutating func grow(_ count: Int) throws(LlamaError) {
        let (total, overflow) = size.addingReportingOverflow(count)
        guard !overflow, total <= Self.maxElements, names.count <= Self.maxRules else {
            throw error("the grammar is too large once its repetitions are expanded (limits: \(Self.maxElements) elements, \(Self.maxRules) rules)")
        }
        size = total
    }

    mutating func id(_ name: String) -> Int {
        if let id = ids[name] { return id }
        ids[name] = names.count
        names.append(name)
        rules.append(nil)
        return names.count - 1
    }

    mutating func newRule(_ base: String, _ alternatives: [[Grammar.Element]]) -> Int {
        let r = id("\(base)_\(names.count)")
        rules[r] = alternatives
        return r
    }

    func peek(_ offset: Int = 0) -> UInt32? { i + offset < text.count ? text[i + offset] : nil }

    func isNameCharacter(_ c: UInt32) -> Bool {
        (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c == 45 || c == 95
    }

    /// Skips spaces, tabs and comments; newlines too when `newlines` (inside groups, after `|`).
    mutating func skipSpace(newlines: Bool) {
        while let c = peek() {
            if c == 32 || c == 9 || ((c == 10 || c == 13) && newlines) {
                i += 1
            } else if c == 35 {  // '#'
                while let d = peek(), d != 10 { i += 1 }
            } else {
                break
            }
        }
    }

    /// Like skipSpace(newlines: false), but a newline followed by `|` continues the rule.
    mutating func skipSpaceInRule() {
        skipSpace(newlines: false)
        var j = i
        while j < text.count, [10, 13, 32, 9].contains(text[j]) { j += 1 }
        if j < text.count, text[j] == 124 { i = j }
    }

    mutating func name() throws(LlamaError) -> String {
        let start = i
        while let c = peek(), isNameCharacter(c) { i += 1 }
        guard i > start else { throw error("expected a rule name") }
        return String(String.UnicodeScalarView(text[start..<i].compactMap(Unicode.Scalar.init)))
    }

    func error(_ message: String) -> LlamaError {
        let line = text[..<min(i, text.count)].filter { $0 == 10 }.count + 1
        return LlamaError.grammar("grammar line \(line): \(message)")
    }

    mutating func parse() throws(LlamaError) {
        while true {
            skipSpace(newlines: true)
            guard peek() != nil else { break }
            let ruleName = try name()
            skipSpace(newlines: false)
            guard peek() == 58, peek(1) == 58, peek(2) == 61 else { throw error("expected '::=' after '\(ruleName)'") }
            i += 3
            skipSpace(newlines: true)
            let r = id(ruleName)
            guard rules[r] == nil else { throw error("rule '\(ruleName)' is defined twice") }
            rules[r] = try alternatives(nested: false, ruleName: ruleName)
            skipSpace(newlines: false)
            if let c = peek(), c != 10, c != 13 { throw error("unexpected '\(Character(Unicode.Scalar(c)!))' at the end of rule '\(ruleName)'") }
        }
    }

    mutating func alternatives(nested: Bool, ruleName: String) throws(LlamaError) -> [[Grammar.Element]] {
        var result = [try sequence(nested: nested, ruleName: ruleName)]
        while peek() == 124 {  // '|'
            i += 1
            skipSpace(newlines: true)
            result.append(try sequence(nested: nested, ruleName: ruleName))
        }
        return result
    }

    mutating func sequence(nested: Bool, ruleName: String) throws(LlamaError) -> [Grammar.Element] {
        var elements: [Grammar.Element] = []
        var lastStart = 0  // where the last item (for a repetition operator) begins
        while let c = peek() {
            switch c {
            case 34:  // '"'
                i += 1
                lastStart = elements.count
                while let d = peek(), d != 34 {
                    let value = try character()
                    try grow(1)
                    elements.append(.characters([value...value], negated: false))
                }
                guard peek() == 34 else { throw error("a string is never closed") }
                i += 1
                if elements.count == lastStart {  // "" matches nothing: an empty group
                    elements.append(.rule(newRule(ruleName, [[]])))
                }
            case 91:  // '['
                i += 1
                var negated = false
                if peek() == 94 { negated = true; i += 1 }
                var ranges: [ClosedRange<UInt32>] = []
                while let d = peek(), d != 93 {
                    let low = try character()
                    if peek() == 45, let next = peek(1), next != 93 {
                        i += 1
                        let high = try character()
                        guard low <= high else { throw error("an empty character range") }
                        ranges.append(low...high)
                    } else {
                        ranges.append(low...low)
                    }
                }
                guard peek() == 93 else { throw error("a character class is never closed") }
                i += 1
                lastStart = elements.count
                try grow(1)
                elements.append(.characters(ranges, negated: negated))
            case 46:  // '.'
                i += 1
                lastStart = elements.count
                try grow(1)
                elements.append(.characters([], negated: true))
            case 40:  // '('
                i += 1
                guard depth < Self.maxDepth else { throw error("groups nest more than \(Self.maxDepth) deep") }
                depth += 1
                skipSpace(newlines: true)
                let inner = try alternatives(nested: true, ruleName: ruleName)
                skipSpace(newlines: true)
                guard peek() == 41 else { throw error("expected ')'") }
                i += 1
                depth -= 1
                try grow(1)
                lastStart = elements.count
                elements.append(.rule(newRule(ruleName, inner)))
            case 42, 43, 63:  // * + ?
                guard lastStart < elements.count else { throw error("a repetition operator with nothing before it") }
                i += 1
                let item = Array(elements[lastStart...])
                elements.removeSubrange(lastStart...)
                elements.append(contentsOf: try repeated(item, min: c == 43 ? 1 : 0, max: c == 63 ? 1 : nil, ruleName))
            case 123:  // '{'
                guard lastStart < elements.count else { throw error("a repetition with nothing before it") }
                i += 1
                skipSpace(newlines: false)
                let low = try integer()
                var high: Int? = low
                skipSpace(newlines: false)
                if peek() == 44 {
                    i += 1
                    skipSpace(newlines: false)
                    high = peek().map { $0 >= 48 && $0 <= 57 } == true ? try integer() : nil
                }
                skipSpace(newlines: false)
                guard peek() == 125 else { throw error("expected '}'") }
                i += 1
                if let high, high < low { throw error("a repetition {m,n} with n < m") }
                let item = Array(elements[lastStart...])
                elements.removeSubrange(lastStart...)
                elements.append(contentsOf: try repeated(item, min: low, max: high, ruleName))
            default:
                if isNameCharacter(c) {
                    let start = i
                    let ref = try name()
                    // A name followed by '::=' starts the next rule.
                    var j = i
                    while j < text.count, text[j] == 32 || text[j] == 9 { j += 1 }
                    if !nested, j + 2 < text.count, text[j] == 58, text[j + 1] == 58, text[j + 2] == 61 {
                        i = start
                        return elements
                    }
                    lastStart = elements.count
                    try grow(1)
                    elements.append(.rule(id(ref)))
                } else if c == 10 || c == 13 {
                    if nested { skipSpace(newlines: true); continue }
                    skipSpaceInRule()
                    if peek() == 124 { return elements }
                    return elements
                } else if c == 124 || c == 41 {
                    return elements
                } else {
                    throw error("unexpected '\(Character(Unicode.Scalar(c) ?? "?"))'")
                }
            }
            if nested { skipSpace(newlines: true) } else { skipSpaceInRule() }
        }
        return elements
    }

    mutating func integer() throws(LlamaError) -> Int {
        var value = 0, digits = 0
        while let c = peek(), c >= 48 && c <= 57 {
            value = value * 10 + Int(c - 48)
            digits += 1
            i += 1
            guard value < 100_000 else { throw error("a repetition count is too large") }
        }
        guard digits > 0 else { throw error("expected a number") }
        return value
    }

    /// One character of a literal or class, with escapes.
    mutating func character() throws(LlamaError) -> UInt32 {
        guard let c = peek() else { throw error("unexpected end of the grammar") }
        i += 1
        guard c == 92 else { return c }  // '\'
        guard let e = peek() else { throw error("unexpected end after '\\'") }
        i += 1
        switch e {
        case 110: return 10
        case 116: return 9
        case 114: return 13
        case 48: return 0
        case 120, 117, 85:  // x u U
            let length = e == 120 ? 2 : (e == 117 ? 4 : 8)
            var value: UInt32 = 0
            for _ in 0..<length {
                guard let h = peek(), let digit = Int(String(Character(Unicode.Scalar(h)!)), radix: 16) else {
                    throw error("a \\\(Character(Unicode.Scalar(e)!)) escape needs \(length) hex digits")
                }
                value = value * 16 + UInt32(digit)
                i += 1
            }
            return value
        default: return e  // \" \\ \[ \] \- and the like stand for themselves
        }
    }

    /// item{min,max} as elements: min copies, then nested optional copies (or a star rule).
    /// Counted against the size limit before anything is built.
    mutating func repeated(_ item: [Grammar.Element], min: Int, max: Int?, _ base: String) throws(LlamaError) -> [Grammar.Element] {
        let copies = (max ?? min) + 1  // at most 100,000 each: integer() bounds them
        let (needed, overflow) = copies.multipliedReportingOverflow(by: item.count + 1)
        try grow(overflow ? Int.max : needed)
        var out: [Grammar.Element] = []
        for _ in 0..<min { out += item }
        if let max {
            guard max > min else { return out }
            // x{0,k} as  opt_k ::= x opt_{k-1} | ""  (built from the inside out)
            var tail = newRule(base, [item, []])
            for _ in 1..<(max - min) { tail = newRule(base, [item + [.rule(tail)], []]) }
            out.append(.rule(tail))
        } else {
            let star = id("\(base)_\(names.count)")
            rules[star] = [item + [.rule(star)], []]
            out.append(.rule(star))
        }
        return out
    }
}

/// The state of matching a grammar against generated text: the set of parse stacks still
/// possible, as in llama.cpp. Each stack lists grammar positions; its top is the next element.
///
/// Its methods take a lock, so a matcher may be handed between threads (one call at a time).
public final class GrammarMatcher: @unchecked Sendable {
    private let lock = NSLock()
    struct Position: Hashable {
        var rule: Int32
        var alternative: Int32
        var element: Int32
    }

    public let grammar: Grammar
    private var stacks: [[Position]]
    /// Matching steps one token's choice may take (the vocabulary check included), so that one
    /// request's grammar cannot stall a generation thread that others share.
    public let workBudget: Int
    private var work = 0
    private var exhausted = false
    /// Bytes of a character that a token ended in the middle of.
    private var pendingBytes: [UInt8] = []

    public init(_ grammar: Grammar, workBudget: Int = 4_000_000) {
        self.grammar = grammar
        self.workBudget = workBudget
        stacks = []
        for alternative in grammar.rules[grammar.root].indices {
            stacks += expand([Position(rule: Int32(grammar.root), alternative: Int32(alternative), element: 0)])
        }
        stacks = Array(Set(stacks))
    }

    /// Starts counting the steps of the next token's choice.
    public func beginToken() { lock.withLock { work = 0; exhausted = false } }
    /// The last choice ran out of steps: `allows` answered false from then on.
    public var budgetExhausted: Bool { lock.withLock { exhausted } }

    /// Counts `steps` against the budget; false once it is spent.
    private func spend(_ steps: Int) -> Bool {
        work += steps
        if work > workBudget { exhausted = true }
        return !exhausted
    }

    /// Nothing more can be matched: every remaining parse is complete.
    public var isComplete: Bool { lock.withLock { stacks.allSatisfy(\.isEmpty) && pendingBytes.isEmpty } }
    /// The text so far is a whole sentence of the grammar (the end of text may come now).
    public var canEnd: Bool { lock.withLock { canEndUnlocked } }
    private var canEndUnlocked: Bool { stacks.contains(where: \.isEmpty) && pendingBytes.isEmpty }

    /// Follows rule references and finished alternatives until each stack's top is a character
    /// element (or the stack is empty: a complete parse).
    private func expand(_ stack: [Position]) -> [[Position]] {
        if let known = expansions[stack] { return known }
        let out = expandUncached(stack)
        if expansions.count > 50_000 { expansions.removeAll(keepingCapacity: true) }
        expansions[stack] = out
        return out
    }

    /// Expansions already worked out: checking a vocabulary meets the same stacks again and again.
    private var expansions: [[Position]: [[Position]]] = [:]

    private func expandUncached(_ stack: [Position]) -> [[Position]] {
        var out: [[Position]] = []
        var work = [stack]
        var steps = 0
        while let s = work.popLast() {
            steps += 1
            if steps > 100_000 { break }  // a runaway grammar; left recursion is rejected at parse time
            guard var top = s.last else {
                out.append(s)
                continue
            }
            let alternative = grammar.rules[Int(top.rule)][Int(top.alternative)]
            if Int(top.element) >= alternative.count {
                work.append(Array(s.dropLast()))
                continue
            }
            switch alternative[Int(top.element)] {
            case .characters:
                out.append(s)
            case .rule(let r):
                var rest = Array(s.dropLast())
                top.element += 1
                // A reference at the end of its alternative returns nowhere: leaving it off keeps
                // right-recursive rules (lists, repetitions) from growing the stack per character.
                if Int(top.element) < alternative.count { rest.append(top) }
                for a in grammar.rules[r].indices {
                    work.append(rest + [Position(rule: Int32(r), alternative: Int32(a), element: 0)])
                }
            }
        }
        return out
    }

    private func matches(_ c: UInt32, _ element: Grammar.Element) -> Bool {
        guard case .characters(let ranges, let negated) = element else { return false }
        var inside = false
        for range in ranges where range.contains(c) {
            inside = true
            break
        }
        return inside != negated
    }

    /// Whether the element accepts some code point in low...high.
    private func overlaps(_ low: UInt32, _ high: UInt32, _ element: Grammar.Element) -> Bool {
        guard case .characters(let ranges, let negated) = element else { return false }
        if negated { return !ranges.contains { $0.lowerBound <= low && $0.upperBound >= high } }
        return ranges.contains { $0.lowerBound <= high && $0.upperBound >= low }
    }

    /// The code points whose UTF-8 encoding begins with `bytes` (an unfinished character).
    static func codePointRange(startingWith bytes: [UInt8]) -> (UInt32, UInt32)? {
        guard let lead = bytes.first else { return nil }
        let length: Int, payload: UInt32
        switch lead {
        case 0xC2...0xDF: (length, payload) = (2, UInt32(lead & 0x1F))
        case 0xE0...0xEF: (length, payload) = (3, UInt32(lead & 0x0F))
        case 0xF0...0xF4: (length, payload) = (4, UInt32(lead & 0x07))
        default: return nil
        }
        guard bytes.count < length, bytes.dropFirst().allSatisfy({ $0 & 0xC0 == 0x80 }) else { return nil }
        var value = payload
        for b in bytes.dropFirst() { value = value << 6 | UInt32(b & 0x3F) }
        let shift = UInt32(6 * (length - bytes.count))
        // Overlong forms are not characters: each length starts where the shorter one ends.
        let smallest: UInt32 = [2: 0x80, 3: 0x800, 4: 0x10000][length]!
        let low = max(value << shift, smallest), high = min((value << shift) | ((1 << shift) - 1), 0x10FFFF)
        return low <= high ? (low, high) : nil
    }

    private func advance(_ stacks: [[Position]], by c: UInt32) -> [[Position]] {
        var next: Set<[Position]> = []
        for stack in stacks {
            guard var top = stack.last else { continue }
            let element = grammar.rules[Int(top.rule)][Int(top.alternative)][Int(top.element)]
            guard matches(c, element) else { continue }
            top.element += 1
            var moved = Array(stack.dropLast())
            moved.append(top)
            for s in expand(moved) { next.insert(s) }
        }
        return Array(next)
    }

    /// Code points of `bytes` after any pending partial character, and the bytes of an
    /// unfinished character at the end.
    private func decode(_ bytes: [UInt8]) -> ([UInt32], [UInt8]) {
        if pendingBytes.isEmpty, bytes.allSatisfy({ $0 < 0x80 }) { return (bytes.map(UInt32.init), []) }
        let all = pendingBytes + bytes
        let cut = StreamingDecoder.completePrefixLength(all)
        let text = String(decoding: all[..<cut], as: UTF8.self)
        return (text.unicodeScalars.map(\.value), Array(all[cut...]))
    }

    /// Whether `token` (whose text is `bytes`) may come next. A token without text (a control
    /// token) is allowed only as the end of text, when the grammar is complete.
    public func allows(bytes: [UInt8], isEndOfText: Bool) -> Bool {
        lock.withLock { allowsUnlocked(bytes: bytes, isEndOfText: isEndOfText) }
    }

    private func allowsUnlocked(bytes: [UInt8], isEndOfText: Bool) -> Bool {
        if isEndOfText { return canEndUnlocked }
        guard !bytes.isEmpty, spend(stacks.count) else { return false }
        // Most tokens fail on their first character: test an ASCII first byte before decoding.
        if pendingBytes.isEmpty, bytes[0] < 0x80 {
            let c = UInt32(bytes[0])
            let possible = stacks.contains { stack in
                guard let top = stack.last else { return false }
                return matches(c, grammar.rules[Int(top.rule)][Int(top.alternative)][Int(top.element)])
            }
            if !possible { return false }
        }
        let (points, partial) = decode(bytes)
        let range = partial.isEmpty ? nil : Self.codePointRange(startingWith: partial)
        if !partial.isEmpty, range == nil { return false }
        return stacks.contains { follows($0, points[...], then: range) }
    }

    /// Depth-first: whether `stack` can match `points` and then (if given) a character in `range`.
    /// Stops at the first way that works, so checking a token costs about its length.
    private func follows(_ stack: [Position], _ points: ArraySlice<UInt32>, then range: (UInt32, UInt32)?) -> Bool {
        guard let top = stack.last else { return points.isEmpty && range == nil }
        guard spend(1) else { return false }
        let element = grammar.rules[Int(top.rule)][Int(top.alternative)][Int(top.element)]
        guard let c = points.first else {
            guard let (low, high) = range else { return true }
            return overlaps(low, high, element)
        }
        guard matches(c, element) else { return false }
        for next in step(stack) where follows(next, points.dropFirst(), then: range) { return true }
        return false
    }

    /// The stacks after `stack`'s top character element has matched.
    private func step(_ stack: [Position]) -> [[Position]] {
        if let known = steps[stack] { return known }
        var moved = stack
        moved[moved.count - 1].element += 1
        let out = expand(moved)
        if steps.count > 50_000 { steps.removeAll(keepingCapacity: true) }
        steps[stack] = out
        return out
    }

    private var steps: [[Position]: [[Position]]] = [:]

    /// Moves past `bytes` (call after the token is chosen; it must be allowed).
    public func accept(bytes: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        let (points, partial) = decode(bytes)
        for c in points { stacks = advance(stacks, by: c) }
        pendingBytes = partial
    }
}

extension GrammarMatcher {
    /// `allows` for a token of `tokenizer`. Control tokens have no text, except those in `kept`
    /// (a tool-call format's tags), which match their text.
    public func allows(_ token: TokenID, tokenizer: Tokenizer, endTokens: Set<TokenID>, kept: Set<TokenID> = []) -> Bool {
        if endTokens.contains(token) { return canEnd }
        if kept.contains(token) { return allows(bytes: tokenizer.pieceBytes(token, renderSpecial: true), isEndOfText: false) }
        let type = tokenizer.tokenType(token)
        if type == .control || type == .unknown || type == .unused { return false }
        return allows(bytes: tokenizer.pieceBytes(token), isEndOfText: false)
    }

    public func accept(_ token: TokenID, tokenizer: Tokenizer, kept: Set<TokenID> = []) {
        accept(bytes: tokenizer.pieceBytes(token, renderSpecial: kept.contains(token)))
    }
}

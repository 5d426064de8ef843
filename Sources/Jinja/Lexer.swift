/// What went wrong reading or rendering a template, with the template's own words where it
/// raised (`raise_exception`).
public struct JinjaError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One lexical token inside `{{ }}` or `{% %}`.
enum Token: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    case op(String)
}

/// The template cut into literal text, `{{ expression }}` and `{% statement %}` pieces, with
/// whitespace control already applied the way Hugging Face renders chat templates:
/// `trim_blocks` and `lstrip_blocks` on, `-` strips all whitespace on its side, `+` keeps it.
enum Segment {
    case text(String)
    case output([Token])
    case statement([Token])
}

struct Lexer {
    private let bytes: [UInt8]
    private var i = 0

    init(_ source: String) { bytes = Array(source.utf8) }

    static func segments(_ source: String) throws(JinjaError) -> [Segment] {
        var lexer = Lexer(source)
        return try lexer.run()
    }

    private struct Raw {
        var segment: Segment?  // nil: a comment
        var text: [UInt8] = []
        var isBlock = false  // a {% %} or {# #} tag, which the block options act on
        var stripBefore = false, keepBefore = false
        var stripAfter = false, keepAfter = false
    }

    private mutating func run() throws(JinjaError) -> [Segment] {
        var pieces: [Raw] = []
        var textStart = 0
        while i < bytes.count {
            guard bytes[i] == UInt8(ascii: "{"), i + 1 < bytes.count,
                  [UInt8(ascii: "{"), UInt8(ascii: "%"), UInt8(ascii: "#")].contains(bytes[i + 1]) else {
                i += 1
                continue
            }
            var text = Raw()
            text.text = Array(bytes[textStart..<i])
            pieces.append(text)
            let kind = bytes[i + 1]
            i += 2
            var tag = Raw()
            tag.isBlock = kind != UInt8(ascii: "{")
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { tag.stripBefore = true; i += 1 }
            else if i < bytes.count, bytes[i] == UInt8(ascii: "+") { tag.keepBefore = true; i += 1 }
            if kind == UInt8(ascii: "#") {
                guard let end = find("#}") else { throw JinjaError("a comment {# is never closed") }
                tag.stripAfter = end > i && bytes[end - 1] == UInt8(ascii: "-")
                tag.keepAfter = end > i && bytes[end - 1] == UInt8(ascii: "+")
                i = end + 2
            } else {
                let close = kind == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "%")
                let (tokens, stripAfter, keepAfter) = try tokens(until: close)
                tag.segment = kind == UInt8(ascii: "{") ? .output(tokens) : .statement(tokens)
                tag.stripAfter = stripAfter
                tag.keepAfter = keepAfter
            }
            pieces.append(tag)
            textStart = i
        }
        var tail = Raw()
        tail.text = Array(bytes[textStart...])
        pieces.append(tail)
        return Self.applyWhitespaceControl(pieces)
    }

    private static func applyWhitespaceControl(_ pieces: [Raw]) -> [Segment] {
        var pieces = pieces  // alternating: text, tag, text, tag, ..., text
        func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 10 || b == 13 || b == 11 || b == 12 }
        // A text piece starts a line when it opens the template or follows a block tag whose
        // trim_blocks newline was taken (Jinja's `line_starting`).
        var lineStarting = [Bool](repeating: false, count: pieces.count)
        for k in stride(from: 0, to: pieces.count, by: 2) {
            if k == 0 { lineStarting[k] = true; continue }
            let tag = pieces[k - 1]
            lineStarting[k] = tag.isBlock && !tag.stripAfter && !tag.keepAfter && pieces[k].text.first == 10
                || tag.isBlock && !tag.stripAfter && !tag.keepAfter && pieces[k].text.starts(with: [13, 10])
        }
        for k in stride(from: 1, to: pieces.count, by: 2) {
            let tag = pieces[k]
            if tag.stripAfter {
                pieces[k + 1].text = Array(pieces[k + 1].text.drop(while: isSpace))
            } else if tag.isBlock, !tag.keepAfter {
                // trim_blocks: the one newline right after a block tag goes.
                if pieces[k + 1].text.first == 10 { pieces[k + 1].text.removeFirst() }
                else if pieces[k + 1].text.starts(with: [13, 10]) { pieces[k + 1].text.removeFirst(2) }
            }
        }
        for k in stride(from: 1, to: pieces.count, by: 2) {
            let tag = pieces[k]
            if tag.stripBefore {
                while let last = pieces[k - 1].text.last, isSpace(last) { pieces[k - 1].text.removeLast() }
            } else if tag.isBlock, !tag.keepBefore {
                // lstrip_blocks: spaces and tabs between a line's start and a block tag go.
                let text = pieces[k - 1].text
                let lineStart = (text.lastIndex(of: 10).map { $0 + 1 }) ?? 0
                if lineStart > 0 || lineStarting[k - 1], lineStart < text.count, text[lineStart...].allSatisfy(isSpace) {
                    pieces[k - 1].text.removeSubrange(lineStart...)
                }
            }
        }
        var segments: [Segment] = []
        for piece in pieces {
            if let segment = piece.segment { segments.append(segment) }
            else if !piece.isBlock, !piece.text.isEmpty { segments.append(.text(String(decoding: piece.text, as: UTF8.self))) }
        }
        return segments
    }

    private func find(_ pattern: String) -> Int? {
        let p = Array(pattern.utf8)
        var j = i
        while j + p.count <= bytes.count {
            if bytes[j] == p[0], Array(bytes[j..<j + p.count]) == p { return j }
            j += 1
        }
        return nil
    }

    /// Lexes tokens up to the closing `}}` or `%}`; returns them and the closing whitespace flags.
    private mutating func tokens(until close: UInt8) throws(JinjaError) -> ([Token], Bool, Bool) {
        var tokens: [Token] = []
        var depth = 0  // brackets: a dict literal's `}` must not end a `{{ }}`
        while true {
            while i < bytes.count, [32, 9, 10, 13].contains(bytes[i]) { i += 1 }
            guard i < bytes.count else { throw JinjaError("a tag is never closed (missing \(close == UInt8(ascii: "}") ? "}}" : "%}"))") }
            let b = bytes[i]
            // The end of the tag, possibly with a whitespace-control sign before it.
            if depth == 0 {
                for (sign, strip, keep) in [(UInt8(ascii: "-"), true, false), (UInt8(ascii: "+"), false, true)] {
                    if b == sign, i + 2 < bytes.count, bytes[i + 1] == close, bytes[i + 2] == UInt8(ascii: "}") {
                        i += 3
                        return (tokens, strip, keep)
                    }
                }
                if b == close, i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "}") {
                    i += 2
                    return (tokens, false, false)
                }
            }
            if b == UInt8(ascii: "'") || b == UInt8(ascii: "\"") {
                tokens.append(.string(try string(quote: b)))
            } else if isDigit(b) {
                tokens.append(try number())
            } else if isLetter(b) {
                let start = i
                while i < bytes.count, isLetter(bytes[i]) || isDigit(bytes[i]) { i += 1 }
                tokens.append(.name(String(decoding: bytes[start..<i], as: UTF8.self)))
            } else {
                let two = i + 1 < bytes.count ? String(decoding: bytes[i...i + 1], as: UTF8.self) : ""
                if ["==", "!=", "<=", ">=", "//", "**"].contains(two) {
                    tokens.append(.op(two))
                    i += 2
                } else {
                    let one = String(UnicodeScalar(b))
                    guard "+-*/%~<>=()[]{}.,:|".contains(one) else { throw JinjaError("unexpected character '\(one)' in a tag") }
                    if "([{".contains(one) { depth += 1 }
                    if ")]}".contains(one) { depth = max(0, depth - 1) }
                    tokens.append(.op(one))
                    i += 1
                }
            }
        }
    }

    private func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
    private func isLetter(_ b: UInt8) -> Bool { (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 95 }

    private mutating func number() throws(JinjaError) -> Token {
        let start = i
        while i < bytes.count, isDigit(bytes[i]) || bytes[i] == UInt8(ascii: "_") { i += 1 }
        var isFloat = false
        if i + 1 < bytes.count, bytes[i] == UInt8(ascii: "."), isDigit(bytes[i + 1]) {
            isFloat = true
            i += 1
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            var j = i + 1
            if j < bytes.count, bytes[j] == UInt8(ascii: "+") || bytes[j] == UInt8(ascii: "-") { j += 1 }
            if j < bytes.count, isDigit(bytes[j]) {
                isFloat = true
                i = j
                while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            }
        }
        let text = String(decoding: bytes[start..<i].filter { $0 != UInt8(ascii: "_") }, as: UTF8.self)
        if isFloat, let d = Double(text) { return .double(d) }
        if !isFloat, let n = Int(text) { return .int(n) }
        // Python would make a big integer; this interpreter's integers are 64-bit.
        throw JinjaError("the number \(text.prefix(40)) is too large (integers here are 64-bit)")
    }

    /// A quoted string with Python's escapes.
    private mutating func string(quote: UInt8) throws(JinjaError) -> String {
        i += 1
        var out: [UInt8] = []
        while i < bytes.count, bytes[i] != quote {
            if bytes[i] == UInt8(ascii: "\\"), i + 1 < bytes.count {
                i += 1
                switch bytes[i] {
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "0"): out.append(0)
                case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(bytes[i])
                case UInt8(ascii: "u"), UInt8(ascii: "x"):
                    // \uXXXX and \xXX: a code point in hex (left as written when malformed, as Python would refuse).
                    let digits = bytes[i] == UInt8(ascii: "u") ? 4 : 2
                    if i + digits < bytes.count,
                       let v = UInt32(String(decoding: bytes[i + 1...i + digits], as: UTF8.self), radix: 16), let s = UnicodeScalar(v) {
                        out += Array(String(s).utf8)
                        i += digits
                    } else {
                        out += [UInt8(ascii: "\\"), bytes[i]]
                    }
                default: out += [UInt8(ascii: "\\"), bytes[i]]  // unknown escapes stay, as in Python
                }
            } else {
                out.append(bytes[i])
            }
            i += 1
        }
        guard i < bytes.count else { throw JinjaError("a string in a tag is never closed") }
        i += 1
        return String(decoding: out, as: UTF8.self)
    }
}

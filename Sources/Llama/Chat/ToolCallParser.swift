import Foundation
import Jinja

/// Takes a model's answer apart: the thinking between `<think>` and `</think>`, the text, and the
/// tool calls written in the model family's format. `parse(_:partial:)` reads an answer that is
/// still growing too: text that may yet become a tag or a call is held back, and the last call
/// may be unfinished (its arguments so far). Arguments are the model's own JSON text, so what a
/// stream sends piece by piece adds up to the whole answer's arguments.
public struct ToolCallParser: Sendable {
    public var format: ToolCallFormat
    /// Whether calls are looked for at all (not with `tool_choice: none` or without tools).
    public var parsesToolCalls: Bool
    /// Whether thinking goes to `reasoning` (otherwise it stays at the start of the content).
    public var splitsReasoning: Bool
    /// Whether the prompt already opened the thinking block (the template ends with `<think>`).
    public var startsInReasoning: Bool
    /// Call ids are this and the call's number (ids the model writes are not kept: they would
    /// arrive after the call's first streamed piece). Mistral's templates want 9 letters and
    /// digits: 5 from here and 4 for the number.
    public var idPrefix: String

    public init(format: ToolCallFormat, parsesToolCalls: Bool = true, splitsReasoning: Bool = true,
                startsInReasoning: Bool = false, idPrefix: String? = nil) {
        self.format = format
        self.parsesToolCalls = parsesToolCalls
        self.splitsReasoning = splitsReasoning
        self.startsInReasoning = startsInReasoning
        let random = String((0..<16).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        self.idPrefix = idPrefix ?? (format == .mistral ? String(random.prefix(5)) : "call_" + random + "_")
    }

    func id(_ index: Int) -> String {
        guard format == .mistral else { return idPrefix + String(index) }
        let number = String(index % 10_000)
        return idPrefix + String(repeating: "0", count: 4 - number.count) + number
    }

    static let thinkOpen = "<think>", thinkClose = "</think>"

    /// Whether a rendered prompt ends inside a thinking block (its template opened it), so the
    /// answer starts there: set `startsInReasoning`.
    public static func opensThinking(_ prompt: String) -> Bool {
        var end = prompt[...]
        while let last = end.last, last.isWhitespace { end = end.dropLast() }
        return end.hasSuffix(thinkOpen)
    }

    public func parse(_ text: String, partial: Bool = false) -> ParsedAnswer {
        let (reasoning, rest) = splitsReasoning ? splitThinking(Substring(text), partial: partial) : (nil, Substring(text))
        // Without calls or thinking, the text is the answer as it came, spaces and all.
        guard parsesToolCalls else { return ParsedAnswer(content: reasoning == nil ? String(rest) : Self.trimmed(rest), reasoning: reasoning) }
        let (content, calls): (String, [ToolCall])
        switch format {
        case .hermes: (content, calls) = parseHermes(rest, partial: partial)
        case .llama3: (content, calls) = parseLlama3(rest, partial: partial)
        case .mistral: (content, calls) = parseMistral(rest, partial: partial)
        case .generic: (content, calls) = parseGeneric(rest, partial: partial)
        }
        return ParsedAnswer(content: Self.trimmed(content), reasoning: reasoning, toolCalls: calls)
    }

    // MARK: Thinking

    /// (what was thought, what follows). An unclosed block at the end of a whole answer is all thought.
    func splitThinking(_ text: Substring, partial: Bool) -> (String?, Substring) {
        var t = text
        if !startsInReasoning {
            let start = t.drop { $0.isWhitespace }
            if start.hasPrefix(Self.thinkOpen) {
                t = start.dropFirst(Self.thinkOpen.count)
            } else if partial, !start.isEmpty, Self.thinkOpen.hasPrefix(start) {
                return (nil, "")  // "<thi": wait and see
            } else {
                return (nil, text)
            }
        }
        if let close = t.range(of: Self.thinkClose) {
            return (Self.trimmed(t[..<close.lowerBound]), t[close.upperBound...])
        }
        let thought = partial ? Self.holdingBack(t, tags: [Self.thinkClose]) : t
        return (Self.trimmed(thought), "")
    }

    // MARK: Formats

    func parseHermes(_ text: Substring, partial: Bool) -> (String, [ToolCall]) {
        let open = "<tool_call>", close = "</tool_call>"
        var content = "", calls: [ToolCall] = []
        var rest = text
        while let start = rest.range(of: open) {
            content += rest[..<start.lowerBound]
            let body = rest[start.upperBound...]
            // The object first (a closing tag inside one of its strings is not the end), then the tag.
            let scanner = JSONScanner(body)
            let i = scanner.skipSpace(0)
            if i == scanner.bytes.count, partial { return (content, calls) }
            if i < scanner.bytes.count, scanner.bytes[i] == UInt8(ascii: "{") {
                let object = scanner.members(at: i, final: !partial)
                if object.valid, let end = object.end, let call = call(from: object, scanner: scanner, partial: false, index: calls.count) {
                    calls.append(call)
                    let after = scanner.rest(from: end)
                    // Whatever stands between the object and its closing tag is dropped with the
                    // tag; until the tag comes, a stream waits.
                    if let tag = after.range(of: close) {
                        rest = after[tag.upperBound...]
                    } else if partial {
                        return (content, calls)
                    } else {
                        rest = after
                    }
                    continue
                }
                // Still being written, or cut off (then the call keeps what was written, as a
                // stream would have sent it).
                if object.valid, object.end == nil {
                    if let call = call(from: object, scanner: scanner, partial: true, index: calls.count) {
                        calls.append(call)
                        return (content, calls)
                    }
                    if partial { return (content, calls) }
                }
            }
            // Not a call: the block stays text.
            guard let end = body.range(of: close) else {
                if !partial { content += rest[start.lowerBound...] }
                return (content, calls)
            }
            content += rest[start.lowerBound..<end.upperBound]
            rest = body[end.upperBound...]
        }
        content += partial ? Self.holdingBack(rest, tags: [open, close]) : rest
        return (content, calls)
    }

    func parseLlama3(_ text: Substring, partial: Bool) -> (String, [ToolCall]) {
        let tag = "<|python_tag|>"
        let start = text.drop { $0.isWhitespace }
        if start.hasPrefix(tag) {
            let body = start.dropFirst(tag.count)
            let calls = objectCalls(JSONScanner(body), partial: partial)
            if !calls.isEmpty || partial { return ("", calls) }
            // Code after the tag (Llama's built-in interpreter): a call of `python`.
            let code = JinjaValue.object([("code", .string(Self.trimmed(body)))]).jsonText
            return ("", [ToolCall(id: id(0), name: "python", arguments: code)])
        }
        if start.hasPrefix("{") {
            let calls = objectCalls(JSONScanner(start), partial: partial)
            if !calls.isEmpty { return ("", calls) }
            // A JSON answer that is not a call: text, once it is clear.
            if partial, case .incomplete = JSONScanner(start).value(at: 0, final: false) { return ("", []) }
            return (String(text), [])
        }
        if partial, !start.isEmpty, tag.hasPrefix(start) { return ("", []) }
        return (String(text), [])
    }

    func parseMistral(_ text: Substring, partial: Bool) -> (String, [ToolCall]) {
        let tag = "[TOOL_CALLS]"
        guard let start = text.range(of: tag) else {
            return (partial ? String(Self.holdingBack(text, tags: [tag])) : String(text), [])
        }
        let content = String(text[..<start.lowerBound])
        var body = text[start.upperBound...].drop { $0.isWhitespace }
        if body.hasPrefix("[") {
            // [{"name": ..., "arguments": {...}, "id": ...}, ...]
            let calls = objectCalls(JSONScanner(body), from: 1, partial: partial)
            if calls.isEmpty, !partial { return (String(text), []) }
            return (content, calls)
        }
        // name[ARGS]{...} (or name[CALL_ID]id[ARGS]{...}), repeated, each maybe after another [TOOL_CALLS].
        var calls: [ToolCall] = []
        while !body.isEmpty {
            guard let args = body.range(of: "[ARGS]") else { break }
            var name = Self.trimmed(body[..<args.lowerBound])
            if let callID = name.range(of: "[CALL_ID]") { name = String(name[..<callID.lowerBound]) }
            let scanner = JSONScanner(body[args.upperBound...])
            let start = scanner.skipSpace(0)
            let value = scanner.value(at: start, final: !partial)
            let arguments: String
            var consumed: Int
            switch value {
            case .complete(let end):
                arguments = scanner.text(start..<end)
                consumed = end
            case .incomplete:
                calls.append(ToolCall(id: id(calls.count), name: name, arguments: scanner.text(start..<scanner.bytes.count)))
                return (content, calls)
            case .invalid:
                return partial ? (content, calls) : (calls.isEmpty ? String(text) : content, calls)
            }
            calls.append(ToolCall(id: id(calls.count), name: name, arguments: arguments))
            consumed = scanner.skipSpace(consumed)
            body = scanner.rest(from: consumed)
            if body.hasPrefix(tag) { body = body.dropFirst(tag.count) }
        }
        if calls.isEmpty, !partial { return (String(text), []) }
        return (content, calls)
    }

    func parseGeneric(_ text: Substring, partial: Bool) -> (String, [ToolCall]) {
        let start = text.drop { $0.isWhitespace }
        guard start.hasPrefix("{") else { return (partial && start.isEmpty ? "" : String(text), []) }
        // A cut-off object still gives what it holds (as a stream would have sent it).
        let scanner = JSONScanner(start)
        let object = scanner.members(at: 0, final: !partial)
        guard object.valid else { return (String(text), []) }
        for member in object.members {
            switch member.key {
            case "response":
                return (scanner.stringValue(member.value, complete: member.complete) ?? (partial ? "" : String(text)), [])
            case "tool_call":
                let inner = scanner.members(at: member.value.lowerBound, final: member.complete)
                guard inner.valid, let call = call(from: inner, scanner: scanner, partial: !member.complete, index: 0) else {
                    return partial ? ("", []) : (String(text), [])
                }
                return ("", [call])
            case "tool_calls":
                let calls = objectCalls(scanner, from: member.value.lowerBound + 1, partial: partial)
                if calls.isEmpty, !partial { return (String(text), []) }
                return ("", calls)
            default: continue
            }
        }
        return (partial ? "" : String(text), [])
    }

    // MARK: Calls from JSON objects

    /// The call in the JSON object at the start of `text` (after whitespace), if it is one.
    func call(fromObjectIn text: Substring, partial: Bool, index: Int) -> ToolCall? {
        let scanner = JSONScanner(text)
        let start = scanner.skipSpace(0)
        guard start < scanner.bytes.count, scanner.bytes[start] == UInt8(ascii: "{") else { return nil }
        let object = scanner.members(at: start, final: !partial)
        guard object.valid, partial || object.end != nil else { return nil }
        return call(from: object, scanner: scanner, partial: object.end == nil, index: index)
    }

    /// Calls written as JSON objects one after another from byte `start` (separated by `,`, `;`
    /// or whitespace, as in a list or Llama's `;`-joined calls); the last may be unfinished.
    func objectCalls(_ scanner: JSONScanner, from start: Int = 0, partial: Bool) -> [ToolCall] {
        var calls: [ToolCall] = []
        var i = scanner.skipSpace(start)
        while i < scanner.bytes.count, scanner.bytes[i] == UInt8(ascii: "{") {
            let object = scanner.members(at: i, final: !partial)
            guard object.valid, let call = call(from: object, scanner: scanner, partial: object.end == nil, index: calls.count) else { break }
            calls.append(call)
            guard let end = object.end else { break }
            i = scanner.skipSpace(end)
            while i < scanner.bytes.count, scanner.bytes[i] == UInt8(ascii: ";") || scanner.bytes[i] == UInt8(ascii: ",") { i = scanner.skipSpace(i + 1) }
        }
        return calls
    }

    /// A call from an object's members: `name`, and `arguments` (or Llama's `parameters`). A
    /// partial object gives a call once its name is complete, with the arguments so far; string
    /// arguments (JSON inside a string) are sent whole, once complete.
    func call(from object: JSONScanner.Object, scanner: JSONScanner, partial: Bool, index: Int) -> ToolCall? {
        guard let nameMember = object.members.first(where: { $0.key == "name" }), nameMember.complete,
              case .string(let name)? = try? JinjaValue(json: scanner.text(nameMember.value)) else { return nil }
        var arguments = partial ? "" : "{}"
        if let member = object.members.first(where: { $0.key == "arguments" || $0.key == "parameters" }) {
            let raw = scanner.text(member.value)
            if raw.hasPrefix("\"") {
                if member.complete, let inner = scanner.stringValue(member.value, complete: true) { arguments = inner }
            } else {
                arguments = raw
            }
        }
        return ToolCall(id: id(index), name: name, arguments: arguments)
    }

    // MARK: Text helpers

    /// `text` without a tail that is the beginning of one of `tags` (it may still become the tag).
    static func holdingBack(_ text: Substring, tags: [String]) -> Substring {
        var cut = text.endIndex
        for tag in tags {
            var length = min(tag.count - 1, text.count)
            while length > 0 {
                let tail = text.suffix(length)
                if tag.hasPrefix(tail) {
                    cut = min(cut, tail.startIndex)
                    break
                }
                length -= 1
            }
        }
        return text[..<cut]
    }

    static func trimmed<S: StringProtocol>(_ s: S) -> String {
        String(s.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

/// Finds where JSON values begin and end in text that may stop partway (a streamed answer), so
/// the model's own text of a value can be passed on. Well-formedness is left to the JSON parser.
struct JSONScanner {
    let bytes: [UInt8]
    let source: Substring

    init(_ text: Substring) {
        source = text
        bytes = Array(text.utf8)
    }

    enum Scan { case complete(end: Int), incomplete, invalid }

    struct Member {
        var key: String
        var value: Range<Int>
        var complete: Bool
    }

    struct Object {
        var members: [Member]
        /// Just past the closing brace, when it came.
        var end: Int?
        var valid: Bool
    }

    func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    func rest(from i: Int) -> Substring {
        let index = source.utf8.index(source.startIndex, offsetBy: i)
        return source[index...]
    }

    func skipSpace(_ from: Int) -> Int {
        var i = from
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        return i
    }

    /// The value at `start`. `final`: the text is whole (a number at its very end is complete).
    func value(at start: Int, final: Bool) -> Scan {
        var i = skipSpace(start)
        guard i < bytes.count else { return .incomplete }
        switch bytes[i] {
        case UInt8(ascii: "\""): return string(at: i)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while i < bytes.count {
                switch bytes[i] {
                case UInt8(ascii: "\""):
                    guard case .complete(let end) = string(at: i) else { return .incomplete }
                    i = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                    guard depth <= 512 else { return .invalid }
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return .complete(end: i + 1) }
                default: break
                }
                i += 1
            }
            return .incomplete
        default:
            var j = i
            while j < bytes.count, !Self.ends(bytes[j]) { j += 1 }
            if j == i { return .invalid }
            return j == bytes.count && !final ? .incomplete : .complete(end: j)
        }
    }

    static func ends(_ c: UInt8) -> Bool {
        c == UInt8(ascii: ",") || c == UInt8(ascii: "}") || c == UInt8(ascii: "]") || c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D
    }

    func string(at i: Int) -> Scan {
        var j = i + 1
        while j < bytes.count {
            if bytes[j] == UInt8(ascii: "\\") { j += 2; continue }
            if bytes[j] == UInt8(ascii: "\"") { return .complete(end: j + 1) }
            j += 1
        }
        return .incomplete
    }

    /// The members of the object at `start` (its `{`) as far as the text goes.
    func members(at start: Int, final: Bool) -> Object {
        var object = Object(members: [], end: nil, valid: true)
        guard start < bytes.count, bytes[start] == UInt8(ascii: "{") else { object.valid = false; return object }
        var i = start + 1
        while true {
            i = skipSpace(i)
            guard i < bytes.count else { return object }
            if bytes[i] == UInt8(ascii: "}") {
                object.end = i + 1
                return object
            }
            if bytes[i] == UInt8(ascii: ","), !object.members.isEmpty {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "\"") else { object.valid = false; return object }
            guard case .complete(let keyEnd) = string(at: i) else { return object }
            guard case .string(let key)? = try? JinjaValue(json: text(i..<keyEnd)) else { object.valid = false; return object }
            i = skipSpace(keyEnd)
            guard i < bytes.count else { return object }
            guard bytes[i] == UInt8(ascii: ":") else { object.valid = false; return object }
            let valueStart = skipSpace(i + 1)
            switch value(at: valueStart, final: final) {
            case .complete(let end):
                object.members.append(Member(key: key, value: valueStart..<end, complete: true))
                i = end
            case .incomplete:
                object.members.append(Member(key: key, value: valueStart..<bytes.count, complete: false))
                return object
            case .invalid:
                object.valid = false
                return object
            }
        }
    }

    /// The text of the JSON string in `range` (the whole string, or its beginning when
    /// incomplete: an escape cut off at the end is left for later).
    func stringValue(_ range: Range<Int>, complete: Bool) -> String? {
        guard range.lowerBound < bytes.count, bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        if complete {
            guard case .string(let s)? = try? JinjaValue(json: text(range)) else { return nil }
            return s
        }
        // Cut before an unfinished escape (a backslash, or \u with fewer than 4 digits).
        var cut = range.upperBound
        var j = range.lowerBound + 1
        while j < range.upperBound {
            if bytes[j] == UInt8(ascii: "\\") {
                let length = j + 1 < range.upperBound && bytes[j + 1] == UInt8(ascii: "u") ? 6 : 2
                if j + length > range.upperBound { cut = j; break }
                j += length
            } else {
                j += 1
            }
        }
        guard case .string(let s)? = try? JinjaValue(json: text(range.lowerBound..<cut) + "\"") else { return nil }
        return s
    }
}

/// Turns an answer that arrives piece by piece into the pieces OpenAI streams: text, thinking,
/// and tool calls (first their index, id and name, then argument fragments).
public struct ToolCallStream: Sendable {
    public enum Delta: Sendable, Equatable {
        case content(String)
        case reasoning(String)
        /// `id` and `name` come with a call's first delta only.
        case toolCall(index: Int, id: String?, name: String?, arguments: String)
    }

    public let parser: ToolCallParser
    public private(set) var text = ""
    private var sent = ParsedAnswer(content: "")

    public init(parser: ToolCallParser) { self.parser = parser }

    /// Adds a piece of the answer; returns what can be sent now.
    public mutating func add(_ piece: String) -> [Delta] {
        text += piece
        return deltas(to: parser.parse(text, partial: true))
    }

    /// The answer is complete: the last deltas, and the whole answer.
    public mutating func finish() -> (deltas: [Delta], answer: ParsedAnswer) {
        let answer = parser.parse(text, partial: false)
        return (deltas(to: answer), answer)
    }

    /// What `next` adds to what was sent. Parses only grow, so each part extends what went out;
    /// a part that would not (never expected) waits for the whole answer's.
    private mutating func deltas(to next: ParsedAnswer) -> [Delta] {
        var out: [Delta] = []
        if let reasoning = next.reasoning, reasoning.count > (sent.reasoning ?? "").count, reasoning.hasPrefix(sent.reasoning ?? "") {
            out.append(.reasoning(String(reasoning.dropFirst((sent.reasoning ?? "").count))))
            sent.reasoning = reasoning
        }
        if next.content.count > sent.content.count, next.content.hasPrefix(sent.content) {
            out.append(.content(String(next.content.dropFirst(sent.content.count))))
            sent.content = next.content
        }
        for (i, call) in next.toolCalls.enumerated() {
            if i == sent.toolCalls.count {
                out.append(.toolCall(index: i, id: call.id, name: call.name, arguments: call.arguments))
                sent.toolCalls.append(call)
            } else if i < sent.toolCalls.count, call.arguments.count > sent.toolCalls[i].arguments.count,
                      call.arguments.hasPrefix(sent.toolCalls[i].arguments) {
                out.append(.toolCall(index: i, id: nil, name: nil, arguments: String(call.arguments.dropFirst(sent.toolCalls[i].arguments.count))))
                sent.toolCalls[i].arguments = call.arguments
            }
        }
        return out
    }
}

/// Finds special tokens written in text (`<|im_start|>`, `<s>`, ...), longest match first.
/// Control and unknown tokens are found only when asked; user-defined tokens always, as in llama.cpp.
struct SpecialTokenMatcher: Sendable {
    enum Fragment {
        case text(Substring)
        case token(TokenID)
    }

    private struct Candidate: Sendable {
        let bytes: [UInt8]
        let id: TokenID
        let alwaysMatched: Bool
    }

    /// Candidates by first byte, longest first.
    private let byFirstByte: [[Candidate]]
    private let hasAlwaysMatched: Bool

    init(tokens: [String], types: [TokenType]) {
        var table = [[Candidate]](repeating: [], count: 256)
        var always = false
        for (i, text) in tokens.enumerated() {
            let type = types[i]
            guard type == .control || type == .userDefined || type == .unknown, !text.isEmpty else { continue }
            let bytes = Array(text.utf8)
            table[Int(bytes[0])].append(Candidate(bytes: bytes, id: TokenID(i), alwaysMatched: type == .userDefined))
            always = always || type == .userDefined
        }
        byFirstByte = table.map { $0.sorted { $0.bytes.count > $1.bytes.count } }
        hasAlwaysMatched = always
    }

    func partition(_ text: String, parseSpecial: Bool) -> [Fragment] {
        guard !text.isEmpty else { return [] }
        guard parseSpecial || hasAlwaysMatched else { return [.text(text[...])] }
        var fragments: [Fragment] = []
        let utf8 = Array(text.utf8)
        var textStart = 0
        var i = 0
        while i < utf8.count {
            var matched: Candidate?
            for candidate in byFirstByte[Int(utf8[i])] where parseSpecial || candidate.alwaysMatched {
                let end = i + candidate.bytes.count
                if end <= utf8.count, utf8[i..<end].elementsEqual(candidate.bytes) {
                    matched = candidate
                    break
                }
            }
            guard let matched else {
                i += 1
                continue
            }
            // Special tokens begin and end on character boundaries, so these slices are valid UTF-8.
            if textStart < i { fragments.append(.text(Self.substring(text, textStart, i))) }
            fragments.append(.token(matched.id))
            i += matched.bytes.count
            textStart = i
        }
        if textStart < utf8.count { fragments.append(.text(Self.substring(text, textStart, utf8.count))) }
        return fragments
    }

    private static func substring(_ text: String, _ start: Int, _ end: Int) -> Substring {
        let utf8 = text.utf8
        let from = utf8.index(utf8.startIndex, offsetBy: start)
        let to = utf8.index(from, offsetBy: end - start)
        // Through the scalars: String's own subscript rounds to Characters and would drop the
        // "\r" of a "\r\n" whose "\n" is a token of its own (Gemma's vocabulary).
        return Substring(text.unicodeScalars[from..<to])
    }
}

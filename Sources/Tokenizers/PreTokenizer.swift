/// How byte-level BPE vocabularies cut text into words before merging. Each case is the
/// regular expression a model family was trained with, matched by hand (no regex engine):
///
/// - `gpt2`:   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// - `llama3`: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// - `qwen2`:  as `llama3`, with single digits (`\p{N}`)
/// - `qwen35`: as `qwen2`, with combining marks counted as letters (`[\p{L}\p{M}]+`)
/// - `tekken`: Mistral Nemo's; as `qwen2`, but words split at case changes
///   (`[^\r\n\p{L}\p{N}]?U*L+|[^\r\n\p{L}\p{N}]?U+L*` where, as llama.cpp has it, U is a letter
///   other than a-z and L a letter other than A-Z) and `[\r\n/]*` after punctuation
/// - `deepseek-coder`, `deepseek-llm`, `falcon`: lists of patterns applied one after another,
///   each cutting the pieces the previous left (`SequentialSplitter`)
/// - `smollm`: every digit on its own (`\p{N}`), then `gpt2` on the rest (StarCoder family)
public enum PreTokenizer: String, Sendable, CaseIterable {
    case gpt2 = "gpt-2"
    case llama3 = "llama-bpe"
    case qwen2 = "qwen2"
    case qwen35 = "qwen35"
    case tekken = "tekken"
    case smollm = "smollm"
    case deepSeekCoder = "deepseek-coder"
    case deepSeekLLM = "deepseek-llm"
    case falcon = "falcon"

    /// The pre-tokenizer for a `tokenizer.ggml.pre` name as llama.cpp groups them;
    /// unknown names (and "default") get GPT-2's split, the common ancestor.
    public init(llamaCppName name: String) {
        switch name {
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2":
            self = .llama3
        case "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan":
            self = .qwen2
        case "qwen35":
            self = .qwen35
        case "tekken":
            self = .tekken
        case "deepseek-coder":
            self = .deepSeekCoder
        case "deepseek-llm":
            self = .deepSeekLLM
        case "falcon":
            self = .falcon
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
            self = .smollm
        default:
            self = .gpt2
        }
    }

    /// Splits `text` into the word ranges BPE merges within.
    func split(_ text: ClassifiedText) -> [Range<Int>] {
        var words: [Range<Int>] = []
        switch self {
        case .gpt2:
            GPT2Splitter.split(text, in: 0..<text.count, into: &words)
        case .llama3:
            Llama3Splitter.split(text, maxDigits: 3, into: &words)
        case .qwen2:
            Llama3Splitter.split(text, maxDigits: 1, into: &words)
        case .qwen35:
            Llama3Splitter.split(text, maxDigits: 1, marksAreLetters: true, into: &words)
        case .tekken:
            Llama3Splitter.split(text, maxDigits: 1, caseSplit: true, into: &words)
        case .deepSeekCoder:
            SequentialSplitter.split(text, patterns: SequentialSplitter.deepSeekCoder, into: &words)
        case .deepSeekLLM:
            SequentialSplitter.split(text, patterns: SequentialSplitter.deepSeekLLM, into: &words)
        case .falcon:
            SequentialSplitter.split(text, patterns: SequentialSplitter.falcon, into: &words)
        case .smollm:
            // Each number character stands alone; the runs between them go through GPT-2's split.
            var runStart = 0
            for i in 0..<text.count where text.classes[i].contains(.number) {
                if runStart < i { GPT2Splitter.split(text, in: runStart..<i, into: &words) }
                words.append(i..<i + 1)
                runStart = i + 1
            }
            if runStart < text.count { GPT2Splitter.split(text, in: runStart..<text.count, into: &words) }
        }
        return words
    }
}

/// Character classes the split patterns test.
struct CharacterClass: OptionSet {
    let rawValue: UInt8
    static let letter = CharacterClass(rawValue: 1)    // \p{L}
    static let number = CharacterClass(rawValue: 2)    // \p{N}
    static let space = CharacterClass(rawValue: 4)     // \s (Unicode White_Space)
    static let newline = CharacterClass(rawValue: 8)   // \r or \n
    static let mark = CharacterClass(rawValue: 16)     // \p{M}

    static func of(_ scalar: Unicode.Scalar) -> CharacterClass {
        if scalar.value < 128 { return ascii[Int(scalar.value)] }
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        case .nonspacingMark, .spacingMark, .enclosingMark:
            return .mark
        default:
            return []
        }
    }

    private static let ascii: [CharacterClass] = (0..<128).map { v in
        switch UInt8(v) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): return .letter
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        case 0x0A, 0x0D: return [.space, .newline]
        case 0x09, 0x0B, 0x0C, 0x20: return .space
        default: return []
        }
    }
}

/// Text as Unicode scalars with their classes, so the splitters look each one up only once.
struct ClassifiedText {
    let scalars: [Unicode.Scalar]
    let classes: [CharacterClass]
    var count: Int { scalars.count }

    init(_ text: Substring) {
        scalars = Array(text.unicodeScalars)
        classes = scalars.map(CharacterClass.of)
    }

    /// True for a character that is neither white space, a letter nor a number: `[^\s\p{L}\p{N}]`.
    @inline(__always) func isOther(_ i: Int) -> Bool { classes[i].isDisjoint(with: [.space, .letter, .number]) }
    @inline(__always) func isSpace(_ i: Int) -> Bool { classes[i].contains(.space) }

    /// Length of a contraction `'s 't 're 've 'm 'll 'd` starting at `i`, or 0.
    func contractionLength(at i: Int, end: Int, caseInsensitive: Bool) -> Int {
        guard scalars[i] == "'", i + 1 < end else { return 0 }
        func lower(_ k: Int) -> Unicode.Scalar {
            let s = scalars[k]
            guard caseInsensitive, s.value >= 65, s.value <= 90 else { return s }
            return Unicode.Scalar(s.value + 32)!
        }
        switch lower(i + 1) {
        case "s", "t", "m", "d": return 2
        case "r", "v":
            if i + 2 < end, lower(i + 2) == "e" { return 3 }
        case "l":
            if i + 2 < end, lower(i + 2) == "l" { return 3 }
        default: break
        }
        return 0
    }

    /// The end of the white-space run starting at `i`, matched as `\s+(?!\S)|\s+`:
    /// the run less its last character when a non-space follows and the run is longer than one.
    func whitespaceWordEnd(from i: Int, end: Int) -> Int {
        var j = i
        while j < end, isSpace(j) { j += 1 }
        if j < end, j - i > 1 { return j - 1 }
        return j
    }

    func skip(_ predicate: (Int) -> Bool, from i: Int, end: Int, limit: Int = .max) -> Int {
        var j = i
        while j < end, j - i < limit, predicate(j) { j += 1 }
        return j
    }
}

enum GPT2Splitter {
    static func split(_ t: ClassifiedText, in range: Range<Int>, into words: inout [Range<Int>]) {
        let end = range.upperBound
        var pos = range.lowerBound
        while pos < end {
            let start = pos
            let contraction = t.contractionLength(at: pos, end: end, caseInsensitive: false)
            if contraction > 0 {
                pos += contraction
            } else {
                // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional ASCII space, then a run of one class.
                let p = (t.scalars[pos] == " " && pos + 1 < end) ? pos + 1 : pos
                if t.classes[p].contains(.letter) {
                    pos = t.skip({ t.classes[$0].contains(.letter) }, from: p, end: end)
                } else if t.classes[p].contains(.number) {
                    pos = t.skip({ t.classes[$0].contains(.number) }, from: p, end: end)
                } else if t.isOther(p) {
                    pos = t.skip(t.isOther, from: p, end: end)
                } else {
                    pos = t.whitespaceWordEnd(from: pos, end: end)
                }
            }
            words.append(start..<pos)
        }
    }
}

enum Llama3Splitter {
    static func split(_ t: ClassifiedText, maxDigits: Int, marksAreLetters: Bool = false, caseSplit: Bool = false,
                      into words: inout [Range<Int>]) {
        let end = t.count
        var pos = 0
        let letterLike: CharacterClass = marksAreLetters ? [.letter, .mark] : .letter
        let isLetter = { (i: Int) in !t.classes[i].isDisjoint(with: letterLike) }
        let isOther = { (i: Int) in t.classes[i].isDisjoint(with: [.space, .number]) && t.classes[i].isDisjoint(with: letterLike) }
        while pos < end {
            let start = pos
            let here = t.classes[pos]
            let contraction = t.contractionLength(at: pos, end: end, caseInsensitive: true)
            let afterSpace = (t.scalars[pos] == " " && pos + 1 < end) ? pos + 1 : pos
            if contraction > 0 {
                pos += contraction
            } else if isLetter(pos) {
                // `\p{L}+`
                pos = caseSplit ? casedWordEnd(t, pos, end) : t.skip(isLetter, from: pos, end: end)
            } else if here.isDisjoint(with: [.newline, .number]), pos + 1 < end, isLetter(pos + 1) {
                // `[^\r\n\p{L}\p{N}]\p{L}+`: one leading non-letter (space, punctuation) glued to the word
                pos = caseSplit ? casedWordEnd(t, pos + 1, end) : t.skip(isLetter, from: pos + 1, end: end)
            } else if here.contains(.number) {
                // `\p{N}{1,3}`
                pos = t.skip({ t.classes[$0].contains(.number) }, from: pos, end: end, limit: maxDigits)
            } else if isOther(afterSpace) {
                // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
                pos = t.skip(isOther, from: afterSpace, end: end)
                pos = t.skip({ t.classes[$0].contains(.newline) || (caseSplit && t.scalars[$0] == "/") }, from: pos, end: end)
            } else {
                // `\s*[\r\n]+` ends after the last newline of the white-space run; else `\s+(?!\S)|\s+`.
                let runEnd = t.skip(t.isSpace, from: pos, end: end)
                if let lastNewline = (pos..<runEnd).last(where: { t.classes[$0].contains(.newline) }) {
                    pos = lastNewline + 1
                } else {
                    pos = t.whitespaceWordEnd(from: pos, end: end)
                }
            }
            if pos == start { pos += 1 }  // never stall, whatever the input
            words.append(start..<pos)
        }
    }

    /// The end of `U*L+` (the longest U run that still leaves an L after it, then the L run), else
    /// of `U+L*`, from the letter at `q`.
    static func casedWordEnd(_ t: ClassifiedText, _ q: Int, _ end: Int) -> Int {
        func isLetter(_ i: Int) -> Bool { t.classes[i].contains(.letter) }
        func isUpper(_ i: Int) -> Bool { isLetter(i) && !(t.scalars[i].value >= 97 && t.scalars[i].value <= 122) }
        func isLower(_ i: Int) -> Bool { isLetter(i) && !(t.scalars[i].value >= 65 && t.scalars[i].value <= 90) }
        let upperEnd = t.skip(isUpper, from: q, end: end)
        var j = upperEnd
        while j >= q {
            if j < end, isLower(j) { return t.skip(isLower, from: j, end: end) }
            j -= 1
        }
        return t.skip(isLower, from: upperEnd, end: end)
    }
}

/// llama.cpp's way with a list of patterns: each pattern cuts every piece the previous ones left
/// into its matches and the gaps between them (gaps are pieces too). Each pattern finds its
/// leftmost match from a position in linear time.
enum SequentialSplitter {
    /// A pattern's matches in one piece, left to right.
    typealias Pattern = @Sendable (_ t: ClassifiedText, _ piece: Range<Int>) -> [Range<Int>]

    static func split(_ t: ClassifiedText, patterns: [Pattern], into words: inout [Range<Int>]) {
        var pieces = t.count > 0 ? [0..<t.count] : []
        for pattern in patterns {
            var next: [Range<Int>] = []
            for piece in pieces {
                var p = piece.lowerBound
                for match in pattern(t, piece) {
                    if p < match.lowerBound { next.append(p..<match.lowerBound) }
                    next.append(match)
                    p = match.upperBound
                }
                if p < piece.upperBound { next.append(p..<piece.upperBound) }
            }
            pieces = next
        }
        words += pieces
    }

    /// Repeated leftmost search: `next(from)` gives the first match at or after `from`.
    static func matches(_ piece: Range<Int>, _ next: (Int) -> Range<Int>?) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var p = piece.lowerBound
        while p < piece.upperBound, let m = next(p), !m.isEmpty {
            out.append(m)
            p = m.upperBound
        }
        return out
    }

    /// One character of a class: `[\r\n]`, `\p{N}`.
    static func one(_ test: @escaping @Sendable (ClassifiedText, Int) -> Bool) -> Pattern {
        { t, piece in matches(piece) { from in (from..<piece.upperBound).first { test(t, $0) }.map { $0..<$0 + 1 } } }
    }

    /// A run of a class: `X+`.
    static func run(_ test: @escaping @Sendable (ClassifiedText, Int) -> Bool) -> Pattern {
        { t, piece in
            matches(piece) { from in
                guard let start = (from..<piece.upperBound).first(where: { test(t, $0) }) else { return nil }
                return start..<t.skip({ test(t, $0) }, from: start, end: piece.upperBound)
            }
        }
    }

    /// `\s?X+`: a run of a class, with the white-space character before it if there is one.
    static func spaceThenRun(_ test: @escaping @Sendable (ClassifiedText, Int) -> Bool) -> Pattern {
        { t, piece in
            matches(piece) { from in
                guard let start = (from..<piece.upperBound).first(where: { test(t, $0) }) else { return nil }
                let runEnd = t.skip({ test(t, $0) }, from: start, end: piece.upperBound)
                return (start > from && t.isSpace(start - 1) ? start - 1 : start)..<runEnd
            }
        }
    }

    /// `\s+$`: the white space that ends the piece.
    static let trailingSpace: Pattern = { t, piece in
        var start = piece.upperBound
        while start > piece.lowerBound, t.isSpace(start - 1) { start -= 1 }
        return start < piece.upperBound ? [start..<piece.upperBound] : []
    }

    /// `[0-9][0-9][0-9]`.
    static let threeDigits: Pattern = { t, piece in
        func digit(_ i: Int) -> Bool { t.scalars[i].value >= 48 && t.scalars[i].value <= 57 }
        return matches(piece) { from in
            var i = from
            while i + 2 < piece.upperBound {
                if digit(i), digit(i + 1), digit(i + 2) { return i..<i + 3 }
                i += 1
            }
            return nil
        }
    }

    /// GPT-2's pattern (`'s|…| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`) on one piece;
    /// where it matches nothing the gap is a piece, which is what GPT-2's final `\s+` gives too.
    static let gpt2: Pattern = { t, piece in
        var words: [Range<Int>] = []
        GPT2Splitter.split(t, in: piece, into: &words)
        return words
    }

    static func isNewline(_ t: ClassifiedText, _ i: Int) -> Bool { t.classes[i].contains(.newline) }
    static func isLetter(_ t: ClassifiedText, _ i: Int) -> Bool { t.classes[i].contains(.letter) }
    static func isNumber(_ t: ClassifiedText, _ i: Int) -> Bool { t.classes[i].contains(.number) }
    /// `\p{P}`: Unicode punctuation (ASCII `$+<=>^`|~` are symbols, not punctuation).
    static func isPunctuation(_ t: ClassifiedText, _ i: Int) -> Bool {
        switch t.scalars[i].properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: true
        default: false
        }
    }
    /// `[一-龥ࠀ-一가-퟿]`: the CJK and Hangul ranges DeepSeek's tokenizer groups.
    static func isCJK(_ t: ClassifiedText, _ i: Int) -> Bool {
        let v = t.scalars[i].value
        return (0x800...0x9FA5).contains(v) || (0xAC00...0xD7FF).contains(v)
    }

    /// DeepSeek LLM's letters: Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee and other
    /// cased scripts (its tokenizer's explicit list).
    static let deepSeekLetters: [ClosedRange<UInt32>] = [
        0x41...0x5A, 0x61...0x7A, 0xB5...0xB5, 0xC0...0xD6, 0xD8...0xF6, 0xF8...0x1BA, 0x1BC...0x1BF, 0x1C4...0x293,
        0x295...0x2AF, 0x370...0x373, 0x376...0x377, 0x37B...0x37D, 0x37F...0x37F, 0x386...0x386, 0x388...0x38A,
        0x38C...0x38C, 0x38E...0x3A1, 0x3A3...0x3F5, 0x3F7...0x481, 0x48A...0x52F, 0x531...0x556, 0x10A0...0x10C5,
        0x13A0...0x13F5, 0x13F8...0x13FD, 0x1C90...0x1CBA, 0x1CBD...0x1CBF, 0x1D00...0x1D2B, 0x1D6B...0x1D77,
        0x1D79...0x1D9A, 0x1E00...0x1F15, 0x1F18...0x1F1D, 0x1F20...0x1F45, 0x1F48...0x1F4D, 0x1F50...0x1F57,
        0x1F59...0x1F59, 0x1F5B...0x1F5B, 0x1F5D...0x1F5D, 0x1F5F...0x1F7D, 0x1F80...0x1FB4, 0x1FB6...0x1FBC,
        0x1FBE...0x1FBE, 0x1FC2...0x1FC4, 0x1FC6...0x1FCC, 0x1FD0...0x1FD3, 0x1FD6...0x1FDB, 0x1FE0...0x1FEC,
        0x1FF2...0x1FF4, 0x1FF6...0x1FFC, 0x2102...0x2102, 0x2107...0x2107, 0x210A...0x2113, 0x2115...0x2115,
        0x2119...0x211D, 0x2124...0x2124, 0x2126...0x2126, 0x2128...0x2128, 0x212A...0x212D, 0x212F...0x2134,
        0x2139...0x2139, 0x213C...0x213F, 0x2145...0x2149, 0x214E...0x214E, 0x2183...0x2184, 0x2C00...0x2C7B,
        0x2C7E...0x2CE4, 0x2CEB...0x2CEE, 0x2CF2...0x2CF3, 0xA640...0xA66D, 0xA680...0xA69B, 0xA722...0xA76F,
        0xA771...0xA787, 0xA78B...0xA78E, 0xAB70...0xABBF, 0xFB00...0xFB06, 0xFB13...0xFB17, 0xFF21...0xFF3A,
        0xFF41...0xFF5A, 0x10400...0x1044F, 0x104B0...0x104D3, 0x104D8...0x104FB, 0x10C80...0x10CB2,
        0x10CC0...0x10CF2, 0x118A0...0x118DF, 0x1E900...0x1E943,
    ]
    /// DeepSeek LLM's punctuation: ASCII and full-width punctuation and symbols, curly quotes,
    /// ideographic space and full stops.
    static let deepSeekPunctuation: [ClosedRange<UInt32>] = [
        0x21...0x2F, 0x3A...0x7E, 0xFF01...0xFF0F, 0xFF1A...0xFF5E, 0x2018...0x201F, 0x3000...0x3002,
    ]
    static func inRanges(_ ranges: [ClosedRange<UInt32>]) -> @Sendable (ClassifiedText, Int) -> Bool {
        { t, i in let v = t.scalars[i].value; return ranges.contains { $0.contains(v) } }
    }

    static let deepSeekCoder: [Pattern] = [
        one(isNewline), spaceThenRun(isLetter), spaceThenRun(isPunctuation), run(isCJK), one(isNumber),
    ]
    static let deepSeekLLM: [Pattern] = [
        one(isNewline), spaceThenRun(inRanges(deepSeekLetters)), spaceThenRun(inRanges(deepSeekPunctuation)),
        trailingSpace, run(isCJK), run(isNumber),
    ]
    static let falcon: [Pattern] = [
        run { t, i in isPunctuation(t, i) || "$+<=>^~|`".unicodeScalars.contains(t.scalars[i]) },
        gpt2, threeDigits,
    ]
}

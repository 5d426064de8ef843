/// How byte-level BPE vocabularies cut text into words before merging. Each case is the
/// regular expression a model family was trained with, matched by hand (no regex engine):
///
/// - `gpt2`:   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// - `llama3`: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// - `qwen2`:  as `llama3`, with single digits (`\p{N}`)
/// - `smollm`: every digit on its own (`\p{N}`), then `gpt2` on the rest (StarCoder family)
public enum PreTokenizer: String, Sendable, CaseIterable {
    case gpt2 = "gpt-2"
    case llama3 = "llama-bpe"
    case qwen2 = "qwen2"
    case smollm = "smollm"

    /// The pre-tokenizer for a `tokenizer.ggml.pre` name as llama.cpp groups them;
    /// unknown names (and "default") get GPT-2's split, the common ancestor.
    public init(llamaCppName name: String) {
        switch name {
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2":
            self = .llama3
        case "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan":
            self = .qwen2
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

    static func of(_ scalar: Unicode.Scalar) -> CharacterClass {
        if scalar.value < 128 { return ascii[Int(scalar.value)] }
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
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
    static func split(_ t: ClassifiedText, maxDigits: Int, into words: inout [Range<Int>]) {
        let end = t.count
        var pos = 0
        while pos < end {
            let start = pos
            let here = t.classes[pos]
            let contraction = t.contractionLength(at: pos, end: end, caseInsensitive: true)
            let afterSpace = (t.scalars[pos] == " " && pos + 1 < end) ? pos + 1 : pos
            if contraction > 0 {
                pos += contraction
            } else if here.contains(.letter) {
                // `\p{L}+`
                pos = t.skip({ t.classes[$0].contains(.letter) }, from: pos, end: end)
            } else if here.isDisjoint(with: [.newline, .number]), pos + 1 < end, t.classes[pos + 1].contains(.letter) {
                // `[^\r\n\p{L}\p{N}]\p{L}+`: one leading non-letter (space, punctuation) glued to the word
                pos = t.skip({ t.classes[$0].contains(.letter) }, from: pos + 1, end: end)
            } else if here.contains(.number) {
                // `\p{N}{1,3}`
                pos = t.skip({ t.classes[$0].contains(.number) }, from: pos, end: end, limit: maxDigits)
            } else if t.isOther(afterSpace) {
                // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
                pos = t.skip(t.isOther, from: afterSpace, end: end)
                pos = t.skip({ t.classes[$0].contains(.newline) }, from: pos, end: end)
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
}

/// Turns tokens into text one at a time, as a generator produces them. A token that ends in the
/// middle of a UTF-8 character yields nothing until the character is complete, so a stream never
/// shows half an emoji as replacement characters.
public struct StreamingDecoder: Sendable {
    public let tokenizer: Tokenizer
    public let renderSpecial: Bool
    /// Control tokens whose text is written even without `renderSpecial`.
    public let kept: Set<TokenID>
    private var pending: [UInt8] = []
    /// SentencePiece vocabularies put a space before the text; it is dropped at the start.
    private var dropLeadingSpace: Bool

    public init(tokenizer: Tokenizer, renderSpecial: Bool = false, kept: Set<TokenID> = [], atStartOfText: Bool = true) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
        self.kept = kept
        self.dropLeadingSpace = atStartOfText && tokenizer.definition.model == .sentencePiece && tokenizer.definition.addSpacePrefix
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    public mutating func append(_ token: TokenID) -> String {
        var bytes = tokenizer.pieceBytes(token, renderSpecial: renderSpecial || kept.contains(token))
        if dropLeadingSpace, !bytes.isEmpty {
            if bytes[0] == UInt8(ascii: " "), tokenizer.tokenType(token) != .control { bytes.removeFirst() }
            dropLeadingSpace = false
        }
        pending.append(contentsOf: bytes)
        let cut = StreamingDecoder.completePrefixLength(pending)
        guard cut > 0 else { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Whatever is still held back (an incomplete character at the very end shows as U+FFFD).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// The length of the longest prefix that does not end inside an unfinished UTF-8 character.
    public static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var i = bytes.count - 1
        // Look back over at most three continuation bytes for the lead byte of the last character.
        while i >= 0, bytes.count - i <= 4 {
            let b = bytes[i]
            if b & 0xC0 != 0x80 {
                let needed: Int
                switch b {
                case 0xC2...0xDF: needed = 2
                case 0xE0...0xEF: needed = 3
                case 0xF0...0xF4: needed = 4
                default: needed = 1   // ASCII, or a byte that can never start a character
                }
                return bytes.count - i < needed ? i : bytes.count
            }
            i -= 1
        }
        return bytes.count
    }
}

/// Text to token ids and back, for SentencePiece-style and byte-level BPE vocabularies.
/// Immutable after construction, so one instance serves any number of threads.
public final class Tokenizer: Sendable {
    public let definition: TokenizerDefinition
    public var vocabularySize: Int { definition.tokens.count }
    public var bos: TokenID? { definition.bos }
    public var eos: TokenID? { definition.eos }

    /// Token text -> id, byte-exact (for byte-level vocabularies, the text in GPT-2's byte alphabet).
    private let ids: TokenTable
    private let types: [TokenType]
    /// Bytes each token decodes to as ordinary text.
    private let pieces: [[UInt8]]
    /// The token for each single byte (SentencePiece `<0xXX>` or the byte-level character).
    private let byteTokens: [TokenID]
    /// Byte-level BPE: (left id << 32 | right id) -> (rank, merged id).
    private let merges: [UInt64: (rank: Int32, merged: TokenID)]
    private let specials: SpecialTokenMatcher

    public init(_ definition: TokenizerDefinition) throws(TokenizerError) {
        self.definition = definition
        let n = definition.tokens.count
        guard n > 0 else { throw TokenizerError("the vocabulary is empty") }
        guard definition.scores.isEmpty || definition.scores.count == n else {
            throw TokenizerError("\(definition.scores.count) scores for \(n) tokens")
        }
        guard definition.types.isEmpty || definition.types.count == n else {
            throw TokenizerError("\(definition.types.count) token types for \(n) tokens")
        }
        for (name, id) in [("BOS", definition.bos), ("EOS", definition.eos), ("unknown", definition.unknown)] {
            if let id, id < 0 || Int(id) >= n { throw TokenizerError("\(name) token id \(id) is outside the vocabulary of \(n)") }
        }
        let types = definition.types.isEmpty ? [TokenType](repeating: .normal, count: n) : definition.types
        self.types = types

        let ids = TokenTable(tokens: definition.tokens)

        var byteTokens = [TokenID](repeating: -1, count: 256)
        var pieces: [[UInt8]] = []
        pieces.reserveCapacity(n)
        var merges: [UInt64: (rank: Int32, merged: TokenID)] = [:]
        switch definition.model {
        case .sentencePiece:
            for (i, text) in definition.tokens.enumerated() {
                if types[i] == .byte, let b = Tokenizer.parseByteToken(text) {
                    byteTokens[Int(b)] = TokenID(i)
                    pieces.append([b])
                } else {
                    pieces.append(Array(text.replacingSpaceMarker().utf8))
                }
            }
        case .byteLevelBPE(let mergeLines, _):
            for b in 0..<256 {
                byteTokens[b] = ids.id(String(ByteLevel.byteToScalar[b])) ?? -1
            }
            for text in definition.tokens {
                pieces.append(ByteLevel.decode(text) ?? Array(text.utf8))
            }
            merges.reserveCapacity(mergeLines.count)
            var joined: [UInt8] = []
            for (rank, line) in mergeLines.enumerated() {
                // "left right": two tokens separated by one space (tokens never contain a plain space).
                let bytes = Array(line.utf8)
                guard let space = bytes.dropFirst().firstIndex(of: UInt8(ascii: " ")) else {
                    throw TokenizerError("merge \(rank) '\(line)' is not two tokens separated by a space")
                }
                joined.removeAll(keepingCapacity: true)
                joined.append(contentsOf: bytes[..<space])
                joined.append(contentsOf: bytes[(space + 1)...])
                guard let l = ids.id(bytes[..<space]), let r = ids.id(bytes[(space + 1)...]),
                      let m = ids.id(joined[...]) else { continue }
                let key = UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
                if merges[key] == nil { merges[key] = (Int32(rank), m) }
            }
        }
        self.ids = ids
        self.pieces = pieces
        self.byteTokens = byteTokens
        self.merges = merges
        self.specials = SpecialTokenMatcher(tokens: definition.tokens, types: types)
    }

    // MARK: Encoding

    /// Token ids for `text`.
    /// - Parameters:
    ///   - addSpecial: add BOS/EOS where the vocabulary asks for them.
    ///   - parseSpecial: recognise control tokens such as `<|im_start|>` or `<s>` written in the text;
    ///     otherwise they are encoded as ordinary text. User-defined tokens are always recognised.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) -> [TokenID] {
        var output: [TokenID] = []
        if addSpecial, definition.addBOS, let bos = definition.bos { output.append(bos) }
        var state = EncoderState()
        var previousWasSpecial = true
        for fragment in specials.partition(text, parseSpecial: parseSpecial) {
            switch fragment {
            case .token(let id):
                output.append(id)
                previousWasSpecial = true
            case .text(let piece):
                switch definition.model {
                case .sentencePiece:
                    // The dummy prefix goes before the first text and before text that follows a special token.
                    let prefixed = definition.addSpacePrefix && previousWasSpecial ? " " + piece : String(piece)
                    encodeSentencePiece(prefixed, state: &state, into: &output)
                case .byteLevelBPE(_, let pre):
                    let classified = ClassifiedText(piece)
                    for word in pre.split(classified) {
                        var bytes: [UInt8] = []
                        for scalar in classified.scalars[word] { bytes.append(contentsOf: UTF8.encode(scalar)!) }
                        encodeByteLevelWord(bytes, state: &state, into: &output)
                    }
                }
                previousWasSpecial = false
            }
        }
        if addSpecial, definition.addEOS, let eos = definition.eos { output.append(eos) }
        return output
    }

    /// Scratch space reused across the words of one `encode` call.
    private struct EncoderState {
        var queue = MergeQueue()
        var cache: [[UInt8]: [TokenID]] = [:]
    }

    private func encodeSentencePiece(_ text: String, state: inout EncoderState, into output: inout [TokenID]) {
        let bytes = Array(text.replacingSpaces().utf8)
        var queue = state.queue
        queue.reset()
        var i = 0
        while i < bytes.count {
            let length = min(Tokenizer.utf8Length(lead: bytes[i]), bytes.count - i)
            queue.append(start: i, length: length, id: lookup(bytes[i..<i + length]) ?? -1)
            i += length
        }
        let scores = definition.scores
        queue.run { left, right in
            guard let id = self.lookup(bytes[left.start..<right.start + right.length]) else { return nil }
            return (scores.isEmpty ? 0 : -scores[Int(id)], id)
        }
        queue.forEachSymbol { symbol in
            if symbol.id >= 0 {
                output.append(symbol.id)
                return
            }
            // A character the vocabulary lacks: one byte token per UTF-8 byte, or <unk>.
            for b in bytes[symbol.start..<symbol.start + symbol.length] {
                let id = byteTokens[Int(b)]
                if id >= 0 {
                    output.append(id)
                } else if let unknown = definition.unknown {
                    output.append(unknown)
                }
            }
        }
        state.queue = queue
    }

    private func encodeByteLevelWord(_ word: [UInt8], state: inout EncoderState, into output: inout [TokenID]) {
        if let cached = state.cache[word] {
            output.append(contentsOf: cached)
            return
        }
        var result: [TokenID] = []
        if definition.ignoreMerges, let whole = ids.id(ByteLevel.encode(word)) {
            result = [whole]
        } else {
            var queue = state.queue
            queue.reset()
            for (i, b) in word.enumerated() { queue.append(start: i, length: 1, id: byteTokens[Int(b)]) }
            let merges = self.merges
            queue.run { left, right in
                guard left.id >= 0, right.id >= 0 else { return nil }
                let key = UInt64(UInt32(bitPattern: left.id)) << 32 | UInt64(UInt32(bitPattern: right.id))
                guard let merge = merges[key] else { return nil }
                return (Float(merge.rank), merge.merged)
            }
            queue.forEachSymbol { symbol in
                if symbol.id >= 0 {
                    result.append(symbol.id)
                } else if let unknown = definition.unknown {
                    result.append(unknown)
                }
            }
            state.queue = queue
        }
        if state.cache.count < 100_000 { state.cache[word] = result }
        output.append(contentsOf: result)
    }

    private func lookup(_ bytes: ArraySlice<UInt8>) -> TokenID? {
        ids.id(bytes)
    }

    // MARK: Decoding

    /// The text of `tokens`. Control tokens are left out unless `renderSpecial`; for SentencePiece
    /// vocabularies the dummy-prefix space at the very start is removed, so
    /// `decode(encode(s)) == s`.
    public func decode(_ tokens: [TokenID], renderSpecial: Bool = false) -> String {
        var decoder = StreamingDecoder(tokenizer: self, renderSpecial: renderSpecial)
        var text = ""
        for token in tokens { text += decoder.append(token) }
        return text + decoder.finish()
    }

    /// The bytes one token stands for. Out-of-range ids give no bytes.
    public func pieceBytes(_ token: TokenID, renderSpecial: Bool = false) -> [UInt8] {
        guard token >= 0, Int(token) < pieces.count else { return [] }
        switch types[Int(token)] {
        case .normal, .undefined, .byte, .userDefined:
            return pieces[Int(token)]
        case .control:
            return renderSpecial ? Array(definition.tokens[Int(token)].utf8) : []
        case .unknown:
            // llama.cpp shows an unknown token as "▅" unless asked for the special text.
            return renderSpecial ? Array(definition.tokens[Int(token)].utf8) : Array("\u{2585}".utf8)
        case .unused:
            return []
        }
    }

    /// The vocabulary's stored text of a token.
    public func tokenText(_ token: TokenID) -> String? {
        guard token >= 0, Int(token) < definition.tokens.count else { return nil }
        return definition.tokens[Int(token)]
    }

    public func tokenType(_ token: TokenID) -> TokenType? {
        guard token >= 0, Int(token) < types.count else { return nil }
        return types[Int(token)]
    }

    /// The id of a token given its stored text.
    public func tokenID(_ text: String) -> TokenID? { ids.id(text) }

    // MARK: Helpers

    static func utf8Length(lead: UInt8) -> Int {
        switch lead {
        case 0xF0...: 4
        case 0xE0...: 3
        case 0xC0...: 2
        default: 1
        }
    }

    /// `<0x0A>` -> 0x0A.
    static func parseByteToken(_ text: String) -> UInt8? {
        let u = Array(text.utf8)
        guard u.count == 6, text.hasPrefix("<0x"), u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }
}

extension StringProtocol {
    /// SentencePiece writes spaces as U+2581 LOWER ONE EIGHTH BLOCK.
    func replacingSpaces() -> String {
        String(String.UnicodeScalarView(unicodeScalars.map { $0 == " " ? "\u{2581}" : $0 }))
    }

    func replacingSpaceMarker() -> String {
        String(String.UnicodeScalarView(unicodeScalars.map { $0 == "\u{2581}" ? " " : $0 }))
    }
}

import Foundation

extension TokenizerDefinition {
    /// Reads llama2.c's `tokenizer.bin` / `tok512.bin` export: an int32 maximum token length, then
    /// for every token a float32 score, an int32 byte length and the bytes. The export writes
    /// SentencePiece's U+2581 as a plain space and BOS/EOS as "\n<s>\n"/"\n</s>\n"; both are undone
    /// here so the result is the same SentencePiece tokenizer a GGUF file gives.
    public static func llama2c(contentsOf path: String) throws(TokenizerError) -> TokenizerDefinition {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError("\(path): cannot read llama2.c tokenizer file")
        }
        return try llama2c(bytes: [UInt8](data), path: path)
    }

    public static func llama2c(bytes: [UInt8], path: String = "tokenizer.bin") throws(TokenizerError) -> TokenizerDefinition {
        var offset = 0
        func readInt32(_ what: String) throws(TokenizerError) -> Int32 {
            guard offset + 4 <= bytes.count else {
                throw TokenizerError("\(path): at byte \(offset): file is truncated while reading \(what)")
            }
            let value = bytes.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: Int32.self)) }
            offset += 4
            return value
        }
        let maxLength = try readInt32("the maximum token length")
        guard maxLength > 0 else { throw TokenizerError("\(path): maximum token length \(maxLength) is not positive") }
        var tokens: [String] = []
        var scores: [Float] = []
        var types: [TokenType] = []
        while offset < bytes.count {
            let id = tokens.count
            let score = Float(bitPattern: UInt32(bitPattern: try readInt32("the score of token \(id)")))
            let lengthOffset = offset
            let length = Int(try readInt32("the length of token \(id)"))
            guard length >= 0, length <= Int(maxLength), offset + length <= bytes.count else {
                throw TokenizerError("\(path): at byte \(lengthOffset): token \(id) has length \(length), beyond the file or the declared maximum \(maxLength)")
            }
            var text = String(decoding: bytes[offset..<offset + length], as: UTF8.self)
            offset += length
            let type: TokenType
            switch id {
            case 0: type = .unknown; text = "<unk>"
            case 1: type = .control; text = "<s>"
            case 2: type = .control; text = "</s>"
            default:
                if Tokenizer.parseByteToken(text) != nil {
                    type = .byte
                } else {
                    type = .normal
                    text = String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == " " ? "\u{2581}" : $0 }))
                }
            }
            tokens.append(text)
            scores.append(score)
            types.append(type)
        }
        guard tokens.count > 3 else { throw TokenizerError("\(path): holds only \(tokens.count) tokens") }
        return TokenizerDefinition(model: .sentencePiece, tokens: tokens, scores: scores, types: types,
                                   bos: 1, eos: 2, unknown: 0, addBOS: true, addSpacePrefix: true)
    }
}

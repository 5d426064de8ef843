/// A token id, as llama.cpp numbers them.
public typealias TokenID = Int32

/// What a vocabulary entry is, with llama.cpp's numbering (`tokenizer.ggml.token_type`).
public enum TokenType: Int32, Sendable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// Everything needed to build a tokenizer, independent of the file it came from.
public struct TokenizerDefinition: Sendable {
    public enum Model: Sendable, Equatable {
        /// SentencePiece-style BPE (llama.cpp `llama`): merges chosen by token score, byte fallback.
        case sentencePiece
        /// Byte-level BPE (llama.cpp `gpt2`): ranked merges after a pre-tokenizer split.
        case byteLevelBPE(merges: [String], preTokenizer: PreTokenizer)
    }

    public var model: Model
    public var tokens: [String]
    /// Scores per token (SentencePiece); empty when the vocabulary has none.
    public var scores: [Float]
    /// Types per token; empty means every token is normal.
    public var types: [TokenType]
    public var bos: TokenID?
    public var eos: TokenID?
    public var unknown: TokenID?
    public var addBOS: Bool
    public var addEOS: Bool
    /// Prefix the text with a space before SentencePiece encoding (the "dummy prefix").
    public var addSpacePrefix: Bool
    /// Byte-level BPE: a word that is itself a token is taken whole, without merging (Llama 3).
    public var ignoreMerges: Bool

    public init(model: Model, tokens: [String], scores: [Float] = [], types: [TokenType] = [],
                bos: TokenID? = nil, eos: TokenID? = nil, unknown: TokenID? = nil,
                addBOS: Bool? = nil, addEOS: Bool = false, addSpacePrefix: Bool? = nil, ignoreMerges: Bool? = nil) {
        self.model = model
        self.tokens = tokens
        self.scores = scores
        self.types = types
        self.bos = bos
        self.eos = eos
        self.unknown = unknown
        // llama.cpp's defaults: SentencePiece vocabularies add BOS and the dummy prefix;
        // byte-level ones add BOS only for Llama 3 and Tekken style pre-tokenization, which also
        // take a word that is a token as it is, without merging.
        switch model {
        case .sentencePiece:
            self.addBOS = addBOS ?? true
            self.addSpacePrefix = addSpacePrefix ?? true
            self.ignoreMerges = ignoreMerges ?? false
        case .byteLevelBPE(_, let pre):
            self.addBOS = addBOS ?? (pre == .llama3 || pre == .tekken)
            self.addSpacePrefix = addSpacePrefix ?? false
            self.ignoreMerges = ignoreMerges ?? (pre == .llama3 || pre == .tekken)
        }
        self.addEOS = addEOS
    }

    /// A short human description, e.g. "byte-level BPE (pre-tokenizer smollm)".
    public var kindDescription: String {
        switch model {
        case .sentencePiece: "SentencePiece BPE"
        case .byteLevelBPE(_, let pre): "byte-level BPE (pre-tokenizer \(pre.rawValue))"
        }
    }
}

public struct TokenizerError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

import GGUF
import Tokenizers

extension TokenizerDefinition {
    /// The tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    public init(gguf file: GGUFFile) throws(TokenizerError) {
        func fail(_ message: String) -> TokenizerError { TokenizerError("\(file.path): \(message)") }
        guard let modelName = file.string("tokenizer.ggml.model") else {
            throw fail("no tokenizer in this file (tokenizer.ggml.model is missing)")
        }
        guard let tokens = file.array("tokenizer.ggml.tokens")?.stringValues else {
            throw fail("tokenizer.ggml.tokens is missing or not an array of strings")
        }
        let model: Model
        switch modelName {
        case "llama":
            model = .sentencePiece
        case "gpt2":
            guard let merges = file.array("tokenizer.ggml.merges")?.stringValues else {
                throw fail("byte-level BPE vocabulary without tokenizer.ggml.merges")
            }
            model = .byteLevelBPE(merges: merges, preTokenizer: PreTokenizer(llamaCppName: file.string("tokenizer.ggml.pre") ?? "default"))
        default:
            throw fail("tokenizer model '\(modelName)' is not supported (supported: 'llama' SentencePiece BPE, 'gpt2' byte-level BPE)")
        }
        let scores = file.array("tokenizer.ggml.scores")?.floatValues ?? []
        let types = (file.array("tokenizer.ggml.token_type")?.intValues ?? []).map { TokenType(rawValue: Int32(clamping: $0)) ?? .normal }

        /// Special token ids; llama.cpp writes -1 (as uint32 0xFFFFFFFF) for "none".
        func id(_ key: String) -> TokenID? {
            guard let value = file.int(key), value >= 0, value < tokens.count else { return nil }
            return TokenID(value)
        }
        self.init(model: model, tokens: tokens, scores: scores, types: types,
                  bos: id("tokenizer.ggml.bos_token_id"), eos: id("tokenizer.ggml.eos_token_id"),
                  unknown: id("tokenizer.ggml.unknown_token_id"),
                  addBOS: file.bool("tokenizer.ggml.add_bos_token"),
                  addEOS: file.bool("tokenizer.ggml.add_eos_token") ?? false,
                  addSpacePrefix: file.bool("tokenizer.ggml.add_space_prefix"))
    }
}

extension Tokenizer {
    /// Loads the tokenizer of a GGUF file (a full model or a vocabulary-only file).
    public convenience init(gguf file: GGUFFile) throws(TokenizerError) {
        try self.init(TokenizerDefinition(gguf: file))
    }
}

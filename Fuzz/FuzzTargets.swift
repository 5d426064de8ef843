import Foundation
import GGUF
import HubNames
import Jinja
import Llama
import LlamaAPI
import Tokenizers

/// Fuzz targets for the parsers that read untrusted input, in one executable.
///
/// Built with libFuzzer (`Scripts/fuzz TARGET SECONDS`, which passes `-sanitize=fuzzer,address`
/// and `-D FUZZING`), the target comes from $LLAMA_FUZZ_TARGET. Built plainly, it replays files:
/// `llama-fuzz TARGET FILE_OR_DIRECTORY...` runs the target on each (regression corpora in CI).
enum FuzzTargets {
    static let names = ["gguf", "tokenizer-spm", "tokenizer-bpe", "jinja", "grammar", "json-schema", "json", "request", "tool-calls", "hub"]

    static func run(_ target: String, _ data: [UInt8]) {
        switch target {
        case "gguf": gguf(data)
        case "tokenizer-spm": tokenizer(spm, data, roundTrip: false)
        case "tokenizer-bpe": tokenizer(bpe, data, roundTrip: true)
        case "jinja": jinja(data)
        case "grammar": grammar(String(decoding: data, as: UTF8.self))
        case "json-schema": jsonSchema(data)
        case "json": json(data)
        case "request": request(data)
        case "tool-calls": toolCalls(String(decoding: data, as: UTF8.self))
        case "hub": hub(String(decoding: data, as: UTF8.self))
        default:
            FileHandle.standardError.write(Data("unknown fuzz target '\(target)'; one of: \(names.joined(separator: ", "))\n".utf8))
            exit(2)
        }
    }

    static let fixtures = ProcessInfo.processInfo.environment["LLAMA_FIXTURES"] ?? "../shared/fixtures"
    static let scratch = NSTemporaryDirectory() + "llama-fuzz-\(getpid()).gguf"

    /// The GGUF reader, then the tokenizer and model loaders on whatever it accepts.
    static func gguf(_ data: [UInt8]) {
        guard FileManager.default.createFile(atPath: scratch, contents: Data(data)) else { return }
        guard let file = try? GGUFFile(path: scratch) else { return }
        _ = try? Tokenizer(gguf: file)
        _ = try? LlamaConfiguration(gguf: file)
        _ = try? LlamaModel.load(gguf: file)
    }

    static let spm: Tokenizer = try! Tokenizer(gguf: GGUFFile(path: fixtures + "/llamacpp-vocab/ggml-vocab-llama-spm.gguf"))
    static let bpe: Tokenizer = try! Tokenizer(gguf: GGUFFile(path: fixtures + "/llamacpp-vocab/ggml-vocab-llama-bpe.gguf"))

    /// Encode (plain and with special tokens), decode, streaming decode; byte-level BPE must
    /// give back exactly the text.
    static func tokenizer(_ tokenizer: Tokenizer, _ data: [UInt8], roundTrip: Bool) {
        let text = String(decoding: data, as: UTF8.self)
        let plain = tokenizer.encode(text, addSpecial: false, parseSpecial: false)
        _ = tokenizer.encode(text, addSpecial: true, parseSpecial: true)
        let back = tokenizer.decode(plain)
        if roundTrip, back != text {
            fatalError("round trip changed the text: \(Array(text.utf8)) -> \(Array(back.utf8))")
        }
        // Token ids from the raw bytes, in and out of range, through the decoder.
        var ids: [TokenID] = []
        for pair in stride(from: 0, to: data.count - 1, by: 2) { ids.append(TokenID(data[pair]) << 8 | TokenID(data[pair + 1])) }
        _ = tokenizer.decode(ids.filter { $0 < tokenizer.vocabularySize }, renderSpecial: true)
    }

    /// The first line is JSON variables (messages and the like) when it parses; the rest the template.
    static func jinja(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        guard let template = try? Template(text) else { return }
        var limits = Template.Limits()
        limits.maxSteps = 200_000
        limits.timeLimit = .seconds(2)
        let messages: JinjaValue = [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi {{ there }}"],
                                    ["role": "assistant", "content": "Hello!"], ["role": "user", "content": "Bye"]]
        _ = try? template.render(["messages": messages, "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>",
                                  "tools": [["type": "function", "function": ["name": "f", "parameters": ["type": "object"]]]]],
                                 now: 0, limits: limits)
    }

    /// Parse, then walk a matcher over the text's own bytes.
    static func grammar(_ source: String) {
        guard let grammar = try? Grammar(source) else { return }
        let matcher = GrammarMatcher(grammar, workBudget: 100_000)
        for piece in ["a", "{", "\"", "1", " ", "é", "\u{1F600}", "}"] {
            matcher.beginToken()
            if matcher.allows(bytes: Array(piece.utf8), isEndOfText: false) { matcher.accept(bytes: Array(piece.utf8)) }
        }
        _ = matcher.canEnd
    }

    static func jsonSchema(_ data: [UInt8]) {
        guard let schema = try? JinjaValue(json: String(decoding: data, as: UTF8.self)) else { return }
        guard let source = try? JSONGrammar.grammar(schema: schema) else { return }
        grammar(source)
    }

    /// Parse, write, parse again: the same value.
    static func json(_ data: [UInt8]) {
        guard let value = try? JinjaValue(json: String(decoding: data, as: UTF8.self)) else { return }
        let text = value.jsonText
        guard let again = try? JinjaValue(json: text) else { fatalError("our own JSON does not parse: \(text)") }
        if again.jsonText != text { fatalError("JSON changed on a second round: \(text)") }
    }

    static func request(_ data: [UInt8]) {
        _ = try? RequestDecoding.decodeAll(body: String(decoding: data, as: UTF8.self), tokenizer: bpe, vocabularySize: bpe.vocabularySize)
    }

    /// A model's answer in every tool-call format, whole and streamed in pieces of 3 characters;
    /// the stream's answer must be the whole one.
    static func toolCalls(_ text: String) {
        for format in ToolCallFormat.allCases {
            for startsInReasoning in [false, true] {
                let parser = ToolCallParser(format: format, startsInReasoning: startsInReasoning, idPrefix: format == .mistral ? "abcde" : "call_")
                let whole = parser.parse(text)
                var stream = ToolCallStream(parser: parser)
                var i = text.startIndex
                while i < text.endIndex {
                    let j = text.index(i, offsetBy: 3, limitedBy: text.endIndex) ?? text.endIndex
                    _ = stream.add(String(text[i..<j]))
                    i = j
                }
                if stream.finish().answer != whole { fatalError("\(format): the streamed answer differs from the whole one") }
            }
        }
    }
}

extension FuzzTargets {
    /// What a user or a hub hands the hub client: a model reference (the first line), a Link
    /// header (the second), and a listing's file paths (every line). A reference that parses must
    /// print back to one that parses the same; a chosen model's files are all safe listed paths.
    static func hub(_ text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let reference = try? HubReference(parsing: lines[0]) {
            guard let again = try? HubReference(parsing: reference.description), again == reference else {
                fatalError("'\(lines[0])' parsed, but its description '\(reference.description)' does not parse the same")
            }
        }
        if lines.count > 1 { _ = HubListing.nextPage(lines[1], base: "http://127.0.0.1:1/api/models/u/r/tree/main") }
        let safe = lines.filter { HubListing.isSafe(path: $0) }
        let candidates = FileChoice.candidates(safe)
        for candidate in candidates where !candidate.files.allSatisfy(safe.contains) { fatalError("a candidate names a file not listed: \(candidate)") }
        _ = try? FileChoice.choose(candidates, quant: lines.first, repo: "u/r")
        _ = try? FileChoice.choose(candidates, quant: nil, repo: "u/r")
    }
}

/// Small seed files that no registry ships: a whole model of a few kilobytes for the GGUF target.
enum Seeds {
    static func write(_ target: String, into directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard target == "gguf" else { return }
        for (name, bpe) in [("tiny-spm.gguf", false), ("tiny-bpe.gguf", true)] {
            try tinyModel(bpe: bpe).write(to: directory + "/" + name)
        }
    }

    /// A Llama model with 8-wide embeddings, one block and a 12-token vocabulary, all F32.
    static func tinyModel(bpe: Bool) throws -> GGUFWriter {
        var w = GGUFWriter()
        let (dim, ff, heads, vocab) = (8, 16, 2, 12)
        w.set("general.architecture", .string("llama"))
        w.set("llama.context_length", .uint32(64))
        w.set("llama.embedding_length", .uint32(UInt32(dim)))
        w.set("llama.block_count", .uint32(1))
        w.set("llama.feed_forward_length", .uint32(UInt32(ff)))
        w.set("llama.attention.head_count", .uint32(UInt32(heads)))
        w.set("llama.attention.head_count_kv", .uint32(1))
        w.set("llama.rope.dimension_count", .uint32(4))
        w.set("llama.rope.freq_base", .float32(10_000))
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        let pieces = bpe ? ["<s>", "</s>", "a", "b", "Ġ", "Ġa", "ab", "c", "Ċ", "d", "e", "f"]
                         : ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "<0x0A>", "c", "d", "e"]
        w.set("tokenizer.ggml.model", .string(bpe ? "gpt2" : "llama"))
        w.set("tokenizer.ggml.tokens", .array(.string(pieces)))
        w.set("tokenizer.ggml.scores", .array(.float32(pieces.indices.map { -Float($0) })))
        w.set("tokenizer.ggml.token_type", .array(.int32(pieces.map { $0.hasPrefix("<") && $0.count > 2 && !$0.hasPrefix("<0x") ? 3 : 1 })))
        if bpe { w.set("tokenizer.ggml.merges", .array(.string(["Ġ a", "a b"]))) }
        w.set("tokenizer.ggml.bos_token_id", .uint32(bpe ? 0 : 1))
        w.set("tokenizer.ggml.eos_token_id", .uint32(bpe ? 1 : 2))
        w.set("tokenizer.chat_template", .string("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"))
        func tensor(_ name: String, _ shape: [Int]) throws {
            let count = shape.reduce(1, *)
            let floats = (0..<count).map { Float(($0 * 7919) % 17) / 17 - 0.5 }
            try w.addTensor(name: name, shape: shape, type: .f32, data: floats.withUnsafeBytes { Array($0) })
        }
        try tensor("token_embd.weight", [dim, vocab])
        try tensor("output_norm.weight", [dim])
        let kv = dim / heads
        for (name, shape) in [("attn_norm", [dim]), ("attn_q", [dim, dim]), ("attn_k", [dim, kv]), ("attn_v", [dim, kv]),
                              ("attn_output", [dim, dim]), ("ffn_norm", [dim]), ("ffn_gate", [dim, ff]), ("ffn_up", [dim, ff]),
                              ("ffn_down", [ff, dim])] {
            try tensor("blk.0.\(name).weight", shape)
        }
        return w
    }
}

#if FUZZING
nonisolated(unsafe) var fuzzTarget = ""

/// libFuzzer's entry for a program with a main of its own (SwiftPM gives executables theirs).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// What libFuzzer's own entry would call (its archive still refers to it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
    FuzzTargets.run(fuzzTarget, data)
    return 0
}

@main struct Fuzz {
    static func main() {
        fuzzTarget = ProcessInfo.processInfo.environment["LLAMA_FUZZ_TARGET"] ?? ""
        guard FuzzTargets.names.contains(fuzzTarget) else {
            print("set LLAMA_FUZZ_TARGET to one of: \(FuzzTargets.names.joined(separator: ", "))")
            exit(2)
        }
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv) { start, count in fuzzOneInput(start, count) })
    }
}
#else
@main struct Replay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "seeds", arguments.count == 3 {
            do {
                try Seeds.write(arguments[arguments.startIndex + 1], into: arguments[arguments.startIndex + 2])
            } catch {
                print("error: \(error)")
                exit(1)
            }
            return
        }
        guard let target = arguments.first else {
            print("usage: llama-fuzz TARGET FILE_OR_DIRECTORY...   (targets: \(FuzzTargets.names.joined(separator: ", ")))")
            print("       llama-fuzz seeds TARGET DIRECTORY           (writes generated seed files)")
            exit(2)
        }
        var count = 0
        for path in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                FuzzTargets.run(target, Array(data))
                count += 1
            }
        }
        print("\(target): \(count) inputs replayed, no crash")
    }
}
#endif

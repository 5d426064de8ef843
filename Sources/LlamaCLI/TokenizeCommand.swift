import ArgumentParser
import Foundation
import Llama

struct TokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Show the token ids a model's tokenizer gives for a text (as llama.cpp's llama-tokenize).",
        discussion: """
            The text comes from -p, -f or standard input. Each token prints as `id -> 'piece'`; \
            --ids prints only the list of ids.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: [.short, .customLong("prompt")], help: "The text to tokenize.")
    var prompt: String?

    @Option(name: [.short, .customLong("file")], help: ArgumentHelp("Read the text from a file.", valueName: "file"))
    var file: String?

    @Flag(help: "Read the text from standard input.")
    var stdin = false

    @Flag(help: "Print only the ids, as a bracketed list: [15043, 3186].")
    var ids = false

    @Flag(name: .customLong("no-bos"), help: "Do not add the BOS token, even where the vocabulary asks for it.")
    var noBOS = false

    @Flag(name: .customLong("parse-special"), help: "Recognise special tokens written in the text, such as <|im_start|> or <s>.")
    var parseSpecial = false

    @Flag(name: .customLong("show-count"), help: "Print the number of tokens at the end.")
    var showCount = false

    @Flag(help: ArgumentHelp(
        "Tokenize many texts with one model load: each input line is a JSON string, each output line a JSON list of ids.",
        discussion: "The input comes from -f or standard input."))
    var jsonl = false

    func validate() throws {
        let sources = [prompt != nil, file != nil, stdin].filter { $0 }.count
        if sources > 1 { throw ValidationError("give the text one way only: -p, -f or --stdin") }
        if jsonl, prompt != nil { throw ValidationError("--jsonl reads its texts from -f or standard input, not -p") }
    }

    func run() async throws {
        let text = try readText()
        let gguf = try await modelOptions.open()
        let tokenizer = try Tokenizer(gguf: gguf)
        if jsonl { return try runJSONLines(text, tokenizer) }
        let tokens = tokenizer.encode(text, addSpecial: !noBOS, parseSpecial: parseSpecial)
        var out = ""
        if ids {
            out = "[" + tokens.map(String.init).joined(separator: ", ") + "]\n"
        } else {
            for token in tokens {
                let id = String(token)
                out += String(repeating: " ", count: max(0, 6 - id.count)) + id + " -> '"
                    + TokenizeCommand.printable(tokenizer.pieceBytes(token, renderSpecial: true)) + "'\n"
            }
        }
        if showCount { out += "Total number of tokens: \(tokens.count)\n" }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    private func runJSONLines(_ input: String, _ tokenizer: Tokenizer) throws {
        var out = ""
        for (number, line) in input.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            guard let text = try? JSONDecoder().decode(String.self, from: Data(line.utf8)) else {
                throw CLIError("input line \(number + 1) is not a JSON string")
            }
            let tokens = tokenizer.encode(text, addSpecial: !noBOS, parseSpecial: parseSpecial)
            out += "[" + tokens.map(String.init).joined(separator: ", ") + "]\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    private func readText() throws -> String {
        if let prompt { return prompt }
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CLIError("cannot read '\(file)'")
            }
            return String(decoding: data, as: UTF8.self)
        }
        if stdin || isatty(STDIN_FILENO) == 0 {
            return String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }
        throw ValidationError("no text given: use -p TEXT, -f FILE or --stdin")
    }

    /// A piece as text; bytes that are not complete UTF-8 on their own (one part of a character
    /// split across tokens) show as \xNN.
    static func printable(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        return bytes.map { $0 < 0x80 && $0 >= 0x20 ? String(UnicodeScalar($0)) : String(format: "\\x%02X", $0) }.joined()
    }
}

import Foundation
import Llama

/// Where the shared test data lives: `$LLAMA_FIXTURES`, default `../shared/fixtures` beside the project.
enum Fixtures {
    static let root: String = {
        if let path = ProcessInfo.processInfo.environment["LLAMA_FIXTURES"], !path.isEmpty { return path }
        let projectRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return projectRoot.appendingPathComponent("../shared/fixtures").standardizedFileURL.path
    }()

    static func path(_ relative: String) -> String { root + "/" + relative }

    static func text(_ relative: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path(relative)) else {
            throw FixtureError("missing fixture \(path(relative)); set LLAMA_FIXTURES to the shared fixtures folder")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The 47 test strings of llama.cpp's tokenizer tests.
    static func vocabInputs(_ name: String = "ggml-vocab-llama-spm") throws -> [String] {
        try text("llamacpp-vocab/\(name).gguf.inp").components(separatedBy: "\n__ggml_vocab_test__\n")
    }

    /// One expected id list per line, for `count` inputs. The file's final newline ends the
    /// last line; the last input is the empty string, whose line is empty.
    static func expectedIDs(_ relative: String, count: Int) throws -> [[TokenID]] {
        var lines = try text(relative).components(separatedBy: "\n")
        while lines.count > count, lines.last == "" { lines.removeLast() }
        return lines.map { line in line.split(separator: " ").map { TokenID($0)! } }
    }

    static func tokenizer(gguf relative: String) throws -> Tokenizer {
        try Tokenizer(gguf: GGUFFile(path: path(relative)))
    }

    /// The default model (fetched with pip on first use).
    static func defaultModel() throws -> GGUFFile {
        try GGUFFile(path: DefaultModel.locate())
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import Llama

/// Where the test data lives: `$LLAMA_FIXTURES`, default the folder `Scripts/fetch_fixtures.py`
/// builds from PyPI, `fixtures` in the model cache (`$LLAMA_CACHE`, default `~/.cache/swift-llama`).
public enum Fixtures {
    public static let root: String = {
        if let path = ProcessInfo.processInfo.environment["LLAMA_FIXTURES"], !path.isEmpty { return path }
        return DefaultModel.cacheDirectory + "/fixtures"
    }()

    /// The package folder (three levels above this file).
    public static let projectRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().standardizedFileURL.path

    public static func path(_ relative: String) -> String { root + "/" + relative }

    public static func text(_ relative: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path(relative)) else {
            throw FixtureError("missing fixture \(path(relative)); run python3 Scripts/fetch_fixtures.py, or set LLAMA_FIXTURES to its folder")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The 47 test strings of llama.cpp's tokenizer tests.
    public static func vocabInputs(_ name: String = "ggml-vocab-llama-spm") throws -> [String] {
        try text("llamacpp-vocab/\(name).gguf.inp").components(separatedBy: "\n__ggml_vocab_test__\n")
    }

    /// One expected id list per line, for `count` inputs. The file's final newline ends the
    /// last line; the last input is the empty string, whose line is empty.
    public static func expectedIDs(_ relative: String, count: Int) throws -> [[TokenID]] {
        var lines = try text(relative).components(separatedBy: "\n")
        while lines.count > count, lines.last == "" { lines.removeLast() }
        return lines.map { line in line.split(separator: " ").map { TokenID($0)! } }
    }

    public static func tokenizer(gguf relative: String) throws -> Tokenizer {
        try Tokenizer(gguf: GGUFFile(path: path(relative)))
    }

    /// The default model (fetched with pip on first use).
    public static func defaultModel() throws -> GGUFFile {
        try GGUFFile(path: DefaultModel.locate())
    }
}

/// What a float32 port of llama2.c's run.c prints and computes with tiny260K
/// (`tiny260K/vectors.json`, written by Scripts/make_tiny_llama2c.py).
public struct Tiny260KVectors: Decodable, Sendable {
    public struct Expected: Decodable, Sendable { public let text: String }
    public struct Encoding: Decodable, Sendable { public let text: String; public let ids: [TokenID] }
    /// run.c's stdout for 200 greedy steps from BOS, its final newline stripped.
    public let llama2c_test_all_expected_stdout: Expected
    public let prompt: String
    public let promptIds: [TokenID]
    /// The 200 greedy tokens after `prompt`.
    public let genLong: [TokenID]
    /// run.c's encode() of a few texts, BOS first.
    public let encodeVectors: [Encoding]

    public static func load() throws -> Tiny260KVectors {
        try JSONDecoder().decode(Self.self, from: Data(Fixtures.text("tiny260K/vectors.json").utf8))
    }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Scratch files for one test process, under the system temporary folder.
public enum TemporaryFile {
    public static let directory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-llama-tests-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    public static func path(_ name: String) -> String { directory + "/" + name }

    public static func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// What a grammar accepts, as the matcher that constrains sampling sees it.
public enum GrammarCheck {
    /// Whether the whole of `text` is a sentence of `grammar`, fed one character at a time
    /// (and also split at arbitrary byte boundaries, as tokens split text).
    public static func accepts(_ grammar: String, _ text: String) throws -> Bool {
        let matcher = GrammarMatcher(try Grammar(grammar))
        for c in text.unicodeScalars {
            let bytes = Array(String(c).utf8)
            guard matcher.allows(bytes: bytes, isEndOfText: false) else { return false }
            matcher.accept(bytes: bytes)
        }
        let byBytes = GrammarMatcher(try Grammar(grammar))
        for b in Array(text.utf8) {
            guard byBytes.allows(bytes: [b], isEndOfText: false) else { return false }
            byBytes.accept(bytes: [b])
        }
        return matcher.canEnd && byBytes.canEnd
    }
}

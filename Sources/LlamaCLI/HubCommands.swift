import ArgumentParser
import Foundation
import LlamaHub

/// The hub, as the commands use it: settings from the environment, messages on stderr.
enum HubModels {
    static func hub(offline: Bool) -> Hub {
        Hub(settings: HubSettings(offline: offline)) { message in Console.error(message) }
    }

    /// `-hf user/repo[:QUANT]` as a local path, fetched first when it is not cached.
    static func pull(_ text: String, offline: Bool) async throws -> PulledModel {
        do {
            return try await hub(offline: offline).pull(HubReference(parsing: text))
        } catch let error as HubError {
            throw CLIError(error.description)
        }
    }
}

struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Download a GGUF model from Hugging Face into the hub's cache.",
        discussion: """
            Names a model as llama.cpp's -hf does: user/repo, or user/repo:QUANT to pick a quantization \
            (Q4_K_M, else Q8_0, else the first GGUF file when none is named). A split model comes with all \
            its shards. Files go into the hub's cache, in huggingface_hub's layout, so what huggingface_hub or \
            llama.cpp already fetched is found and not fetched again: $LLAMA_CACHE, else $HF_HUB_CACHE, else \
            $HF_HOME/hub, else ~/.cache/huggingface/hub.

            Downloads resume where they stopped (after a dropped connection or an interrupted run), retry \
            with backoff, and are checked against the hub's SHA-256 before they are used.

            Environment: HF_TOKEN (gated or private models), HF_ENDPOINT (another hub or a mirror), \
            HF_HUB_OFFLINE=1 (as --offline). Prints the model's path; use it with -m, or pass -hf to any command.
            """
    )

    @Argument(help: ArgumentHelp("The model: user/repo[:QUANT], for example bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M.", valueName: "user/repo[:quant]"))
    var model: String

    @Flag(help: "Only look in the cache; never touch the network.")
    var offline = false

    func run() async throws {
        let pulled = try await HubModels.pull(model, offline: offline)
        for file in pulled.files { print(pulled.snapshot + "/" + file) }
    }
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the GGUF models in the hub's cache.",
        discussion: "Shows what `llama pull`, `-hf`, huggingface_hub and llama.cpp fetched into the cache ($LLAMA_CACHE, $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)."
    )

    @Flag(help: "Print the full path of each model instead of the table.")
    var paths = false

    func run() async throws {
        let cache = HubCache()
        let models = cache.models()
        if paths {
            for model in models { print(model.path) }
            return
        }
        guard !models.isEmpty else {
            print("No models in \(cache.root). Fetch one with: llama pull user/repo[:QUANT]")
            return
        }
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        let rows = [["MODEL", "QUANT", "ARCH", "SIZE", "LAST USED", "FILE"]] + models.map { model in
            [model.repo, model.quant?.uppercased() ?? "-", model.architecture ?? "?", Self.size(model.bytes),
             model.lastUsed.map(formatter.string(from:)) ?? "-",
             model.files.count > 1 ? "\(model.files[0]) (+\(model.files.count - 1) shards)" : model.files[0]]
        }
        let widths = (0..<6).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { column, cell in
                column == 5 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
    }

    static func size(_ bytes: Int64) -> String {
        bytes >= 1_000_000_000 ? String(format: "%.1f GB", Double(bytes) / 1e9) : String(format: "%.0f MB", Double(bytes) / 1e6)
    }
}

struct RemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove a model from the hub's cache.",
        discussion: "user/repo removes the whole repository; user/repo:QUANT only that quantization's files (and their blobs, where nothing else links to them)."
    )

    @Argument(help: ArgumentHelp("The model: user/repo or user/repo:QUANT.", valueName: "user/repo[:quant]"))
    var model: String

    func run() async throws {
        let cache = HubCache()
        do {
            let reference = try HubReference(parsing: model)
            let held = cache.models().filter { $0.repo == reference.repo }
            guard !held.isEmpty || cache.repositories().contains(reference.repo) else {
                throw HubError.notFound("\(reference.repo) is not in the cache (\(cache.root)); `llama ls` lists what is")
            }
            guard let quant = reference.quant else {
                try cache.removeRepository(reference.repo)
                print("Removed \(reference.repo)")
                return
            }
            let matching = held.filter { $0.quant?.uppercased() == quant.uppercased() }
            guard !matching.isEmpty else {
                let have = held.compactMap { $0.quant?.uppercased() }
                throw HubError.notFound("\(reference.repo) has no \(quant.uppercased()) in the cache; it holds: \(have.isEmpty ? "no quantized files" : have.joined(separator: ", "))")
            }
            try cache.remove(reference.repo, paths: matching.flatMap(\.files))
            for model in matching { print("Removed \(reference.repo) \(model.files.joined(separator: ", "))") }
        } catch let error as HubError {
            throw CLIError(error.description)
        }
    }
}

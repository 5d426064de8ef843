import ArgumentParser
import Foundation
import Hummingbird
import Llama
import LlamaAPI
import LlamaHub
import LlamaServer
import Logging
import NIOCore
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over an OpenAI-compatible HTTP API, many requests at once.",
        discussion: """
            Endpoints: POST /v1/chat/completions, /v1/completions (both stream with "stream": true), \
            /v1/embeddings, /tokenize, /detokenize; GET /v1/models, /health, /metrics (Prometheus). \
            Any OpenAI client works: point its base URL at http://HOST:PORT/v1.

            --parallel slots generate together: each step evaluates one token of every busy slot in a \
            single batch, and new requests join between steps. -c is the context of all slots together \
            (as llama-server), split evenly. A slot keeps its last prompt, so a conversation's next turn \
            only evaluates what is new. When every slot is busy and --queue requests wait, more get 503 \
            with Retry-After. Ctrl-C (or SIGTERM) lets running requests finish, then stops.

            Ollama's API is served too (/api/chat, /api/generate, /api/embed, /api/tags, /api/show, /api/ps, \
            /api/pull from the hub, /api/delete), so Ollama's clients work with OLLAMA_HOST=http://HOST:PORT.

            Several models: give -m or -hf more than once, or --models-dir (a folder of GGUF files, or the hub's \
            cache). A request's "model" picks one by its repo (user/repo, repo), repo with quant (user/repo:Q4_K_M), \
            file name or --alias; requests that name none get the first. The first loads at start, the others \
            when first asked for (requests to loaded models go on meanwhile). --idle-unload and --max-loaded \
            unload them again; a request's keep_alive (Ollama's) overrides --idle-unload for its model.

            Example: curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
            -d '{"messages": [{"role": "user", "content": "Hello"}]}'
            """)

    @Option(name: [.short, .customLong("model")],
            help: ArgumentHelp("A GGUF model file (of a split model: any shard); repeat for more models. Default: SmolLM2-135M-Instruct, fetched once with pip.", valueName: "file"))
    var models: [String] = []

    @Option(name: [.customLong("hf", withSingleDash: true), .customLong("hf-repo")],
            help: ArgumentHelp("A model on Hugging Face, fetched into the hub's cache when missing; repeat for more models (see `llama pull --help`).", valueName: "user/repo[:quant]"))
    var hf: [String] = []

    @Option(name: .customLong("models-dir"), help: ArgumentHelp("Serve every GGUF model in this folder (a hub cache: every model in it, by repo name).", valueName: "dir"))
    var modelsDir: String?

    @Flag(help: "With -hf: use the cached copies only, never the network (also HF_HUB_OFFLINE=1). /api/pull then fails.")
    var offline = false

    @Option(name: .customLong("max-loaded"), help: ArgumentHelp("Most models loaded at once (as Ollama's default, 3); loading another unloads the least recently used idle one.", valueName: "n"))
    var maxLoaded = 3

    @Option(name: .customLong("idle-unload"), help: ArgumentHelp("Unload a model after this long without requests (Ollama's default keep_alive). Default: never.", valueName: "seconds"))
    var idleUnload: Int?
    @OptionGroup var runOptions: RunOptions

    @Option(help: "Address to listen on (0.0.0.0 for every interface).")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 8080

    @Option(name: [.customLong("parallel"), .customLong("np", withSingleDash: true)], help: "Requests generated at the same time (slots).")
    var parallel = 4

    @Option(help: "Requests that may wait for a free slot; more are answered 503.")
    var queue = 64

    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' on every route but /health. Default: $LLAMA_API_KEY, else none.")
    var apiKey: String?

    @Option(help: "The first model's name in the API. Default: the file name without .gguf (user/repo:QUANT for -hf).")
    var alias: String?

    @Option(name: .customLong("max-body"), help: ArgumentHelp("Largest request body accepted, in bytes; larger ones get 413.", valueName: "bytes"))
    var maxBody = 8 << 20

    @Option(name: .customLong("chat-template-file"), help: ArgumentHelp("Use the Jinja chat template in this file instead of the model's.", valueName: "file"))
    var chatTemplateFile: String?

    @Option(help: ArgumentHelp("Longest a request may take, generation included; 0 for no limit. Past it the request ends with 504.", valueName: "seconds"))
    var timeout: Int = 600

    @Option(name: .customLong("idle-timeout"), help: ArgumentHelp("Close a connection after this long with nothing sent either way.", valueName: "seconds"))
    var idleTimeout: Int = 60

    @Option(name: .customLong("drain-timeout"), help: ArgumentHelp("On SIGTERM: /health answers 503 \"draining\", new requests get 503, and running ones get this long to finish before the server stops.", valueName: "seconds"))
    var drainTimeout = 5

    @Option(name: .customLong("reasoning-budget"), help: ArgumentHelp("Most tokens a reasoning model may think (<think>...</think>) before its thinking is closed for it; 0 asks the template not to think, -1 is no limit.", valueName: "tokens"))
    var reasoningBudget: Int = -1

    func validate() throws {
        if parallel < 1 { throw ValidationError("--parallel must be at least 1") }
        if queue < 0 { throw ValidationError("--queue cannot be negative") }
        if timeout < 0 { throw ValidationError("--timeout cannot be negative (0 means no limit)") }
        if idleTimeout < 1 { throw ValidationError("--idle-timeout must be at least 1 second") }
        if reasoningBudget < -1 { throw ValidationError("--reasoning-budget must be -1 (no limit), 0 (no thinking) or a number of tokens") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be between 0 and 65535") }
        if drainTimeout < 0 { throw ValidationError("--drain-timeout cannot be negative") }
        if maxLoaded < 1 { throw ValidationError("--max-loaded must be at least 1") }
        if let idleUnload, idleUnload < 0 { throw ValidationError("--idle-unload cannot be negative") }
    }

    /// The server's configuration, and its models in a registry (none loaded yet).
    func makeRegistry(_ served: [ServedModel]) throws -> (ModelRegistry, ServerConfiguration) {
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.slots = parallel
        configuration.contextSize = runOptions.contextSize
        configuration.threads = runOptions.threads ?? SystemInfo.physicalCores
        configuration.kvCache = runOptions.cache.types
        configuration.queueLimit = queue
        configuration.apiKey = apiKey ?? ProcessInfo.processInfo.environment["LLAMA_API_KEY"]
        configuration.maxBodyBytes = maxBody
        configuration.requestTimeout = timeout == 0 ? nil : .seconds(timeout)
        if let chatTemplateFile {
            let source: String
            do {
                source = try String(contentsOfFile: chatTemplateFile, encoding: .utf8)
            } catch {
                throw CLIError("cannot read the chat template \(chatTemplateFile): \(error.localizedDescription)")
            }
            do {
                configuration.chatTemplate = try ChatTemplate(jinja: source)
            } catch {
                throw CLIError("the chat template \(chatTemplateFile) does not parse: \(error)")
            }
        }
        configuration.idleTimeout = .seconds(idleTimeout)
        configuration.reasoningBudget = reasoningBudget < 0 ? nil : reasoningBudget
        let limits = ModelRegistry.Limits(maxLoaded: maxLoaded, idleUnload: idleUnload.map { .seconds($0) })
        let tokenizer = runOptions.tokenizer, cache = runOptions.cache
        let registry = ModelRegistry(models: served, configuration: configuration, limits: limits) { path in
            let model = try LlamaModel.load(path: path, tokenizer: tokenizer)
            _ = try cache.checked(model)
            return model
        }
        return (registry, configuration)
    }

    /// What `llama serve` prints once its first model is loaded (nothing is kept of the model:
    /// its memory must go when it unloads).
    func noteReady(_ engine: InferenceEngine, models: Int) {
        let model = engine.model, slotContext = engine.scheduler.contextSize
        runOptions.noteContext(model, sequences: parallel)
        if let asked = runOptions.contextSize, asked / parallel < 16 {
            Console.error("note: -c \(asked) over \(parallel) slots is less than 16 positions each; each slot holds \(slotContext)")
        }
        Console.error(CacheTypeOptions.summary(model, engine.scheduler.kvCache, bytes: engine.scheduler.kvCacheBytes,
                                               contextSize: slotContext, sequences: parallel))
        let others = models > 1 ? " (and \(models - 1) more model\(models == 2 ? "" : "s") on demand)" : ""
        Console.error("ready: \(engine.modelID)\(others), \(parallel) slot\(parallel == 1 ? "" : "s") of \(slotContext) tokens")
    }

    /// The models to serve, in order: -m files, -hf models (fetched now when missing), the folder's.
    func servedModels() async throws -> [ServedModel] {
        var served: [ServedModel] = []
        for path in models {
            guard FileManager.default.fileExists(atPath: path) else {
                throw CLIError("model file '\(path)' does not exist. Check the path, or leave out -m to use the default model.")
            }
            served.append(ServedModel(path: path))
        }
        for name in hf {
            let pulled = try await HubModels.pull(name, offline: offline)
            served.append(HubSource.served(repo: pulled.repo, quant: pulled.quant, path: pulled.path))
        }
        if let modelsDir { served += try HubSource.folder(modelsDir) }
        if served.isEmpty { served = [ServedModel(path: try DefaultModel.locate { message in Console.error(message) })] }
        if let alias { served[0] = ServedModel(path: served[0].path, names: [alias] + served[0].names) }
        return served
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let served = try await servedModels()
        let (registry, configuration) = try makeRegistry(served)
        // The first model named with -m or -hf (or the default) loads at start, so that a mistake
        // shows at once; a folder's models all load when asked for.
        let preload = !models.isEmpty || !hf.isEmpty || modelsDir == nil
        let (host, parallel, threads, keyed) = (host, parallel, configuration.threads, configuration.apiKey != nil)
        let app = buildApplication(models: registry, configuration: configuration, hub: offline ? nil : HubSource()) { port in
            Console.error("listening at http://\(host):\(port)/v1 (OpenAI) and /api (Ollama), \(threads) threads, \(parallel) slot\(parallel == 1 ? "" : "s") per model"
                          + (keyed ? ", API key required" : "") + (preload ? "; loading \(served[0].id)" : "; \(served.count) models load on demand"))
        }
        let lifecycle = ServerLifecycle(models: registry, preload: preload, drainTimeout: .seconds(drainTimeout)) { [self] engine in
            if let engine { noteReady(engine, models: served.count) }
        }
        // On SIGTERM or Ctrl-C the lifecycle drains first, then the server stops (finishing what
        // is left), then the models unload.
        var groupConfiguration = ServiceGroupConfiguration(services: [registry, app, lifecycle], gracefulShutdownSignals: [.sigterm, .sigint],
                                                           logger: Logger(label: "llama.serve"))
        // Past the drain, requests get a second more; then they are cancelled, and the
        // process ends even if some work does not notice.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(drainTimeout + 1)
        groupConfiguration.maximumCancellationDuration = .seconds(2)
        let group = ServiceGroup(configuration: groupConfiguration)
        do {
            try await group.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE || error.errnoCode == EACCES {
            throw CLIError(error.errnoCode == EADDRINUSE
                ? "port \(port) on \(host) is already in use (another server?); choose another with --port, or stop the other program"
                : "not allowed to listen on \(host):\(port); ports below 1024 need privileges, so choose another with --port")
        }
    }
}

/// The hub as the server's source of models: /api/pull fetches into the hub's cache, /api/delete
/// removes from it, and a hub cache given as --models-dir is served by repo names.
struct HubSource: ModelSource {
    /// A hub model's names: user/repo:QUANT (its id), user/repo, repo:QUANT, repo, then the file's.
    static func served(repo: String, quant: String?, path: String) -> ServedModel {
        let short = String(repo.split(separator: "/").last ?? Substring(repo))
        let names = quant.map { q in [repo + ":" + q.uppercased(), repo, short + ":" + q.uppercased(), short] } ?? [repo, short]
        return ServedModel(path: path, names: names)
    }

    /// The models of a folder: a hub cache's by repo, else its GGUF files (the first shard of a
    /// split model), a few levels deep.
    static func folder(_ path: String) throws -> [ServedModel] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
            throw CLIError("--models-dir \(path) is not a folder")
        }
        let cache = HubCache(root: path)
        if !cache.repositories().isEmpty {
            return cache.models().map { served(repo: $0.repo, quant: $0.quant, path: $0.path) }
        }
        let root = URL(fileURLWithPath: path)
        var found: [ServedModel] = []
        let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil, options: [.skipsHiddenFiles])
        while let url = walker?.nextObject() as? URL {
            if walker!.level > 3 { walker!.skipDescendants() }
            let name = url.lastPathComponent
            guard name.lowercased().hasSuffix(".gguf") else { continue }
            if let split = FileChoice.Split(name), split.index != 1 { continue }
            found.append(ServedModel(path: url.path))
            guard found.count < 10_000 else { break }
        }
        guard !found.isEmpty else { throw CLIError("--models-dir \(path) holds no .gguf files") }
        return found.sorted { $0.path < $1.path }
    }

    func pull(_ name: String, progress: @escaping @Sendable (PullProgress) -> Void) async throws -> ServedModel {
        do {
            let hub = Hub(settings: HubSettings(), log: { Console.error($0) }) { file in
                progress(PullProgress(digest: file.digest, total: file.total, completed: file.completed))
            }
            let pulled = try await hub.pull(HubReference(parsing: name))  // hf.co/user/repo:QUANT too, as Ollama names them
            return Self.served(repo: pulled.repo, quant: pulled.quant, path: pulled.path)
        } catch let error as HubError {
            if case .notFound = error { throw APIError(.notFound, error.description) }
            throw APIError(.badRequest, error.description)
        }
    }

    func delete(_ model: ServedModel) throws -> Bool {
        let cache = HubCache()
        guard let held = cache.models().first(where: { $0.path == model.path }) else { return false }
        do {
            try cache.remove(held.repo, paths: held.files)
        } catch {
            throw APIError(.internalServerError, error.description, type: "server_error")
        }
        return true
    }
}

import ArgumentParser
import Foundation
import Hummingbird
import Llama
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

            Example: curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
            -d '{"messages": [{"role": "user", "content": "Hello"}]}'
            """)

    @OptionGroup var modelOptions: ModelOptions
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

    @Option(help: "The model's name in the API. Default: the file name without .gguf.")
    var alias: String?

    @Option(name: .customLong("max-body"), help: ArgumentHelp("Largest request body accepted, in bytes; larger ones get 413.", valueName: "bytes"))
    var maxBody = 8 << 20

    @Option(name: .customLong("chat-template-file"), help: ArgumentHelp("Use the Jinja chat template in this file instead of the model's.", valueName: "file"))
    var chatTemplateFile: String?

    @Option(help: ArgumentHelp("Longest a request may take, generation included; 0 for no limit. Past it the request ends with 504.", valueName: "seconds"))
    var timeout: Int = 600

    @Option(name: .customLong("idle-timeout"), help: ArgumentHelp("Close a connection after this long with nothing sent either way.", valueName: "seconds"))
    var idleTimeout: Int = 60

    @Option(name: .customLong("reasoning-budget"), help: ArgumentHelp("Most tokens a reasoning model may think (<think>...</think>) before its thinking is closed for it; 0 asks the template not to think, -1 is no limit.", valueName: "tokens"))
    var reasoningBudget: Int = -1

    func validate() throws {
        if parallel < 1 { throw ValidationError("--parallel must be at least 1") }
        if queue < 0 { throw ValidationError("--queue cannot be negative") }
        if timeout < 0 { throw ValidationError("--timeout cannot be negative (0 means no limit)") }
        if idleTimeout < 1 { throw ValidationError("--idle-timeout must be at least 1 second") }
        if reasoningBudget < -1 { throw ValidationError("--reasoning-budget must be -1 (no limit), 0 (no thinking) or a number of tokens") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be between 0 and 65535") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let model = try await runOptions.loadModel(modelOptions)
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.slots = parallel
        configuration.contextSize = runOptions.contextSize
        configuration.threads = runOptions.threads ?? SystemInfo.physicalCores
        configuration.kvCache = try runOptions.cache.checked(model)
        configuration.queueLimit = queue
        configuration.apiKey = apiKey ?? ProcessInfo.processInfo.environment["LLAMA_API_KEY"]
        configuration.modelAlias = alias
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
        if runOptions.contextSize == nil { runOptions.noteContext(model, sequences: parallel) }
        let engine = makeEngine(model: model, configuration: configuration)
        let slotContext = engine.scheduler.contextSize
        if let asked = runOptions.contextSize, asked / parallel < 16 {
            Console.error("note: -c \(asked) over \(parallel) slots is less than 16 positions each; each slot holds \(slotContext)")
        }
        Console.error(CacheTypeOptions.summary(model, engine.scheduler.kvCache, bytes: engine.scheduler.kvCacheBytes,
                                               contextSize: slotContext, sequences: parallel))
        let app = buildApplication(engine: engine, configuration: configuration) { [host, configuration] port in
            Console.error("serving \(engine.modelID) at http://\(host):\(port)/v1 — \(parallel) slot\(parallel == 1 ? "" : "s") of \(slotContext) tokens, \(configuration.threads) threads\(configuration.apiKey == nil ? "" : ", API key required")")
        }
        // The server stops first (finishing its requests), then the engine.
        var groupConfiguration = ServiceGroupConfiguration(services: [engine, app], gracefulShutdownSignals: [.sigterm, .sigint],
                                                           logger: Logger(label: "llama.serve"))
        // Requests get a few seconds to finish; then they are cancelled, and the process ends
        // even if some work does not notice.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(5)
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

import Foundation
import Hummingbird
import Llama
import LlamaAPI
import Logging
import NIOCore

/// How `llama serve` runs: where it listens, how many generations at once, and limits.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var port = 8080
    /// Generations that run at the same time (llama-server's --parallel).
    public var slots = 4
    /// Positions of all slots together, split evenly among them as llama-server does; nil means
    /// the model's training context.
    public var contextSize: Int?
    public var threads = SystemInfo.physicalCores
    public var batchSize = 512
    public var kvCache = LlamaContext.KVCacheTypes.f16
    /// Requests that may wait for a slot; more get 503 with Retry-After.
    public var queueLimit = 64
    /// When set, every route but /health wants `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// Larger request bodies get 413.
    public var maxBodyBytes = 8 << 20
    /// The model's name in the API; nil means the file name without .gguf.
    public var modelAlias: String?
    /// Replaces the model's chat template (llama-server's --chat-template-file).
    public var chatTemplate: ChatTemplate?
    /// The longest a request may take, generation included (llama-server's --timeout); nil for none.
    public var requestTimeout: Duration? = .seconds(600)
    /// The longest a chat template may take to render for one request.
    public var renderTimeout: Duration = .seconds(10)
    /// Most tokens a reasoning model may think before its thinking is closed for it (0: the
    /// template is asked not to think, `enable_thinking: false`); nil for no limit.
    public var reasoningBudget: Int? = nil
    /// A connection with nothing to read or write for this long is closed.
    public var idleTimeout: Duration = .seconds(60)
    /// A request's headers must arrive within this long of the connection (or the previous
    /// request) starting: a client that trickles them in (slowloris) is cut off.
    public var headerTimeout: Duration = .seconds(10)

    public init() {}

    /// Positions each slot holds.
    public func slotContext(for model: LlamaModel) -> Int {
        max(16, (contextSize ?? model.configuration.contextLength) / max(1, slots))
    }
}

/// The engine (scheduler and embeddings) for `model` as the configuration describes.
public func makeEngine(model: LlamaModel, configuration: ServerConfiguration) -> InferenceEngine {
    InferenceEngine(model: model, configuration: configuration)
}

/// The server of one loaded model. Run the engine and the app in one ServiceGroup, the engine
/// first, so that on SIGINT/SIGTERM the server finishes its requests before the engine stops.
public func buildApplication(engine: InferenceEngine, configuration: ServerConfiguration, logger: Logger? = nil,
                             onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> Application<RouterResponder<ServerRequestContext>> {
    buildApplication(models: ModelRegistry(engine: engine), configuration: configuration,
                     logger: logger, onServerRunning: onServerRunning)
}

/// The whole server as a Hummingbird application, apart from `main`, so tests drive the same
/// app in-process. The registry outlives it: run both in one ServiceGroup, the registry first,
/// so that on SIGINT/SIGTERM the server finishes its requests before the models unload (see `llama serve`).
public func buildApplication(models: ModelRegistry, configuration: ServerConfiguration, hub: ModelSource? = nil, logger: Logger? = nil,
                             onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> Application<RouterResponder<ServerRequestContext>> {
    var log = logger ?? Logger(label: "llama.serve")
    if logger == nil { log.logLevel = .info }
    let router = Router(context: ServerRequestContext.self)
    router.add(middleware: MetricsMiddleware(metrics: models.metrics))
    // Browser apps on other origins may call it, as llama-server allows (preflights need no key).
    router.add(middleware: CORSMiddleware(allowOrigin: .all))
    router.add(middleware: OpenAIErrorMiddleware())
    if let key = configuration.apiKey, !key.isEmpty { router.add(middleware: APIKeyMiddleware(key: key)) }
    ServerRoutes(models: models, hub: hub, settings: RouteSettings(configuration)).add(to: router)
    let headerTimeout = TimeAmount(configuration.headerTimeout)
    return Application(
        router: router,
        server: .http1(configuration: .init(additionalChannelHandlers: [DisconnectWatcher(), HeaderTimeout(limit: headerTimeout)],
                                            idleTimeout: TimeAmount(configuration.idleTimeout))),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "swift-llama"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: log
    )
}

/// Counts answered requests by route and status for /metrics (outside the error middleware,
/// so it sees the status an error became).
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The router records the matched route's pattern (/v1/models/{id}) in the context.
        func route() -> String {
            guard let path = context.endpointPath, path != "NotFound" else { return "other" }
            return path
        }
        defer { IdleMemoryTrimmer.noteActivity() }
        do {
            let response = try await next(request, context)
            metrics.count(route: route(), status: Int(response.status.code))
            return response
        } catch {
            metrics.count(route: route(), status: Int(APIError.from(error).status.code))
            throw error
        }
    }
}

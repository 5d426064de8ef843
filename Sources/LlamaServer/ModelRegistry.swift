import Foundation
import Jinja
import Llama
import LlamaAPI
import Logging
import ServiceLifecycle
import Synchronization

/// A model the server offers: its file and the names a request's `model` may use for it.
public struct ServedModel: Sendable {
    /// The first is its id in listings; the file name with and without .gguf always follow.
    public private(set) var names: [String]
    public let path: String

    public init(path: String, names: [String] = []) {
        self.path = path
        let file = URL(fileURLWithPath: path).lastPathComponent
        var all: [String] = []
        for name in names + [InferenceEngine.defaultID(path: path), file] where !name.isEmpty && !all.contains(name) {
            all.append(name)
        }
        self.names = all
    }

    public var id: String { names[0] }

    /// Ollama's clients add ":latest" to a name without a tag, and name hub models hf.co/user/repo.
    func answers(to name: String) -> Bool {
        var name = Substring(name)
        for prefix in ["hf.co/", "huggingface.co/"] where name.hasPrefix(prefix) { name = name.dropFirst(prefix.count) }
        return names.contains(String(name)) || (name.hasSuffix(":latest") && names.contains(String(name.dropLast(7))))
    }
}

/// The models one server offers, loaded when a request first names one and unloaded when idle
/// (`idleUnload`, a request's `keep_alive`) or when more than `maxLoaded` are loaded (the least
/// recently used goes). A model loads on a thread of its own, so requests to models already
/// loaded go on meanwhile; requests for the model being loaded wait for that one load.
public final class ModelRegistry: Service, @unchecked Sendable {
    public struct Limits: Sendable {
        /// Most models loaded at once; nil for no limit.
        public var maxLoaded: Int?
        /// A model unused this long unloads; nil to keep models loaded.
        public var idleUnload: Duration?
        public init(maxLoaded: Int? = nil, idleUnload: Duration? = nil) {
            self.maxLoaded = maxLoaded
            self.idleUnload = idleUnload
        }
    }

    /// A loaded model's state.
    public struct LoadedModel: Sendable {
        public let model: ServedModel
        public let engine: InferenceEngine
        /// Requests using it now.
        public var users: Int
        public var lastUsed: ContinuousClock.Instant
        /// Set by a request's keep_alive; otherwise `idleUnload` after `lastUsed` decides.
        var keepAlive: KeepAlive?

        /// When it unloads if nobody uses it again; nil for never.
        func expiry(idleUnload: Duration?) -> ContinuousClock.Instant? {
            switch keepAlive {
            case .forever?: return nil
            case .duration(let d)?: return lastUsed + d
            case nil: return idleUnload.map { lastUsed + $0 }
            }
        }
    }

    public let limits: Limits
    /// Request counters for /metrics, across models.
    let metrics = ServerMetrics()
    /// Body parsing, templates and tokenizing for every model's requests.
    let workers: WorkerPool
    private let makeEngine: @Sendable (ServedModel) throws -> InferenceEngine
    private let logger = Logger(label: "llama.serve")
    private let lock = NSLock()
    private var models: [ServedModel]
    private var loaded: [String: LoadedModel] = [:]
    private var loading: [String: Task<Void, Error>] = [:]
    private var infos: [String: ModelInfo] = [:]
    /// Counters of engines already unloaded, so /metrics' totals never go back.
    private var retired = BatchScheduler.Status()
    private var stopped = false
    private var phase = Phase.ready

    /// Where the server is in its life, as /health reports it.
    public enum Phase: String, Sendable {
        /// The first model is loading: /health answers 503 until it is ready.
        case loading
        case ready
        /// Shutting down: running requests finish, new ones get 503 (to go to another replica).
        case draining
    }

    /// Serves `models`, each loaded by `load` and given an engine as `configuration` says when
    /// first asked for (or by `preload`).
    public convenience init(models: [ServedModel], configuration: ServerConfiguration, limits: Limits = Limits(),
                            load: @escaping @Sendable (String) throws -> LlamaModel = { try LlamaModel.load(path: $0) }) {
        let workers = WorkerPool(threads: max(2, SystemInfo.physicalCores))
        self.init(models: models, limits: limits, workers: workers) { served in
            InferenceEngine(model: try load(served.path), modelID: served.id, configuration: configuration, workers: workers)
        }
    }

    /// One engine, already loaded, kept loaded.
    public convenience init(engine: InferenceEngine) {
        let served = ServedModel(path: engine.model.path, names: [engine.modelID])
        self.init(models: [served], limits: Limits(), workers: engine.workers) { _ in engine }
        loaded[served.path] = LoadedModel(model: served, engine: engine, users: 0, lastUsed: .now)
    }

    init(models: [ServedModel], limits: Limits, workers: WorkerPool,
         makeEngine: @escaping @Sendable (ServedModel) throws -> InferenceEngine) {
        self.models = models
        self.limits = limits
        self.workers = workers
        self.makeEngine = makeEngine
    }

    // MARK: Names

    /// Every model offered, in order; the first answers requests that name none.
    public var served: [ServedModel] { lock.withLock { models } }

    /// The models loaded now.
    public var loadedModels: [LoadedModel] {
        lock.withLock { models.compactMap { loaded[$0.path] } }
    }

    func find(_ name: String?) throws -> ServedModel {
        try lock.withLock {
            guard let name, !name.isEmpty else {
                guard let first = models.first else { throw APIError(.notFound, "this server has no models; pull one first (POST /api/pull)", param: "model", code: "model_not_found") }
                return first
            }
            guard let model = models.first(where: { $0.answers(to: name) }) else {
                let known = models.prefix(20).map(\.id).joined(separator: ", ")
                throw APIError(.notFound, "the model '\(name.prefix(200))' does not exist on this server; it serves \(known.isEmpty ? "none" : known) (GET /v1/models)",
                               param: "model", code: "model_not_found")
            }
            return model
        }
    }

    /// Offers another model (after a pull); a model with the same file is replaced.
    public func add(_ model: ServedModel) {
        lock.withLock {
            if let i = models.firstIndex(where: { $0.path == model.path }) { models[i] = model } else { models.append(model) }
        }
    }

    /// Stops offering a model (after a delete), unloading it once its requests are done.
    public func remove(path: String) {
        let engine: InferenceEngine? = lock.withLock {
            models.removeAll { $0.path == path }
            infos[path] = nil
            guard let entry = loaded[path], entry.users == 0 else { return nil }
            return unloadLocked(path)
        }
        retire(engine.map { [$0] } ?? [])
    }

    /// The file's metadata as `llama info` shows it, read once per model.
    func info(_ model: ServedModel) throws -> ModelInfo {
        if let known = lock.withLock({ infos[model.path] }) { return known }
        let info: ModelInfo
        do {
            info = ModelInfo(file: try GGUFFile(path: model.path))
        } catch {
            throw APIError(.internalServerError, "the model '\(model.id)' cannot be read: \(error)", type: "server_error")
        }
        lock.withLock { infos[model.path] = info }
        return info
    }

    public var currentPhase: Phase { lock.withLock { phase } }

    /// Requests holding a model now.
    public var inFlight: Int { lock.withLock { loaded.values.reduce(0) { $0 + $1.users } } }

    /// Loads the first model while /health says "loading"; returns its engine.
    @discardableResult
    public func preload() async throws -> InferenceEngine {
        lock.withLock { if phase == .ready { phase = .loading } }
        do {
            let lease = try await self.lease(nil)
            lease.release()
            lock.withLock { if phase == .loading { phase = .ready } }
            return lease.engine
        } catch {
            lock.withLock { if phase == .loading { phase = .ready } }
            throw error
        }
    }

    /// Refuses new requests and waits until the running ones are done, or `timeout` has passed.
    public func drain(timeout: Duration) async {
        lock.withLock { phase = .draining }
        let deadline = ContinuousClock.now + timeout
        while inFlight > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    // MARK: Leases

    /// The engine of the model `name` names (the first model when nil), loaded if need be; it
    /// stays loaded until the lease is released.
    public func lease(_ name: String?) async throws -> ModelLease {
        let model = try find(name)
        while true {
            enum Step { case ready(InferenceEngine), wait(Task<Void, Error>) }
            let step: Step = try lock.withLock {
                if stopped { throw BatchScheduler.ShutDown() }
                if phase == .draining {
                    var error = APIError(.serviceUnavailable, "the server is shutting down; send the request to another replica",
                                         type: "server_error", code: "draining")
                    error.headers[.retryAfter] = "1"
                    throw error
                }
                if var entry = loaded[model.path] {
                    entry.users += 1
                    entry.lastUsed = .now
                    loaded[model.path] = entry
                    return .ready(entry.engine)
                }
                if let task = loading[model.path] { return .wait(task) }
                let task = Task { try await self.load(model) }
                loading[model.path] = task
                return .wait(task)
            }
            switch step {
            case .ready(let engine): return ModelLease(registry: self, model: model, engine: engine)
            case .wait(let task): try await task.value
            }
        }
    }

    /// Loads on a thread of its own (mapping a file, reading its vocabulary and taking the KV
    /// cache's memory take a while), then makes room under `maxLoaded`.
    private func load(_ model: ServedModel) async throws {
        let makeEngine = self.makeEngine
        let started = ContinuousClock.now
        let result: Result<InferenceEngine, Error> = await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: Result { try makeEngine(model) }) }
            thread.name = "llama-load"
            thread.stackSize = 8 << 20
            thread.start()
        }
        let evicted: [InferenceEngine] = lock.withLock {
            loading[model.path] = nil
            guard case .success(let engine) = result, !stopped else { return [] }
            loaded[model.path] = LoadedModel(model: model, engine: engine, users: 0, lastUsed: .now)
            return evictLocked(keeping: model.path)
        }
        retire(evicted)
        switch result {
        case .success(let engine):
            logger.info("loaded \(model.id) in \(started.duration(to: .now).formatted(.units(allowed: [.seconds, .milliseconds], width: .narrow)))")
            if lock.withLock({ stopped }) { engine.shutdown() }
        case .failure(let error):
            logger.error("cannot load \(model.id): \(error)")
            throw APIError(.internalServerError, "the model '\(model.id)' cannot be loaded: \(error)", type: "server_error", code: "model_load_failed")
        }
    }

    func release(_ model: ServedModel, keepAlive: KeepAlive?) {
        let unloaded: [InferenceEngine] = lock.withLock {
            guard var entry = loaded[model.path] else { return [] }
            entry.users -= 1
            entry.lastUsed = .now
            if let keepAlive { entry.keepAlive = keepAlive }
            loaded[model.path] = entry
            var out = evictLocked(keeping: nil)
            if entry.users == 0, !models.contains(where: { $0.path == model.path }) || entry.keepAlive == .duration(.zero) {
                out += unloadLocked(model.path).map { [$0] } ?? []
            }
            return out
        }
        retire(unloaded)
    }

    /// Unloads a model now if no request uses it (Ollama's keep_alive 0 with no prompt).
    @discardableResult
    public func unload(_ model: ServedModel) -> Bool {
        let engine: InferenceEngine? = lock.withLock {
            guard let entry = loaded[model.path], entry.users == 0 else { return nil }
            return unloadLocked(model.path)
        }
        retire(engine.map { [$0] } ?? [])
        return engine != nil
    }

    /// The least recently used idle models while more than `maxLoaded` are loaded.
    private func evictLocked(keeping path: String?) -> [InferenceEngine] {
        guard let limit = limits.maxLoaded else { return [] }
        var out: [InferenceEngine] = []
        while loaded.count > max(1, limit) {
            guard let oldest = loaded.values.filter({ $0.users == 0 && $0.model.path != path }).min(by: { $0.lastUsed < $1.lastUsed }),
                  let engine = unloadLocked(oldest.model.path) else { break }
            out.append(engine)
        }
        return out
    }

    private func unloadLocked(_ path: String) -> InferenceEngine? {
        guard let entry = loaded.removeValue(forKey: path) else { return nil }
        retired.add(entry.engine.scheduler.currentStatus)
        return entry.engine
    }

    /// Unloads the idle models whose keep-alive has passed at `now` (the registry's service does
    /// this four times a second).
    public func unloadExpired(now: ContinuousClock.Instant = .now) {
        let expired: [InferenceEngine] = lock.withLock {
            let paths = loaded.values.filter { entry in
                guard entry.users == 0, let expiry = entry.expiry(idleUnload: limits.idleUnload) else { return false }
                return expiry <= now
            }.map(\.model.path)
            return paths.compactMap { unloadLocked($0) }
        }
        retire(expired)
    }

    /// Stops engines taken out of the table; their memory goes with their last reference.
    private func retire(_ engines: [InferenceEngine]) {
        for engine in engines {
            engine.shutdown()
            logger.info("unloaded \(engine.modelID)")
        }
    }

    /// Expiry of each loaded model, for /api/ps.
    func expiry(of entry: LoadedModel) -> Date? {
        guard let instant = entry.expiry(idleUnload: limits.idleUnload) else { return nil }
        let remaining = ContinuousClock.now.duration(to: instant)
        return Date().addingTimeInterval(Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18)
    }

    // MARK: Status

    /// The schedulers' counters, of loaded and unloaded models together.
    var status: BatchScheduler.Status {
        lock.withLock {
            var total = retired
            total.queued = 0
            total.busySlots = 0
            total.slots = 0
            for entry in loaded.values { total.add(entry.engine.scheduler.currentStatus) }
            return total
        }
    }

    /// Checks expiries until the server stops, then stops every engine.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .milliseconds(250))
                self.unloadExpired()
            }
        }
        let engines: [InferenceEngine] = lock.withLock {
            stopped = true
            defer { loaded.removeAll() }
            return loaded.values.map(\.engine)
        }
        for engine in engines { engine.shutdown() }
        workers.shutdown()
    }
}

/// A request's hold on a loaded model: the model stays loaded until it is released (once).
public final class ModelLease: Sendable {
    public let model: ServedModel
    public let engine: InferenceEngine
    private let registry: ModelRegistry
    private let released = Mutex(false)

    init(registry: ModelRegistry, model: ServedModel, engine: InferenceEngine) {
        self.registry = registry
        self.model = model
        self.engine = engine
    }

    /// `keepAlive` replaces how long the model stays loaded once idle (nil: as it was).
    public func release(keepAlive: KeepAlive? = nil) {
        guard released.withLock({ done in defer { done = true }; return !done }) else { return }
        registry.release(model, keepAlive: keepAlive)
    }

    deinit { release() }
}

extension BatchScheduler.Status {
    mutating func add(_ other: BatchScheduler.Status) {
        slots += other.slots
        busySlots += other.busySlots
        queued += other.queued
        requestsFinished += other.requestsFinished
        promptTokens += other.promptTokens
        reusedPromptTokens += other.reusedPromptTokens
        generatedTokens += other.generatedTokens
        busySeconds += other.busySeconds
        generatingSeconds += other.generatingSeconds
    }
}

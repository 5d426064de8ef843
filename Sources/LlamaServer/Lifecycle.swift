import Llama
import ServiceLifecycle

/// The server's life beside its HTTP app: it loads the first model while /health says
/// "loading", and on SIGTERM drains: /health says "draining", new requests get 503 (a balancer
/// sends them elsewhere) and running ones get up to `drainTimeout` to finish before the app
/// stops. Run it last in the ServiceGroup (`[registry, app, lifecycle]`): services stop in
/// reverse order, so the drain comes before the app closes its connections and the registry
/// unloads the models.
public struct ServerLifecycle: Service {
    let models: ModelRegistry
    let preload: Bool
    let drainTimeout: Duration
    let onReady: @Sendable (InferenceEngine?) -> Void

    /// `onReady` gets the first model's engine once it is loaded (nil without a preload).
    public init(models: ModelRegistry, preload: Bool, drainTimeout: Duration, onReady: @escaping @Sendable (InferenceEngine?) -> Void = { _ in }) {
        self.models = models
        self.preload = preload
        self.drainTimeout = drainTimeout
        self.onReady = onReady
    }

    public func run() async throws {
        onReady(preload ? try await models.preload() : nil)
        try? await gracefulShutdown()
        await models.drain(timeout: drainTimeout)
    }
}

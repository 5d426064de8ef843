import Foundation
import Hummingbird
import Llama
import LlamaAPI
import LlamaServer
import Testing
import TestSupport

/// Several models in one server: loaded on first use (once, however many requests wait),
/// unloaded by keep-alive, idle time and the loaded-model limit, never while a request uses them.
@Suite struct ModelRegistryTests {
    /// The default model under two more paths (links), so the registry sees three models.
    static func models() throws -> (ServedModel, ServedModel, ServedModel) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("registry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let original = RouteTests.model.path
        try FileManager.default.createSymbolicLink(atPath: folder + "/b.gguf", withDestinationPath: original)
        try FileManager.default.createSymbolicLink(atPath: folder + "/c.gguf", withDestinationPath: original)
        return (ServedModel(path: original, names: ["a"]), ServedModel(path: folder + "/b.gguf", names: ["org/b:Q4_1", "org/b"]),
                ServedModel(path: folder + "/c.gguf"))
    }

    /// A registry whose loads are counted (each load reuses the already loaded weights).
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func add() { lock.withLock { count += 1 } }
        var value: Int { lock.withLock { count } }
    }

    static func registry(_ models: [ServedModel], limits: ModelRegistry.Limits = .init()) -> (ModelRegistry, Counter) {
        let loads = Counter()
        let registry = ModelRegistry(models: models, configuration: RouteTests.configuration(slots: 1), limits: limits) { _ in
            loads.add()
            Thread.sleep(forTimeInterval: 0.05)  // long enough for the concurrent leases to find the load running
            return RouteTests.model
        }
        return (registry, loads)
    }

    static func loadedIDs(_ registry: ModelRegistry) -> Set<String> { Set(registry.loadedModels.map(\.model.id)) }

    @Test func loadsOnFirstUseOnceForConcurrentRequests() async throws {
        let (a, b, c) = try Self.models()
        let (registry, loads) = Self.registry([a, b, c])
        #expect(registry.loadedModels.isEmpty)
        let leases = try await withThrowingTaskGroup(of: ModelLease.self) { group in
            for name in ["org/b", "b", "org/b:Q4_1", "b.gguf", "org/b:latest"] {
                group.addTask { try await registry.lease(name) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(loads.value == 1)
        #expect(Set(leases.map(\.model.id)) == ["org/b:Q4_1"])
        #expect(Self.loadedIDs(registry) == ["org/b:Q4_1"])
        #expect(registry.loadedModels.first?.users == 5)
        for lease in leases { lease.release() }
        #expect(registry.loadedModels.first?.users == 0)
        // No name: the first model.
        let first = try await registry.lease(nil)
        #expect(first.model.id == "a")
        first.release()
        #expect(loads.value == 2)
    }

    @Test func unknownNameIsNotFoundAndListsTheModels() async throws {
        let (a, b, _) = try Self.models()
        let (registry, _) = Self.registry([a, b])
        do {
            _ = try await registry.lease("nope")
            Issue.record("an unknown model was leased")
        } catch let error as APIError {
            #expect(error.status == .notFound)
            #expect(error.message.contains("'nope'") && error.message.contains("a, org/b:Q4_1"))
        }
    }

    @Test func theLeastRecentlyUsedIdleModelMakesRoom() async throws {
        let (a, b, c) = try Self.models()
        let (registry, _) = Self.registry([a, b, c], limits: .init(maxLoaded: 2))
        try await registry.lease("a").release()
        try await registry.lease("c").release()
        try await registry.lease("a").release()  // c is now the least recently used
        let busy = try await registry.lease("org/b")
        #expect(Self.loadedIDs(registry) == ["a", "org/b:Q4_1"])
        // Every loaded model busy: the next loads over the limit, and the limit holds again
        // as soon as one is idle.
        let holdA = try await registry.lease("a")
        let holdC = try await registry.lease("c")
        #expect(Self.loadedIDs(registry) == ["a", "org/b:Q4_1", "c"])
        busy.release()
        #expect(Self.loadedIDs(registry) == ["a", "c"])
        holdA.release()
        holdC.release()
    }

    @Test func keepAliveAndIdleTimeUnload() async throws {
        let (a, b, _) = try Self.models()
        let (registry, _) = Self.registry([a, b], limits: .init(idleUnload: .seconds(60)))
        // keep_alive 0: unloaded as its request ends.
        try await registry.lease("a").release(keepAlive: .duration(.zero))
        #expect(registry.loadedModels.isEmpty)
        // Idle time: loaded until --idle-unload has passed.
        let lease = try await registry.lease("org/b")
        registry.unloadExpired(now: .now + .seconds(3600))
        #expect(Self.loadedIDs(registry) == ["org/b:Q4_1"], "a model in use never unloads")
        lease.release()
        registry.unloadExpired(now: .now + .seconds(30))
        #expect(Self.loadedIDs(registry) == ["org/b:Q4_1"])
        registry.unloadExpired(now: .now + .seconds(61))
        #expect(registry.loadedModels.isEmpty)
        // keep_alive forever outlasts --idle-unload.
        try await registry.lease("a").release(keepAlive: .forever)
        registry.unloadExpired(now: .now + .seconds(3600))
        #expect(Self.loadedIDs(registry) == ["a"])
    }

    @Test func aFailedLoadIsAnErrorAndIsTriedAgain() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("registry-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: folder + "/broken.gguf"))
        let registry = ModelRegistry(models: [ServedModel(path: RouteTests.model.path), ServedModel(path: folder + "/broken.gguf")],
                                     configuration: RouteTests.configuration(slots: 1))
        for _ in 0..<2 {
            do {
                _ = try await registry.lease("broken")
                Issue.record("a broken file loaded")
            } catch let error as APIError {
                #expect(error.status == .internalServerError && error.message.contains("cannot be loaded"), "\(error)")
            }
        }
        #expect(registry.loadedModels.isEmpty)
    }

    /// The routes over two models: both answer, /v1/models and /api/tags list both, a bad
    /// keep_alive is refused in Ollama's error shape, keep_alive 0 unloads.
    @Test func routesServeEveryModel() async throws {
        let (a, b, _) = try Self.models()
        let (registry, _) = Self.registry([a, b])
        try await buildApplication(models: registry, configuration: RouteTests.configuration(slots: 1)).inProcess { client in
            for name in ["a", "org/b"] {
                let reply = try await RouteTests.post(client, "/v1/chat/completions",
                                                      #"{"model": "\#(name)", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}]}"#)
                #expect(reply.status == .ok)
                #expect(try RouteTests.object(reply)["model"] as? String == (name == "a" ? "a" : "org/b:Q4_1"))
            }
            let list = try RouteTests.object(try await client.execute(uri: "/v1/models", method: .get))
            let ids = (list["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            #expect(ids == ["a", "org/b:Q4_1"])
            let tags = try RouteTests.object(try await client.execute(uri: "/api/tags", method: .get))
            #expect((tags["models"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["a", "org/b:Q4_1"])

            let bad = try await RouteTests.post(client, "/api/generate", #"{"model": "a", "prompt": "Hi", "keep_alive": "soon"}"#)
            #expect(bad.status == .badRequest)
            #expect((try RouteTests.object(bad)["error"] as? String)?.contains("keep_alive") == true)
            let missing = try await RouteTests.post(client, "/api/chat", #"{"model": "zzz", "messages": []}"#)
            #expect(missing.status == .notFound)
            #expect(try RouteTests.object(missing)["error"] is String)

            let unload = try await RouteTests.post(client, "/api/generate", #"{"model": "org/b", "keep_alive": 0}"#)
            #expect(try RouteTests.object(unload)["done_reason"] as? String == "unload")
            #expect(Self.loadedIDs(registry) == ["a"])
            let ps = try RouteTests.object(try await client.execute(uri: "/api/ps", method: .get))
            #expect((ps["models"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["a"])
        }
    }

    /// /health for a balancer: 503 "loading" while the first model loads, 200 once it is ready,
    /// 503 "draining" after shutdown began, when new requests get 503 and running ones finish.
    @Test func healthFollowsLoadingAndDraining() async throws {
        let (a, b, _) = try Self.models()
        let registry = ModelRegistry(models: [a, b], configuration: RouteTests.configuration(slots: 1)) { _ in
            Thread.sleep(forTimeInterval: 0.3)
            return RouteTests.model
        }
        try await buildApplication(models: registry, configuration: RouteTests.configuration(slots: 1)).inProcess { client in
            func health() async throws -> (HTTPResponse.Status, String?) {
                let reply = try await client.execute(uri: "/health", method: .get)
                return (reply.status, try RouteTests.object(reply)["status"] as? String)
            }
            let loading = Task { try await registry.preload() }
            var seen: (HTTPResponse.Status, String?) = (.ok, nil)
            for _ in 0..<100 {
                seen = try await health()
                if seen.1 == "loading" { break }
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(seen.0 == .serviceUnavailable && seen.1 == "loading")
            #expect(try await loading.value.modelID == "a")
            #expect(try await health() == (.ok, "ok"))

            let running = try await registry.lease("a")
            let started = ContinuousClock.now
            let draining = Task { await registry.drain(timeout: .seconds(30)) }
            for _ in 0..<100 where registry.currentPhase != .draining { try await Task.sleep(for: .milliseconds(5)) }
            #expect(try await health() == (.serviceUnavailable, "draining"))
            let refused = try await RouteTests.post(client, "/v1/chat/completions", #"{"model": "a", "messages": [{"role": "user", "content": "Hi"}]}"#)
            #expect(refused.status == .serviceUnavailable && refused.headers[.retryAfter] == "1")
            #expect((try RouteTests.object(refused)["error"] as? [String: Any])?["code"] as? String == "draining")
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("llama_requests_in_flight 1\n") && metrics.contains("llama_ready 0\n") && metrics.contains("llama_prompt_cache_hit_ratio "))
            running.release()
            await draining.value
            #expect(started.duration(to: .now) < .seconds(5), "the drain ends when the last request does")
        }
        // A request that outlasts the drain does not hold the shutdown past its timeout.
        let (other, _) = Self.registry([a])
        let stuck = try await other.lease("a")
        let started = ContinuousClock.now
        await other.drain(timeout: .milliseconds(200))
        #expect(started.duration(to: .now) < .seconds(2))
        stuck.release()
    }
}

import Foundation
import Llama
import LlamaServer
import ServiceLifecycle
import Logging
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The server on a loopback socket, as clients meet it: a client that goes away mid-stream, and
/// a graceful shutdown.
@Suite(.serialized) struct LiveServerTests {
    /// A running server on a free port, stopped by `stop()`.
    struct Running {
        let engine: InferenceEngine
        let port: Int
        let group: ServiceGroup
        let task: Task<Void, Error>
        func stop() async throws {
            await group.triggerGracefulShutdown()
            try await task.value
        }
    }

    /// The default model with one slot of `contextSize` positions, served on a free port.
    static func start(contextSize: Int) async throws -> Running {
        try await start(model: try LlamaModel.load(path: DefaultModel.locate())) {
            $0.slots = 1
            $0.contextSize = contextSize
        }
    }

    /// `model` served on a free port, with the configuration `change` makes.
    static func start(model: LlamaModel, change: (inout ServerConfiguration) -> Void) async throws -> Running {
        var configuration = ServerConfiguration()
        configuration.port = 0
        change(&configuration)
        let engine = makeEngine(model: model, configuration: configuration)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = buildApplication(engine: engine, configuration: configuration) { port in continuation.yield(port) }
        let group = ServiceGroup(configuration: .init(services: [engine, app], logger: Logger(label: "tests")))
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        return Running(engine: engine, port: port, group: group, task: task)
    }

    /// A blocking TCP connection to 127.0.0.1.
    final class Connection: @unchecked Sendable {
        let fd: Int32
        init(port: Int) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let result = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard result == 0 else { throw FixtureError("cannot connect to port \(port)") }
            var timeout = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        func send(_ text: String) { _ = text.withCString { Glibc.send(fd, $0, strlen($0), 0) } }
        /// Reads until `text` has arrived (or the peer closes); returns all read. Blocks a thread
        /// of its own: the cooperative pool's few threads must stay free for the server.
        func read(until text: String, times: Int = 1) async -> String {
            await withCheckedContinuation { continuation in
                Thread { continuation.resume(returning: self.blockingRead(until: text, times: times)) }.start()
            }
        }

        private func blockingRead(until text: String, times: Int) -> String {
            var received = [UInt8]()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while String(decoding: received, as: UTF8.self).components(separatedBy: text).count <= times {
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { break }
                received += chunk[..<n]
            }
            return String(decoding: received, as: UTF8.self)
        }
        func close() { _ = Glibc.close(fd) }
    }

    static func post(_ path: String, _ body: String) -> String {
        "POST \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    @Test func clientThatDisconnectsMidStreamFreesItsSlot() async throws {
        let server = try await Self.start(contextSize: 1024)
        let engine = server.engine

        // Streaming and not: three tokens in, the client goes away.
        for stream in [true, false] {
            let connection = try Connection(port: server.port)
            connection.send(Self.post("/v1/completions", #"{"prompt": "Once upon a time", "max_tokens": 800, "temperature": 0, "stream": \#(stream)}"#))
            let before = engine.scheduler.currentStatus.generatedTokens
            if stream {
                let start = await connection.read(until: "data: ", times: 3)
                #expect(start.hasPrefix("HTTP/1.1 200"), "\(start)")
            } else {
                for _ in 0..<2000 where engine.scheduler.currentStatus.generatedTokens < before + 3 { try await Task.sleep(for: .milliseconds(1)) }
            }
            connection.close()
            let atClose = engine.scheduler.currentStatus.generatedTokens
            var waited = 0
            while engine.scheduler.currentStatus.busySlots > 0, waited < 5000 {
                try await Task.sleep(for: .milliseconds(1))
                waited += 1
            }
            let status = engine.scheduler.currentStatus
            #expect(status.busySlots == 0)
            // The end of the client's input cancels the generation; the scheduler frees the slot at
            // its next step. (A step or two may start while the event loop gets to the news.)
            let after = status.generatedTokens - atClose
            #expect(after <= 3, "\(after) tokens after the close")
            print("disconnect (stream: \(stream)): slot freed \(waited) ms after the close, \(after) tokens later")
        }

        // The slot serves the next client.
        let next = try Connection(port: server.port)
        next.send(Self.post("/v1/completions", #"{"prompt": "Hello", "max_tokens": 3}"#))
        let reply = await next.read(until: "\"usage\"")
        #expect(reply.hasPrefix("HTTP/1.1 200"), "\(reply)")
        next.close()
        try await server.stop()
    }

    /// A graceful shutdown lets a running request finish before the engine stops.
    @Test func gracefulShutdownFinishesRunningRequests() async throws {
        let server = try await Self.start(contextSize: 512)
        let engine = server.engine
        let connection = try Connection(port: server.port)
        connection.send(Self.post("/v1/completions", #"{"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "stop": []}"#))
        for _ in 0..<400 where engine.scheduler.currentStatus.busySlots == 0 { try await Task.sleep(for: .milliseconds(5)) }
        async let stopped: Void = server.stop()
        let reply = await connection.read(until: "\"usage\"")
        #expect(reply.hasPrefix("HTTP/1.1 200"), "\(reply)")
        #expect(reply.contains("\"completion_tokens\": 40"), "\(reply)")
        connection.close()
        try await stopped
        #expect(throws: BatchScheduler.ShutDown.self) { _ = try engine.scheduler.submit(prompt: [1], parameters: .init(maxTokens: 1)) }
    }
}

import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import LlamaServer

/// Sends requests straight to an application's responder, in-process and without a socket, and
/// collects the whole response (a streamed body as it was written).
struct InProcessClient: Sendable {
    let responder: any HTTPResponder<ServerRequestContext>
    let logger = Logger(label: "tests")

    struct Reply: Sendable {
        let status: HTTPResponse.Status
        let headers: HTTPFields
        let body: ByteBuffer
    }

    func execute(uri: String, method: HTTPRequest.Method, headers: HTTPFields = [:], body: ByteBuffer? = nil) async throws -> Reply {
        let request = Request(head: HTTPRequest(method: method, scheme: "http", authority: "localhost", path: uri, headerFields: headers),
                              body: RequestBody(buffer: body ?? ByteBuffer()))
        let context = ServerRequestContext(source: ApplicationRequestContextSource(channel: EmbeddedChannel(), logger: logger))
        let response = try await responder.respond(to: request, context: context)
        let collector = Collector()
        try await response.body.write(collector)
        return Reply(status: response.status, headers: response.headers, body: collector.buffer)
    }

    /// Keeps what the response body writes.
    final class Collector: ResponseBodyWriter, @unchecked Sendable {
        var buffer = ByteBuffer()
        func write(_ part: ByteBuffer) async throws {
            var part = part
            buffer.writeBuffer(&part)
        }
        func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}

extension ApplicationProtocol where Responder.Context == ServerRequestContext {
    /// Runs `test` with a client of this application's responder.
    func inProcess<T>(_ test: (InProcessClient) async throws -> T) async throws -> T {
        try await test(InProcessClient(responder: try await responder))
    }
}

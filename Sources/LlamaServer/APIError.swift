import Crypto
import Foundation
import Hummingbird
import Jinja
import Llama
import LlamaAPI
import NIOCore

extension APIError: HTTPResponseError {
    var jsonBody: ByteBuffer { ByteBuffer(string: json.jsonText) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        // Anthropic's and Ollama's clients read their own shapes.
        let path = request.uri.path
        let body = path.hasPrefix("/v1/messages") ? ByteBuffer(string: anthropicJSON.jsonText)
            : path.hasPrefix("/api/") ? ByteBuffer(string: JinjaValue.object([("error", .string(message))]).jsonText) : jsonBody
        return Response(status: status, headers: fields, body: .init(byteBuffer: body))
    }

    /// Any error a handler let through, as the OpenAI error it stands for.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case LlamaError.contextFull(let needed, let available):
            return APIError(.badRequest, "the prompt is too long: it needs \(needed) positions but the context holds \(available) per slot; shorten it or start the server with a larger context (-c)",
                            code: "context_length_exceeded")
        case let error as BatchScheduler.QueueFull:
            var busy = APIError(.serviceUnavailable, error.description, type: "server_error", code: "server_busy")
            busy.headers[.retryAfter] = "1"
            return busy
        case let error as BatchScheduler.ShutDown:
            return APIError(.serviceUnavailable, error.description, type: "server_error")
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, "the request body is larger than the server accepts (--max-body)", code: "request_too_large")
        case let error as HTTPError:
            switch error.status {
            case .notFound: return APIError(.notFound, "no such endpoint; see GET /v1/models, POST /v1/chat/completions, /v1/completions, /v1/embeddings", code: "not_found")
            case .contentTooLarge: return APIError(.contentTooLarge, "the request body is larger than the server accepts (--max-body)", code: "request_too_large")
            default: return APIError(error.status, error.body ?? error.status.reasonPhrase, type: error.status.code >= 500 ? "server_error" : "invalid_request_error")
            }
        case LlamaError.grammar(let reason):
            return APIError(.badRequest, "the grammar does not parse: \(reason)", param: "grammar")
        case let error as GenerationError:
            if case .grammarTooExpensive = error { return APIError(.badRequest, error.description, param: "grammar") }
            return APIError(.internalServerError, error.description, type: "server_error")
        case is CancellationError:
            // The client left (or the server is stopping); nobody reads this answer.
            return APIError(HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request"), "the request was cancelled", type: "server_error")
        case let error as LlamaError:
            return APIError(.badRequest, error.description)
        default:
            return APIError(.internalServerError, "\(error)", type: "server_error")
        }
    }
}

/// Turns every error, also the router's own (no such route), into OpenAI's error JSON (Anthropic's
/// under /v1/messages).
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let apiError = APIError.from(error)
            if apiError.status.code >= 500, apiError.status != .serviceUnavailable {
                context.logger.error("\(request.method) \(request.uri.path): \(error)")
            }
            return try apiError.response(from: request, context: context)
        }
    }
}

/// `Authorization: Bearer KEY` on every route but /health, when the server has a key.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    /// SHA-256 of the key: a candidate is hashed and the digests compared in full, so the time
    /// taken says nothing about the key, not even its length.
    let digest: [UInt8]

    init(key: String) { digest = Self.hash(key) }

    static func hash(_ text: String) -> [UInt8] { Array(SHA256.hash(data: Array(text.utf8))) }

    /// The key a request carries: `Authorization: Bearer KEY` (the scheme in any case, as HTTP
    /// has it) or `x-api-key: KEY` (Anthropic's clients); nil when it carries neither.
    static func presentedKey(_ headers: HTTPFields) -> String? {
        if let header = headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else { return "" }  // present but malformed
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
        if let field = headers.first(where: { $0.name.canonicalName == "x-api-key" }) { return field.value }
        return nil
    }

    func matches(_ candidate: String) -> Bool {
        let other = Self.hash(candidate)
        var difference: UInt8 = 0
        for (a, b) in zip(digest, other) { difference |= a ^ b }
        return difference == 0
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" || request.uri.path == "/v1/health" { return try await next(request, context) }
        guard let given = Self.presentedKey(request.headers) else {
            throw APIError(.unauthorized, "no API key given; send the header 'Authorization: Bearer KEY' with the key the server was started with (--api-key)",
                           code: "invalid_api_key")
        }
        guard matches(given) else {
            throw APIError(.unauthorized, "incorrect API key provided; send 'Authorization: Bearer KEY'", code: "invalid_api_key")
        }
        return try await next(request, context)
    }
}

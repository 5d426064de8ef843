import Foundation
import Hummingbird
import Jinja
import Llama
import NIOCore

/// An error as OpenAI sends it: a status, and `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(message)" }

    static func badRequest(_ message: String, param: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param)
    }

    /// `{"error": {"message", "type", "param", "code"}}`, null where OpenAI writes null.
    var json: JinjaValue {
        .object([("error", .object([("message", .string(message)), ("type", .string(type)),
                                    ("param", param.map { .string($0) } ?? .none), ("code", code.map { .string($0) } ?? .none)]))])
    }

    var jsonBody: ByteBuffer { ByteBuffer(string: json.jsonText) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: jsonBody))
    }

    /// Any error a handler let through, as the OpenAI error it stands for.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as LlamaContext.ContextFull:
            return APIError(.badRequest, "the prompt is too long: it needs \(error.needed) positions but the context holds \(error.contextSize) per slot; shorten it or start the server with a larger context (-c)",
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
        case let error as GrammarError:
            return APIError(.badRequest, "the grammar does not parse: \(error)", param: "grammar")
        case let error as ModelError:
            return APIError(.badRequest, error.description)
        default:
            return APIError(.internalServerError, "\(error)", type: "server_error")
        }
    }
}

/// Turns every error, also the router's own (no such route), into OpenAI's error JSON.
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
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" || request.uri.path == "/v1/health" { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "no API key given; send the header 'Authorization: Bearer KEY' with the key the server was started with (--api-key)",
                           code: "invalid_api_key")
        }
        let given = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : header
        // Compare without stopping at the first difference, so timing tells nothing.
        let a = Array(given.utf8), b = Array(key.utf8)
        var difference = a.count ^ b.count
        for i in 0..<min(a.count, b.count) { difference |= Int(a[i] ^ b[i]) }
        guard difference == 0 else {
            throw APIError(.unauthorized, "incorrect API key provided", code: "invalid_api_key")
        }
        return try await next(request, context)
    }
}

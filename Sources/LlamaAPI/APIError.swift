import HTTPTypes
import Jinja

/// An error as OpenAI sends it: a status, and `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, CustomStringConvertible {
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

    package static func badRequest(_ message: String, param: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param)
    }

    /// `{"error": {"message", "type", "param", "code"}}`, null where OpenAI writes null.
    package var json: JinjaValue {
        .object([("error", .object([("message", .string(message)), ("type", .string(type)),
                                    ("param", param.map { .string($0) } ?? .none), ("code", code.map { .string($0) } ?? .none)]))])
    }

    /// The error as Anthropic's Messages API sends it: `{"type": "error", "error": {"type", "message"}}`.
    package var anthropicJSON: JinjaValue {
        let kind: String
        switch status.code {
        case 400: kind = "invalid_request_error"
        case 401: kind = "authentication_error"
        case 403: kind = "permission_error"
        case 404: kind = "not_found_error"
        case 413: kind = "request_too_large"
        case 429: kind = "rate_limit_error"
        case 503, 529: kind = "overloaded_error"
        default: kind = status.code >= 500 ? "api_error" : "invalid_request_error"
        }
        return .object([("type", "error"), ("error", .object([("type", .string(kind)), ("message", .string(message))]))])
    }
}

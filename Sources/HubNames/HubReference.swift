import Foundation

/// A model on the hub as users write it: `user/repo` or `user/repo:QUANT` (llama.cpp's `-hf`, Ollama's `hf.co/...`).
public struct HubReference: Sendable, Hashable, CustomStringConvertible {
    public var repo: String
    /// The quantization asked for (`Q4_K_M`, `q8_0`, ...), or nil for the default choice.
    public var quant: String?
    /// A branch, tag or commit; `main` unless `user/repo@revision` says otherwise.
    public var revision: String

    public init(repo: String, quant: String? = nil, revision: String = "main") {
        self.repo = repo
        self.quant = quant
        self.revision = revision
    }

    /// Parses `user/repo[@revision][:QUANT]`, also with an `hf.co/` or `huggingface.co/` prefix.
    public init(parsing text: String) throws(HubError) {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        for scheme in ["https://", "http://"] where rest.hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
        // A host in front of user/repo (three parts); two parts are user/repo, whatever the user is called.
        for host in ["huggingface.co/", "hf.co/"] where rest.hasPrefix(host) && rest.split(separator: "/", omittingEmptySubsequences: false).count == 3 {
            rest = rest.dropFirst(host.count)
        }
        var quant: String?
        if let colon = rest.lastIndex(of: ":") {
            quant = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
            if quant?.isEmpty == true || quant?.lowercased() == "latest" { quant = nil }
        }
        var revision = "main"
        if let at = rest.lastIndex(of: "@") {
            revision = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy(Self.isName), Self.isName(Substring(revision)) else {
            throw HubError.usage("'\(text)' is not a hub model: write user/repo or user/repo:QUANT, for example bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
        }
        if let quant, !quant.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) || quant.count > 64 {
            throw HubError.usage("'\(quant)' is not a quantization name (such as Q4_K_M or Q8_0)")
        }
        self.init(repo: parts.joined(separator: "/"), quant: quant, revision: revision)
    }

    /// The hub's own rule for repository and revision names, and nothing that could walk out of a folder.
    static func isName(_ part: Substring) -> Bool {
        !part.isEmpty && part.count <= 96 && part != "." && part != ".." && !part.hasPrefix("-")
            && part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    public var description: String { repo + (revision == "main" ? "" : "@" + revision) + (quant.map { ":" + $0 } ?? "") }
}

/// What can go wrong getting a model, each with what to do next.
public enum HubError: Error, CustomStringConvertible, Sendable {
    case usage(String)
    case notFound(String)
    case unauthorized(String)
    case network(String)
    /// No connection could be made: not retried for API calls, so an offline machine falls back to the cache at once.
    case unreachable(String)
    case integrity(String)
    case disk(String)
    case offline(String)

    /// Worth another attempt: the hub answered badly, or a connection broke or could not be made.
    public var isTransient: Bool {
        switch self {
        case .network, .unreachable: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .usage(let m), .notFound(let m), .unauthorized(let m), .network(let m), .unreachable(let m), .integrity(let m),
             .disk(let m), .offline(let m): m
        }
    }
}

@_exported import HubNames
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Where models come from and go: the hub's address and token, and the cache.
public struct HubSettings: Sendable {
    /// `$HF_ENDPOINT`, else https://huggingface.co.
    public var endpoint: String
    /// `$HF_TOKEN` (or the older `$HUGGING_FACE_HUB_TOKEN`), for gated and private repositories.
    public var token: String?
    /// Never touch the network: `--offline`, or `$HF_HUB_OFFLINE=1` as huggingface_hub reads it.
    public var offline: Bool
    public var cache: HubCache
    /// Attempts after the first for a failed request, waiting `retryDelay` seconds, doubled each time.
    public var retries = 4
    public var retryDelay = 1.0

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, offline: Bool = false) {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        var endpoint = value("HF_ENDPOINT") ?? "https://huggingface.co"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        token = value("HF_TOKEN") ?? value("HUGGING_FACE_HUB_TOKEN")
        self.offline = offline || ["1", "true", "yes", "on"].contains(value("HF_HUB_OFFLINE")?.lowercased() ?? "")
        cache = HubCache(environment: environment)
    }
}

/// A model fetched into (or found in) the cache.
public struct PulledModel: Sendable {
    public var repo: String
    public var commit: String
    /// The file, or the shards of a split model in order, relative to the snapshot.
    public var files: [String]
    public var quant: String?
    public var snapshot: String
    /// The path to open: the file, or the first shard.
    public var path: String { snapshot + "/" + files[0] }
}

/// Gets models from a Hugging Face hub (or any server with its API) into the hub's cache.
public struct Hub: Sendable {
    public var settings: HubSettings
    /// One-line messages for the user (stderr in the CLI).
    public var log: @Sendable (String) -> Void
    /// When set, downloads report their progress here instead of drawing bars on stderr.
    public var onProgress: (@Sendable (FileProgress) -> Void)?

    public init(settings: HubSettings = HubSettings(), log: @escaping @Sendable (String) -> Void = { _ in },
                onProgress: (@Sendable (FileProgress) -> Void)? = nil) {
        self.settings = settings
        self.log = log
        self.onProgress = onProgress
    }

    /// The model `reference` names, from the cache when it is already there whole, else fetched;
    /// its files count as used now (`llama ls`).
    public func pull(_ reference: HubReference) async throws -> PulledModel {
        let result = settings.offline ? try cached(reference) : try await fetch(reference)
        for file in result.files { settings.cache.touch(result.snapshot + "/" + file) }
        return result
    }

    private func fetch(_ reference: HubReference) async throws -> PulledModel {
        let client = HTTPClient(eventLoopGroupProvider: .singleton,
                                configuration: .init(redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(10), read: .seconds(60))))
        do {
            let result = try await pull(reference, with: HubAPI(client: client, settings: settings))
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            // Off the network with the model already here: use it, as llama.cpp does.
            guard let failure = error as? HubError, failure.isTransient, let model = try? cached(reference) else { throw error }
            log("Cannot reach \(settings.endpoint) (\(error)); using the cached copy of \(reference).")
            return model
        }
    }

    /// The model as the cache holds it, without the network.
    public func cached(_ reference: HubReference) throws -> PulledModel {
        let cache = settings.cache
        guard let commit = cache.commit(reference.repo, revision: reference.revision) else {
            throw HubError.offline("\(reference) is not in the cache (\(cache.root)). Fetch it once with the network on: llama pull \(reference)")
        }
        let candidate = try FileChoice.choose(FileChoice.candidates(cache.files(reference.repo, commit: commit)),
                                              quant: reference.quant, repo: reference.repo)
        return PulledModel(repo: reference.repo, commit: commit, files: candidate.files, quant: candidate.quant,
                           snapshot: cache.snapshot(reference.repo, commit))
    }

    private func pull(_ reference: HubReference, with api: HubAPI) async throws -> PulledModel {
        let repo = reference.repo, cache = settings.cache
        let commit = try await api.commit(repo, revision: reference.revision)
        let tree = try await api.tree(repo, commit: commit)
        let candidate = try FileChoice.choose(FileChoice.candidates(tree.map(\.path)), quant: reference.quant, repo: repo)
        let entries = candidate.files.compactMap { file in tree.first { $0.path == file } }
        let downloads = Downloads(api: api, cache: cache, repo: repo, commit: commit, log: log, observer: onProgress)
        try downloads.checkSpace(for: entries)
        for entry in entries { try await downloads.fetch(entry) }
        try cache.setRef(repo, revision: reference.revision, commit: commit)
        return PulledModel(repo: repo, commit: commit, files: candidate.files, quant: candidate.quant, snapshot: cache.snapshot(repo, commit))
    }
}

/// One file of a repository's tree, as `/api/models/{repo}/tree/{commit}` lists it.
struct TreeEntry: Sendable {
    var path: String
    var size: Int64
    /// The git blob id (SHA-1 of "blob <size>\0" + content).
    var oid: String
    /// The LFS object's SHA-256, for files stored with LFS (every model file on the hub).
    var sha256: String?
    /// The blob's name in the cache: the SHA-256, else the git id (as huggingface_hub names them).
    var hash: String { sha256 ?? oid }
}

/// The hub's HTTP API: the calls `huggingface_hub` and llama.cpp make.
struct HubAPI: Sendable {
    let client: HTTPClient
    let settings: HubSettings

    /// The commit a revision points at: GET /api/models/{repo}/revision/{revision}.
    func commit(_ repo: String, revision: String) async throws -> String {
        let object = try await json(settings.endpoint + "/api/models/\(repo)/revision/\(escape(revision))", repo: repo)
        guard let sha = (object as? [String: Any])?["sha"] as? String, HubCache.isCommit(sha) else {
            throw HubError.network("\(settings.endpoint) answered for \(repo)@\(revision) without a commit id")
        }
        return sha
    }

    /// Every file at a commit, with sizes and LFS hashes, following the `Link: rel="next"` pages.
    func tree(_ repo: String, commit: String) async throws -> [TreeEntry] {
        var url: String? = settings.endpoint + "/api/models/\(repo)/tree/\(commit)?recursive=true"
        var entries: [TreeEntry] = []
        var pages = 0
        while let next = url {
            pages += 1
            guard pages <= 100 else { throw HubError.network("the file list of \(repo) runs past 100 pages") }
            let (object, link) = try await jsonWithLink(next, repo: repo)
            guard let items = object as? [[String: Any]] else { throw HubError.network("\(settings.endpoint) sent a file list for \(repo) that is not a list") }
            for item in items where item["type"] as? String == "file" {
                guard let path = item["path"] as? String, let size = (item["size"] as? NSNumber)?.int64Value, size >= 0,
                      let oid = item["oid"] as? String, HubListing.isSafe(path: path), oid.allSatisfy(\.isHexDigit), oid.count == 40 else { continue }
                let lfs = (item["lfs"] as? [String: Any])?["oid"] as? String
                let sha256 = lfs.flatMap { $0.count == 64 && $0.allSatisfy(\.isHexDigit) ? $0.lowercased() : nil }
                entries.append(TreeEntry(path: path, size: size, oid: oid.lowercased(), sha256: sha256))
            }
            url = link.flatMap { HubListing.nextPage($0, base: next) }
        }
        return entries
    }

    /// A file's bytes from `offset` on: GET /{repo}/resolve/{commit}/{file}, redirects followed.
    func resolve(_ repo: String, commit: String, file: String, offset: Int64) async throws -> HTTPClientResponse {
        let path = file.split(separator: "/").map { escape(String($0)) }.joined(separator: "/")
        return try await get(settings.endpoint + "/\(repo)/resolve/\(commit)/\(path)", repo: repo,
                             headers: offset > 0 ? [("Range", "bytes=\(offset)-")] : [], timeout: .hours(24), accept: [200, 206, 416])
    }

    /// A GET that follows up to 10 redirects itself, sending the token only to the hub's own host.
    func get(_ url: String, repo: String, headers: [(String, String)] = [], timeout: TimeAmount = .seconds(60),
             accept: Set<UInt> = [200]) async throws -> HTTPClientResponse {
        var current = url
        for _ in 0...10 {
            var request = HTTPClientRequest(url: current)
            request.headers.add(name: "User-Agent", value: "swift-llama")
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let token = settings.token, Self.host(current) == Self.host(settings.endpoint) {
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
            }
            let response: HTTPClientResponse
            do { response = try await client.execute(request, timeout: timeout) } catch {
                throw HubError.unreachable("cannot reach \(Self.host(current) ?? current): \(error). Check the connection (or HF_ENDPOINT); models already in the cache run with --offline")
            }
            let code = response.status.code
            if [301, 302, 303, 307, 308].contains(code), let location = response.headers.first(name: "location") {
                guard let next = URL(string: location, relativeTo: URL(string: current))?.absoluteURL.absoluteString else {
                    throw HubError.network("\(current) redirected to an unreadable address: \(location)")
                }
                current = next
                continue
            }
            if accept.contains(code) { return response }
            throw failure(for: response, repo: repo, url: current)
        }
        throw HubError.network("too many redirects from \(url)")
    }

    func failure(for response: HTTPClientResponse, repo: String, url: String) -> HubError {
        let code = response.status.code
        switch code {
        case 401, 403:
            if settings.token == nil {
                return .unauthorized("\(repo) needs a Hugging Face token: it is gated or private (or does not exist). Create a token at https://huggingface.co/settings/tokens, accept the model's terms on its page, then set HF_TOKEN.")
            }
            return .unauthorized("the token in HF_TOKEN was refused for \(repo) (HTTP \(code)). Check that it is valid and that you accepted the model's terms on its page.")
        case 404:
            return .notFound("\(repo) was not found at \(settings.endpoint) (HTTP 404 for \(url)). Check the name; GGUF models are listed at https://huggingface.co/models?library=gguf")
        case 429, 500...599:
            return .network("\(Self.host(url) ?? url) answered HTTP \(code)")
        default:
            return .network("\(url) answered HTTP \(code)")
        }
    }

    private func json(_ url: String, repo: String) async throws -> Any {
        try await jsonWithLink(url, repo: repo).0
    }

    private func jsonWithLink(_ url: String, repo: String) async throws -> (Any, String?) {
        var attempt = 0
        while true {
            do {
                let response = try await get(url, repo: repo)
                let body = try await response.body.collect(upTo: 64 << 20)
                guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) else {
                    throw HubError.network("\(url) did not answer with JSON")
                }
                return (object, response.headers.first(name: "link"))
            } catch let error as HubError {
                // A hub that answers badly is asked again; one that cannot be reached is not (the cache may serve).
                guard case .network = error, attempt < settings.retries else { throw error }
            } catch {
                guard attempt < settings.retries else { throw HubError.network("\(url): \(error)") }
            }
            attempt += 1
            try await Task.sleep(for: .seconds(settings.retryDelay * Double(1 << (attempt - 1))))
        }
    }

    static func host(_ url: String) -> String? {
        guard let components = URLComponents(string: url), let host = components.host else { return nil }
        return components.port.map { "\(host):\($0)" } ?? host
    }

    func escape(_ part: String) -> String {
        part.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? part
    }
}

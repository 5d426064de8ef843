import Foundation
import GGUF

/// A model file (or split model) in the cache, as `llama ls` shows it.
public struct CachedModel: Sendable {
    public var repo: String
    public var commit: String
    public var files: [String]
    public var quant: String?
    /// `general.architecture` of the first file, nil where it cannot be read.
    public var architecture: String?
    public var bytes: Int64
    /// When a blob of it was last read (its access time).
    public var lastUsed: Date?
    public var path: String
}

extension HubCache {
    /// Every GGUF model in the cache: per repository, the files of its newest snapshot first;
    /// a file name seen in a newer snapshot hides older copies.
    public func models() -> [CachedModel] {
        var result: [CachedModel] = []
        for repo in repositories() {
            var seen = Set<String>()
            for commit in commits(repo) {
                let base = snapshot(repo, commit)
                for candidate in FileChoice.candidates(files(repo, commit: commit)) where seen.insert(candidate.files[0]).inserted {
                    var bytes: Int64 = 0
                    var used: Date?
                    for file in candidate.files {
                        var info = stat()
                        guard stat(base + "/" + file, &info) == 0 else { continue }
                        bytes += Int64(info.st_size)
                        #if canImport(Darwin)
                        let access = Date(timeIntervalSince1970: Double(info.st_atimespec.tv_sec))
                        #else
                        let access = Date(timeIntervalSince1970: Double(info.st_atim.tv_sec))
                        #endif
                        used = max(used ?? access, access)
                    }
                    let architecture = (try? GGUFFile(path: base + "/" + candidate.files[0]))?.string("general.architecture")
                    result.append(CachedModel(repo: repo, commit: commit, files: candidate.files, quant: candidate.quant,
                                              architecture: architecture, bytes: bytes, lastUsed: used, path: base + "/" + candidate.files[0]))
                }
            }
        }
        return result
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Hugging Face hub's cache layout, shared with `huggingface_hub` and llama.cpp, so a file
/// fetched by one is found by the others:
///
///     models--user--repo/blobs/<sha256>                 the bytes, once
///     models--user--repo/snapshots/<commit>/<file>      relative symlink to ../../blobs/<sha256>
///     models--user--repo/refs/main                      the commit main pointed at
public struct HubCache: Sendable {
    public var root: String

    public init(root: String) { self.root = root }

    /// `$LLAMA_CACHE`, else `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let cache = value("LLAMA_CACHE") ?? value("HF_HUB_CACHE") {
            root = cache
        } else if let home = value("HF_HOME") {
            root = home + "/hub"
        } else {
            root = (value("HOME") ?? NSHomeDirectory()) + "/.cache/huggingface/hub"
        }
    }

    public func folder(_ repo: String) -> String { root + "/models--" + repo.replacingOccurrences(of: "/", with: "--") }
    func blob(_ repo: String, _ hash: String) -> String { folder(repo) + "/blobs/" + hash }
    public func snapshot(_ repo: String, _ commit: String) -> String { folder(repo) + "/snapshots/" + commit }

    /// The commit a branch or tag pointed at when last fetched (a commit id stands for itself).
    public func commit(_ repo: String, revision: String) -> String? {
        if Self.isCommit(revision) { return FileManager.default.fileExists(atPath: snapshot(repo, revision)) ? revision : nil }
        guard let text = try? String(contentsOfFile: folder(repo) + "/refs/" + revision, encoding: .utf8) else { return nil }
        let commit = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return Self.isCommit(commit) ? commit : nil
    }

    public func setRef(_ repo: String, revision: String, commit: String) throws(HubError) {
        guard !Self.isCommit(revision) else { return }
        let path = folder(repo) + "/refs/" + revision
        try makeDirectory((path as NSString).deletingLastPathComponent)
        do { try commit.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw HubError.disk("cannot write \(path): \(error.localizedDescription)")
        }
    }

    /// Points snapshots/<commit>/<file> at the blob, as a relative link (the cache can move).
    public func link(_ repo: String, commit: String, file: String, hash: String) throws(HubError) {
        let path = snapshot(repo, commit) + "/" + file
        try makeDirectory((path as NSString).deletingLastPathComponent)
        let depth = file.split(separator: "/").count + 1  // out of the file's folders, then snapshots/<commit>
        let target = String(repeating: "../", count: depth) + "blobs/" + hash
        unlink(path)
        guard symlink(target, path) == 0 else {
            throw HubError.disk("cannot link \(path) to its blob: \(String(cString: strerror(errno)))")
        }
    }

    /// Files of a snapshot, relative to it (links whose blob is missing left out).
    public func files(_ repo: String, commit: String) -> [String] {
        let base = snapshot(repo, commit)
        guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
        var result: [String] = []
        while let path = walker.nextObject() as? String {
            var info = stat()
            if stat(base + "/" + path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { result.append(path) }
        }
        return result.sorted()
    }

    /// Repositories in the cache, as `user/repo`.
    public func repositories() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.filter { $0.hasPrefix("models--") }.compactMap { name in
            let parts = name.dropFirst("models--".count).components(separatedBy: "--")
            return parts.count == 2 ? parts.joined(separator: "/") : nil
        }.sorted()
    }

    /// Commits held for a repository, newest snapshot first.
    public func commits(_ repo: String) -> [String] {
        let base = folder(repo) + "/snapshots"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).filter(Self.isCommit)
        func modified(_ name: String) -> Date {
            (try? FileManager.default.attributesOfItem(atPath: base + "/" + name)[.modificationDate] as? Date) ?? .distantPast
        }
        return names.sorted { modified($0) > modified($1) }
    }

    /// Marks a file as used now (its blob's access time, which `llama ls` and huggingface_hub read).
    public func touch(_ path: String) {
        // UTIME_NOW and UTIME_OMIT, which Swift does not import from Glibc's macros.
        #if os(Linux)
        let (now, omit) = ((1 << 30) - 1, (1 << 30) - 2)
        #else
        let (now, omit) = (-1, -2)
        #endif
        var times = [timespec(tv_sec: 0, tv_nsec: now), timespec(tv_sec: 0, tv_nsec: omit)]
        _ = utimensat(AT_FDCWD, path, &times, 0)
    }

    /// Removes files of a snapshot, and their blobs where no other snapshot links to them.
    public func remove(_ repo: String, paths: [String]) throws(HubError) {
        var blobs: Set<String> = []
        for commit in commits(repo) {
            for file in paths {
                let path = snapshot(repo, commit) + "/" + file
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
                    blobs.insert((target as NSString).lastPathComponent)
                }
                unlink(path)
            }
        }
        var stillLinked: Set<String> = []
        for commit in commits(repo) {
            let base = snapshot(repo, commit)
            for file in files(repo, commit: commit) {
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: base + "/" + file) {
                    stillLinked.insert((target as NSString).lastPathComponent)
                }
            }
        }
        for hash in blobs.subtracting(stillLinked) { unlink(blob(repo, hash)) }
        // A repository left with no files goes entirely, as `huggingface-cli delete-cache` leaves it.
        if commits(repo).allSatisfy({ files(repo, commit: $0).isEmpty }) { try removeRepository(repo) }
    }

    public func removeRepository(_ repo: String) throws(HubError) {
        do { try FileManager.default.removeItem(atPath: folder(repo)) } catch {
            throw HubError.disk("cannot remove \(folder(repo)): \(error.localizedDescription)")
        }
    }

    public func makeDirectory(_ path: String) throws(HubError) {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw HubError.disk("cannot create \(path): \(error.localizedDescription). Set LLAMA_CACHE to a writable folder.")
        }
    }

    static func isCommit(_ text: String) -> Bool { text.count == 40 && text.allSatisfy(\.isHexDigit) }
}

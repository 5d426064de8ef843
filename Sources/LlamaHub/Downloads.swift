import AsyncHTTPClient
import Crypto
import Foundation
import GGUF
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files of one commit into the cache's blobs: into `<blob>.incomplete` first (as huggingface_hub
/// names it), resumed with a Range request after a dropped connection or an interrupted run,
/// retried with backoff, checked against the hub's hash, then renamed into place and linked.
struct Downloads: Sendable {
    let api: HubAPI
    let cache: HubCache
    let repo: String
    let commit: String
    let log: @Sendable (String) -> Void
    var observer: (@Sendable (FileProgress) -> Void)? = nil

    /// Fails before any byte moves when the files' missing bytes do not fit on the disk.
    func checkSpace(for entries: [TreeEntry]) throws {
        // Sizes come from the hub: added without trapping (a listing could claim exabytes).
        let missing = entries.reduce(Int64(0)) { sum, entry in
            let blob = cache.blob(repo, entry.hash)
            if Self.size(blob) == entry.size { return sum }
            let rest = max(0, entry.size - min(entry.size, max(0, Self.size(blob + ".incomplete") ?? 0)))
            let (total, overflow) = sum.addingReportingOverflow(rest)
            return overflow ? .max : total
        }
        guard missing > 0 else { return }
        let folder = cache.folder(repo) + "/blobs"
        try cache.makeDirectory(folder)
        var info = statvfs()
        guard statvfs(folder, &info) == 0 else { return }
        let (bytes, overflow) = Int64(info.f_bavail).multipliedReportingOverflow(by: Int64(info.f_frsize))
        let free = overflow ? .max : bytes
        let needed = missing > .max - (64 << 20) ? .max : missing + (64 << 20)  // and some room to spare
        guard free >= needed else {
            throw HubError.disk("\(repo) needs \(Progress.bytes(missing)) more, and \(folder) has \(Progress.bytes(free)) free. Free some space, or set LLAMA_CACHE to a folder on a larger disk.")
        }
    }

    /// The entry's blob in the cache, downloading what is missing, and its snapshot link.
    func fetch(_ entry: TreeEntry) async throws {
        let blob = cache.blob(repo, entry.hash)
        if Self.size(blob) != entry.size {
            try cache.makeDirectory(cache.folder(repo) + "/blobs")
            let lockFolder = cache.root + "/.locks/" + (cache.folder(repo) as NSString).lastPathComponent
            try cache.makeDirectory(lockFolder)
            // One download of a blob at a time, across processes (huggingface_hub locks the same file).
            let lock: FileLock
            do {
                lock = try FileLock(path: lockFolder + "/" + entry.hash + ".lock")
            } catch {
                throw HubError.disk(error.description)
            }
            defer { lock.unlock() }
            if Self.size(blob) != entry.size { try await download(entry, to: blob) }
        }
        observer?(FileProgress(file: entry.path, digest: entry.hash, total: entry.size, completed: entry.size))
        try cache.link(repo, commit: commit, file: entry.path, hash: entry.hash)
    }

    private func download(_ entry: TreeEntry, to blob: String) async throws {
        let partial = blob + ".incomplete"
        var report: (@Sendable (Int64) -> Void)? = nil
        if let observer {
            report = { completed in observer(FileProgress(file: entry.path, digest: entry.hash, total: entry.size, completed: completed)) }
        }
        let progress = Progress(name: entry.path, total: entry.size, log: log, observer: report)
        var failures = 0
        while true {
            do {
                try await resume(entry, into: partial, progress: progress)
                break
            } catch let error as HubError {
                guard error.isTransient, failures < api.settings.retries else {
                    progress.interrupt()
                    if error.isTransient {
                        throw HubError.network("\(error); \(Progress.bytes(Self.size(partial) ?? 0)) of \(entry.path) are kept: run the same command again to resume")
                    }
                    throw error
                }
                failures += 1
                let delay = api.settings.retryDelay * Double(1 << (failures - 1))
                progress.interrupt()
                log("\(entry.path): \(error); retrying in \(delay) s (attempt \(failures + 1) of \(api.settings.retries + 1))")
                try await Task.sleep(for: .seconds(delay))
            }
        }
        progress.finish()
        let (digest, expected) = try Self.hash(partial, entry)
        guard digest == expected else {
            unlink(partial)
            throw HubError.integrity("\(entry.path) arrived with hash \(digest), but the hub lists \(expected); the download was deleted. Run the command again; if it repeats, the server or a proxy is changing the file.")
        }
        guard rename(partial, blob) == 0 else {
            throw HubError.disk("cannot move \(partial) into place: \(String(cString: strerror(errno)))")
        }
    }

    /// Appends the rest of the file to `partial`, from its current size (a network error leaves what arrived).
    private func resume(_ entry: TreeEntry, into partial: String, progress: Progress) async throws {
        var offset = Self.size(partial) ?? 0
        if offset > entry.size { try Self.truncate(partial); offset = 0 }
        if offset == entry.size { return }
        let response = try await api.resolve(repo, commit: commit, file: entry.path, offset: offset)
        switch response.status.code {
        case 416:  // nothing past `offset`: the partial is whole or wrong, which the hash tells
            if offset == entry.size { return }
            try Self.truncate(partial)
            throw HubError.network("the server refused to resume \(entry.path) at byte \(offset)")
        case 200 where offset > 0:  // the server ignored the Range: start over
            try Self.truncate(partial)
            offset = 0
        case 206:
            let range = response.headers.first(name: "content-range") ?? ""
            guard range.hasPrefix("bytes \(offset)-") else {
                try Self.truncate(partial)
                throw HubError.network("the server resumed \(entry.path) at the wrong place (\(range))")
            }
        default: break
        }
        guard let file = FileHandle(forWritingAtPath: partial) ?? Self.create(partial) else {
            throw HubError.disk("cannot write \(partial): \(String(cString: strerror(errno)))")
        }
        defer { try? file.close() }
        do {
            try file.seek(toOffset: UInt64(offset))
            progress.start(at: offset)
            var written = offset
            for try await chunk in response.body {
                written += Int64(chunk.readableBytes)
                guard written <= entry.size else {
                    try? file.truncate(atOffset: 0)
                    throw HubError.network("the server sent more than the \(entry.size) bytes of \(entry.path)")
                }
                try file.write(contentsOf: Data(chunk.readableBytesView))
                progress.update(written)
            }
            guard written == entry.size else { throw HubError.network("the connection closed after \(Progress.bytes(written)) of \(entry.path)") }
        } catch let error as HubError {
            throw error
        } catch let error as CocoaError {
            throw HubError.disk("cannot write \(partial): \(error.localizedDescription)")
        } catch {
            throw HubError.network("\(entry.path): \(error)")
        }
    }

    /// The SHA-256 of the file for LFS entries, else git's blob id, with the value the hub listed.
    static func hash(_ path: String, _ entry: TreeEntry) throws -> (String, String) {
        guard let file = FileHandle(forReadingAtPath: path) else { throw HubError.disk("cannot read \(path)") }
        defer { try? file.close() }
        func digest<H: HashFunction>(_ hasher: inout H) throws -> String {
            while let data = try file.read(upToCount: 8 << 20), !data.isEmpty { hasher.update(data: data) }
            return hasher.finalize().map { String(format: "%02x", $0) }.joined()
        }
        if let sha256 = entry.sha256 {
            var hasher = SHA256()
            return (try digest(&hasher), sha256)
        }
        var hasher = Insecure.SHA1()
        hasher.update(data: Data("blob \(entry.size)\0".utf8))
        return (try digest(&hasher), entry.oid)
    }

    static func size(_ path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }

    static func truncate(_ path: String) throws {
        guard let file = FileHandle(forWritingAtPath: path) else { return }
        defer { try? file.close() }
        do { try file.truncate(atOffset: 0) } catch { throw HubError.disk("cannot reset \(path): \(error.localizedDescription)") }
    }

    static func create(_ path: String) -> FileHandle? {
        FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil
    }
}

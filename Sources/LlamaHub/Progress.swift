import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How far one file's download has come, for a caller that shows it its own way (Ollama's
/// /api/pull progress objects).
public struct FileProgress: Sendable {
    public var file: String
    /// The blob's name: the LFS SHA-256 (else the git blob id).
    public var digest: String
    public var total: Int64
    public var completed: Int64
}

/// A download's progress on stderr: a bar redrawn in place on a terminal (bytes, rate, ETA), else
/// a plain line every few seconds, for logs. With an observer, the observer gets the figures
/// instead, a few times a second.
final class Progress: @unchecked Sendable {  // used by one download task at a time
    let name: String
    let total: Int64
    let log: @Sendable (String) -> Void
    let observer: (@Sendable (Int64) -> Void)?
    private let terminal: Bool
    private var startTime = Date()
    private var startBytes: Int64 = 0
    private var current: Int64 = 0
    private var lastShown = Date.distantPast
    private var drawn = false

    init(name: String, total: Int64, log: @escaping @Sendable (String) -> Void, observer: (@Sendable (Int64) -> Void)? = nil) {
        self.name = name
        self.total = total
        self.log = log
        self.observer = observer
        terminal = observer == nil && isatty(STDERR_FILENO) == 1
    }

    func start(at bytes: Int64) {
        startTime = Date()
        startBytes = bytes
        current = bytes
        if bytes > 0 { log("\(name): resuming at \(Self.bytes(bytes)) of \(Self.bytes(total))") }
        show(force: true)
    }

    func update(_ bytes: Int64) {
        current = bytes
        show(force: false)
    }

    func finish() {
        current = total
        show(force: true)
        if terminal && drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
    }

    /// Ends the bar's line before another message.
    func interrupt() {
        if terminal && drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
    }

    private func show(force: Bool) {
        let now = Date()
        guard force || now.timeIntervalSince(lastShown) >= (terminal || observer != nil ? 0.2 : 5) else { return }
        lastShown = now
        if let observer {
            observer(current)
            return
        }
        let elapsed = now.timeIntervalSince(startTime)
        let rate = elapsed > 0 ? Double(current - startBytes) / elapsed : 0
        let fraction = total > 0 ? Double(current) / Double(total) : 1
        let eta = rate > 0 ? " ETA \(Self.duration(Double(total - current) / rate))" : ""
        let figures = "\(Self.bytes(current)) / \(Self.bytes(total))  \(Self.bytes(Int64(rate)))/s\(eta)"
        if terminal {
            let width = 24, filled = min(width, Int(fraction * Double(width)))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r\u{1B}[K\(name) [\(bar)] \(Int(fraction * 100))%  \(figures)".utf8))
            drawn = true
        } else {
            log("\(name): \(Int(fraction * 100))%  \(figures)")
        }
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n), unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 360_000 else { return "--" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

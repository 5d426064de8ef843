import Foundation

public enum SystemInfo {
    /// Physical CPU cores (hyper-threads not counted): the default thread count, as llama.cpp uses.
    public static let physicalCores: Int = {
        #if os(Linux)
        // Distinct sibling lists = distinct cores.
        var cores = Set<String>()
        let base = "/sys/devices/system/cpu"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where entry.hasPrefix("cpu") && entry.dropFirst(3).allSatisfy(\.isNumber) {
            if let siblings = try? String(contentsOfFile: "\(base)/\(entry)/topology/thread_siblings_list", encoding: .utf8) {
                cores.insert(siblings.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        if !cores.isEmpty { return min(cores.count, ProcessInfo.processInfo.activeProcessorCount) }
        #endif
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()
}

import ArgumentParser
import Foundation
import Llama

struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show what a model file holds: architecture, hyperparameters, tokenizer, tensors.")

    @OptionGroup var modelOptions: ModelOptions

    @Flag(help: "Print JSON instead of text, for scripts.")
    var json = false

    func run() async throws {
        let file = try await modelOptions.open()
        let info = ModelInfo(file: file)
        if json {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(info), as: UTF8.self))
        } else {
            print(InfoCommand.render(info), terminator: "")
        }
    }

    static func render(_ info: ModelInfo) -> String {
        var lines: [(String, String)] = []
        func add(_ label: String, _ value: CustomStringConvertible?) {
            if let value { lines.append((label, value.description)) }
        }
        add("file", "\(info.path)")
        add("size", "\(formatBytes(info.fileSize)) (GGUF v\(info.ggufVersion))")
        add("name", info.name)
        add("architecture", info.architecture ?? "unknown")
        add("file type", info.fileType)
        let h = info.hyperparameters
        add("context length", h.contextLength)
        add("embedding size", h.embeddingLength)
        add("layers", h.blockCount)
        add("feed-forward size", h.feedForwardLength)
        if let heads = h.headCount {
            add("attention heads", "\(heads) (KV heads \(h.headCountKV ?? heads))")
        }
        if let dims = h.ropeDimensionCount {
            add("RoPE", "dimensions \(dims), base \(formatNumber(h.ropeFreqBase ?? 10_000))")
        }
        add("RMS norm epsilon", h.rmsEpsilon.map { formatNumber($0) })
        if let p = info.particulars {
            var rope = "\(p.ropeStyle) pairs, base \(formatNumber(p.ropeBase)), head size \(p.headSize)"
            if p.ropeScaling != "none" { rope += ", \(p.ropeScaling) scaling" + (p.ropeScalingFactor.map { " x\(formatNumber($0))" } ?? "") }
            if let f = p.ropeFactors { rope += ", factors: \(f)" }
            if p.layersWithoutRoPE > 0 { rope += ", \(p.layersWithoutRoPE) layers without RoPE" }
            add("RoPE details", rope)
            if let w = p.slidingWindow {
                add("sliding window", "\(w) on \(p.slidingLayers) of \(h.blockCount ?? 0) layers"
                    + (p.slidingRopeBase.map { " (RoPE base \(formatNumber($0)) there)" } ?? ""))
            }
            if p.attentionSoftCap != nil || p.finalLogitSoftCap != nil {
                add("soft-caps", [p.attentionSoftCap.map { "attention \(formatNumber($0))" }, p.finalLogitSoftCap.map { "final logits \(formatNumber($0))" }]
                    .compactMap { $0 }.joined(separator: ", "))
            }
            if let s = p.embeddingScale { add("embedding scale", formatNumber(s)) }
            let perToken = LlamaContext.KVCacheType.allCases.compactMap { type in
                p.kvBytesPerToken[type.rawValue].map { "\(type.rawValue) \(CacheTypeOptions.shortBytes($0))" }
            }
            add("KV cache/token", perToken.joined(separator: ", ") + (p.slidingWindow != nil ? " (plus the sliding-window rings)" : ""))
        } else if let why = info.unsupported {
            add("runs", "no: \(why)")
        }
        if let t = info.tokenizer {
            var text = "\(t.kind), \(t.size) tokens"
            if let bos = t.bos { text += ", BOS \(bos)" }
            if let eos = t.eos { text += ", EOS \(eos)" }
            text += t.addBOS ? ", adds BOS" : ", no BOS added"
            if t.chatTemplate { text += ", chat template" }
            add("tokenizer", text)
        } else {
            add("tokenizer", "none")
        }
        let byType = info.tensorTypes.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        add("tensors", info.tensorCount == 0 ? "0 (vocabulary only)" : "\(info.tensorCount): \(byType)")
        add("parameters", formatCount(info.parameterCount))
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { $0.0 + ":" + String(repeating: " ", count: width - $0.0.count + 1) + $0.1 + "\n" }.joined()
    }

    static func formatBytes(_ n: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n), unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(n) bytes" : String(format: "%.2f %@ (%d bytes)", value, units[unit], n)
    }

    static func formatCount(_ n: Int) -> String {
        switch n {
        case 1_000_000_000...: String(format: "%.2f B (%d)", Double(n) / 1e9, n)
        case 1_000_000...: String(format: "%.2f M (%d)", Double(n) / 1e6, n)
        case 1_000...: String(format: "%.2f K (%d)", Double(n) / 1e3, n)
        default: "\(n)"
        }
    }

    static func formatNumber(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(format: "%g", x)
    }
}

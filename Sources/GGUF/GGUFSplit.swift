/// Writing a model as several files, as llama.cpp's gguf-split does: `stem-00001-of-0000N.gguf`
/// ..., the first with all the metadata, each with `split.no`, `split.count` and
/// `split.tensors.count`, and a run of the tensors. `GGUFFile(path:)` reads them back as one.
public enum GGUFSplit {
    /// Writes `file` (one file or a split model) as `parts` files of about equal size (at least one
    /// tensor each) named after `stem`; returns their paths in order.
    @discardableResult
    public static func write(_ file: GGUFFile, parts: Int, stem: String) throws -> [String] {
        let tensors = file.tensors
        guard parts >= 1, parts <= min(9999, max(1, tensors.count)) else {
            throw GGUFError(path: stem, offset: 0, problem: .split("cannot write \(tensors.count) tensors as \(parts) files"))
        }
        // Cut where the running size passes each part's share, leaving every part a tensor.
        let total = tensors.reduce(0) { $0 + $1.byteCount }
        var cuts: [Int] = [0]
        var running = 0
        for (i, tensor) in tensors.enumerated() where cuts.count < parts {
            running += tensor.byteCount
            let remainingTensors = tensors.count - (i + 1), remainingParts = parts - cuts.count
            if running * parts >= total * cuts.count || remainingTensors == remainingParts { cuts.append(i + 1) }
        }
        cuts.append(tensors.count)
        var paths: [String] = []
        for part in 0..<parts {
            var writer = GGUFWriter()
            if part == 0 {
                for (key, value) in file.metadata where !key.hasPrefix("split.") { writer.set(key, value) }
            } else if let alignment = file["general.alignment"] {
                writer.set("general.alignment", alignment)
            }
            writer.set("split.no", .uint16(UInt16(part)))
            writer.set("split.count", .uint16(UInt16(parts)))
            writer.set("split.tensors.count", .int32(Int32(tensors.count)))
            let slice = Array(tensors[cuts[part]..<cuts[part + 1]])
            for tensor in slice { try writer.declareTensor(name: tensor.name, shape: tensor.shape, type: tensor.type) }
            let path = "\(stem)-\(five(part + 1))-of-\(five(parts)).gguf"
            try writer.write(to: path) { index in Array(file.data(of: slice[index])) }
            paths.append(path)
        }
        return paths
    }

    static func five(_ n: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }
}

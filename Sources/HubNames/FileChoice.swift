/// Which GGUF files of a repository make the model asked for: the quant named, else Q4_K_M, else
/// Q8_0, else the first GGUF file, with every shard of a split model.
public enum FileChoice {
    /// A model file, or the shards of one (`name-00001-of-00003.gguf` ...), in order.
    public struct Candidate: Sendable, Equatable {
        public var files: [String]
        /// The quantization named in the file name (`Q4_K_M`), as written there.
        public var quant: String?
    }

    /// The candidates among a repository's files: GGUF files that are not projectors (mmproj) nor
    /// later shards, a split model only when all its shards are present.
    public static func candidates(_ paths: [String]) -> [Candidate] {
        let ggufs = paths.filter { $0.lowercased().hasSuffix(".gguf") && !baseName($0).lowercased().contains("mmproj") }.sorted()
        let present = Set(ggufs)
        var result: [Candidate] = []
        for path in ggufs {
            if let split = Split(path) {
                guard split.index == 1 else { continue }
                let shards = (1...split.count).map { split.path(ofShard: $0) }
                guard shards.allSatisfy(present.contains) else { continue }
                result.append(Candidate(files: shards, quant: quant(of: split.stem)))
            } else {
                result.append(Candidate(files: [path], quant: quant(of: String(path.dropLast(5)))))
            }
        }
        return result
    }

    /// The candidate for `quant` (any case), or the default choice when it is nil.
    public static func choose(_ candidates: [Candidate], quant: String?, repo: String) throws(HubError) -> Candidate {
        guard !candidates.isEmpty else { throw HubError.notFound("\(repo) has no GGUF model files") }
        if let quant {
            if let match = candidates.first(where: { $0.quant?.uppercased() == quant.uppercased() }) { return match }
            throw HubError.notFound("\(repo) has no \(quant.uppercased()) file. Available: \(available(candidates)). Pick one with \(repo):QUANT")
        }
        for preferred in ["Q4_K_M", "Q8_0"] {
            if let match = candidates.first(where: { $0.quant?.uppercased() == preferred }) { return match }
        }
        return candidates[0]
    }

    public static func available(_ candidates: [Candidate]) -> String {
        let names = candidates.map { $0.quant?.uppercased() ?? baseName($0.files[0]) }
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }.joined(separator: ", ")
    }

    /// The last part of a file name (without .gguf) that reads as a quantization: Q4_K_M, IQ2_XS, Q8_0, F16, BF16...
    public static func quant(of stem: String) -> String? {
        let parts = baseName(stem).split(whereSeparator: { $0 == "-" || $0 == "." || $0 == " " })
        return parts.last(where: { isQuant($0) }).map(String.init)
    }

    static func isQuant(_ part: Substring) -> Bool {
        let upper = part.uppercased()
        if ["F16", "BF16", "F32", "FP16", "FP32", "MXFP4"].contains(upper) { return true }
        var rest = Substring(upper)
        if rest.hasPrefix("I") { rest = rest.dropFirst() }
        if rest.hasPrefix("TQ") { rest = rest.dropFirst(2) } else if rest.hasPrefix("Q") { rest = rest.dropFirst() } else { return false }
        guard let digit = rest.first, digit.isNumber else { return false }
        rest = rest.dropFirst()
        if rest.isEmpty { return true }  // Q8
        guard rest.first == "_" else { return false }
        return rest.dropFirst().split(separator: "_", omittingEmptySubsequences: false).allSatisfy { piece in
            !piece.isEmpty && piece.count <= 4 && piece.allSatisfy { $0.isLetter || $0.isNumber }
        }
    }

    static func baseName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    /// `stem-0000i-of-0000n.gguf`.
    public struct Split: Equatable {
        public var stem: String
        public var index: Int
        public var count: Int

        public init?(_ path: String) {
            guard path.lowercased().hasSuffix(".gguf") else { return nil }
            let body = path.dropLast(5)
            // "-00001-of-00003": 5 + 4 + 5 digits after the stem (llama.cpp's gguf-split naming).
            guard body.count > 15 else { return nil }
            let tail = body.suffix(15)
            let index = tail.dropFirst().prefix(5), count = tail.suffix(5)
            guard tail.first == "-", tail.dropFirst(6).prefix(4) == "-of-",
                  let i = Int(index), let n = Int(count), index.allSatisfy(\.isNumber), count.allSatisfy(\.isNumber),
                  n >= 1, i >= 1, i <= n else { return nil }
            stem = String(body.dropLast(15))
            self.index = i
            self.count = n
        }

        public func path(ofShard i: Int) -> String {
            func five(_ n: Int) -> String { let s = String(n); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
            return "\(stem)-\(five(i))-of-\(five(count)).gguf"
        }
    }
}

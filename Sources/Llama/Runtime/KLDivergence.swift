import Foundation
import GGUF
import Tokenizers

// The fidelity instrument of llama.cpp's llama-perplexity: one run saves the log-probabilities
// of every scored token (`--kl-divergence-base FILE`), another compares its own against them
// (`--kl-divergence`). The file format is llama.cpp's, so either side may write it:
//
//   "_logits_"  int32 n_ctx  int32 n_vocab  int32 n_chunk  int32 tokens[n_chunk * n_ctx]
//   then per chunk, per scored row (n_ctx - 1 - n_ctx/2 rows): nv = 2 * ((n_vocab + 1) / 2) + 4
//   uint16 values: float scale, float min_log_prob, then n_vocab log-probabilities quantized as
//   min_log_prob + scale * q (q = 0 for anything more than 16 below the top logit), padding.

/// Writes a llama.cpp logits file.
public final class LogitsFileWriter {
    private let handle: FileHandle
    private let path: String
    private var vocabulary = 0
    private var row: [UInt16] = []

    public init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw ModelError("cannot create '\(path)'; check that its folder exists and is writable")
        }
        self.handle = handle
        self.path = path
    }

    func begin(contextSize: Int, vocabularySize: Int, chunks: Int, tokens: [TokenID]) throws {
        vocabulary = vocabularySize
        row = [UInt16](repeating: 0, count: LogitsFile.rowWidth(vocabularySize))
        var header = Data("_logits_".utf8)
        for v in [Int32(contextSize), Int32(vocabularySize), Int32(chunks)] { withUnsafeBytes(of: v.littleEndian) { header.append(contentsOf: $0) } }
        tokens.withUnsafeBytes { header.append(contentsOf: $0) }
        try write(header)
    }

    /// One scored row: its logits, quantized as llama.cpp does.
    func append(_ logits: ArraySlice<Float>) throws {
        var maxLogit = logits.first!, minLogit = logits.first!
        for v in logits {
            maxLogit = max(maxLogit, v)
            minLogit = min(minLogit, v)
        }
        minLogit = max(minLogit, maxLogit - 16)
        var sum = 0.0
        for v in logits { sum += Double(expf(v - maxLogit)) }
        let logSumExp = Float(log(sum))
        let minLogProbability = minLogit - maxLogit - logSumExp
        let scale = (maxLogit - minLogit) / 65535
        withUnsafeBytes(of: scale) { b in row[0] = b.load(fromByteOffset: 0, as: UInt16.self); row[1] = b.load(fromByteOffset: 2, as: UInt16.self) }
        withUnsafeBytes(of: minLogProbability) { b in row[2] = b.load(fromByteOffset: 0, as: UInt16.self); row[3] = b.load(fromByteOffset: 2, as: UInt16.self) }
        let inverse = scale != 0 ? 1 / scale : 0
        for (i, v) in logits.enumerated() {
            row[4 + i] = scale != 0 && v > minLogit ? UInt16(clamping: Int((inverse * (v - minLogit)).rounded(.toNearestOrEven))) : 0
        }
        try row.withUnsafeBytes { try write(Data($0)) }
    }

    func finish() throws { try handle.close() }

    private func write(_ data: Data) throws {
        do { try handle.write(contentsOf: data) } catch {
            throw ModelError("cannot write '\(path)': \(error.localizedDescription)")
        }
    }
}

/// A llama.cpp logits file, memory-mapped.
public final class LogitsFile: @unchecked Sendable {
    public let contextSize: Int
    public let vocabularySize: Int
    public let chunks: Int
    public let tokens: [TokenID]
    private let mapping: MappedFile
    private let rowsStart: Int

    static func rowWidth(_ vocabulary: Int) -> Int { 2 * ((vocabulary + 1) / 2) + 4 }
    /// Scored rows per chunk.
    var rowsPerChunk: Int { contextSize - 1 - contextSize / 2 }

    public init(path: String) throws {
        do { mapping = try MappedFile(path: path) } catch { throw ModelError("cannot read '\(path)': \(error)") }
        let bytes = mapping.bytes
        func int32(_ offset: Int) -> Int { Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self))) }
        guard bytes.count >= 20, Array(bytes[0..<8]) == Array("_logits_".utf8) else {
            throw ModelError("'\(path)' is not a logits file (llama-perplexity --kl-divergence-base writes them)")
        }
        contextSize = int32(8)
        vocabularySize = int32(12)
        chunks = int32(16)
        guard (4...(1 << 20)).contains(contextSize), (1...LlamaConfiguration.maxDimension).contains(vocabularySize), (1...(1 << 20)).contains(chunks) else {
            throw ModelError("'\(path)': header (n_ctx \(contextSize), n_vocab \(vocabularySize), chunks \(chunks)) is out of range")
        }
        // Checked arithmetic: the header is untrusted, and its sizes multiply past Int.max.
        let tokenCount = contextSize * chunks  // at most 2^40
        rowsStart = 20 + 4 * tokenCount
        let rows = chunks * (contextSize - 1 - contextSize / 2)
        let (rowBytes, o1) = rows.multipliedReportingOverflow(by: Self.rowWidth(vocabularySize) * 2)
        let (needed, o2) = rowsStart.addingReportingOverflow(rowBytes)
        guard !o1, !o2, bytes.count >= needed else {
            throw ModelError("'\(path)' is truncated: \(bytes.count) bytes, \(needed) expected for \(chunks) chunks of \(contextSize)")
        }
        tokens = (0..<tokenCount).map { TokenID(int32(20 + 4 * $0)) }
    }

    /// The base's log-probability of every token for scored row `row` of `chunk`, into `out`.
    func logProbabilities(chunk: Int, row: Int, into out: UnsafeMutablePointer<Float>) {
        let width = Self.rowWidth(vocabularySize)
        let offset = rowsStart + ((chunk * rowsPerChunk) + row) * width * 2
        let p = mapping.bytes.baseAddress! + offset
        let scale = p.loadUnaligned(as: Float.self), minimum = p.loadUnaligned(fromByteOffset: 4, as: Float.self)
        let q = p + 8
        for i in 0..<vocabularySize { out[i] = scale * Float(q.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) + minimum }
    }
}

/// llama.cpp's KL-divergence statistics of one model's token distributions against a base's.
public struct KLDivergenceResult: Sendable, Codable {
    public var chunks: Int
    public var count: Int
    public var perplexity: Double, perplexityError: Double
    public var basePerplexity: Double, basePerplexityError: Double
    /// Correlation of the two log-perplexities.
    public var correlation: Double
    /// ln(PPL / PPL(base)) and PPL / PPL(base), with uncertainties.
    public var logPerplexityRatio: Double, logPerplexityRatioError: Double
    public var perplexityRatio: Double, perplexityRatioError: Double
    public var meanKLD: Double, meanKLDError: Double
    public var maxKLD: Double, medianKLD: Double
    /// 99.9, 99, 95, 90, 10, 5, 1, 0.1 percentiles.
    public var kldPercentiles: [Double: Double]
    public var minKLD: Double
    /// Mean probability difference of the right token, its RMS, and the largest.
    public var meanDeltaP: Double, rmsDeltaP: Double, maxDeltaP: Double
    /// How often the most likely token is the same.
    public var sameTop: Double, sameTopError: Double
}

/// Running sums, as llama.cpp keeps them.
struct KLDAccumulator {
    var nll = 0.0, nll2 = 0.0, nllBase = 0.0, nllBase2 = 0.0, nllNllBase = 0.0
    var kld = 0.0, kld2 = 0.0, pDiff = 0.0, pDiff2 = 0.0, pDiff4 = 0.0
    var maxPDiff: Float = 0
    var sameTop = 0, count = 0
    var kldValues: [Float] = []
    var pDiffValues: [Float] = []

    static func meanAndUncertainty(_ sum: Double, _ sum2: Double, _ count: Int) -> (Double, Double) {
        guard count >= 1 else { return (0, 0) }
        let f = sum / Double(count)
        let df = sum2 / Double(count) - f * f
        return (f, df > 0 && count > 10 ? (df / Double(count - 1)).squareRoot() : 0)
    }

    /// One scored row: our logits against the base's log-probabilities, `token` the right one.
    mutating func add(logits: ArraySlice<Float>, base: UnsafePointer<Float>, token: Int) {
        var maxLogit = logits.first!, top = 0
        for (i, v) in logits.enumerated() where v > maxLogit {
            maxLogit = v
            top = i
        }
        var sumExp = 0.0
        for v in logits { sumExp += Double(expf(v - maxLogit)) }
        let logSumExp = Float(log(sumExp))
        let s = logits.startIndex
        let nll = maxLogit + logSumExp - logits[s + token]
        let nllB = -base[token]
        self.nll += Double(nll); nll2 += Double(nll * nll)
        nllBase += Double(nllB); nllBase2 += Double(nllB * nllB)
        nllNllBase += Double(nll * nllB)
        let shift = maxLogit + logSumExp
        var sum = 0.0
        var topBase = -1
        var topBaseValue: Float = 0
        for i in 0..<logits.count {
            let pLogBase = base[i]
            if i == 0 || pLogBase > topBaseValue {
                topBaseValue = pLogBase
                topBase = i
            }
            if pLogBase > -16 { sum += Double(expf(pLogBase) * (pLogBase - logits[s + i] + shift)) }
        }
        kld += sum; kld2 += sum * sum
        count += 1
        if top == topBase { sameTop += 1 }
        let d = expf(-nll) - expf(-nllB)
        pDiff += Double(d)
        pDiff2 += Double(d * d)
        pDiff4 += Double(d * d) * Double(d * d)
        maxPDiff = max(maxPDiff, abs(d))
        kldValues.append(Float(sum))
        pDiffValues.append(d)
    }

    func result(chunks: Int) -> KLDivergenceResult {
        let (logPPL, logPPLError) = Self.meanAndUncertainty(nll, nll2, count)
        let (logBase, logBaseError) = Self.meanAndUncertainty(nllBase, nllBase2, count)
        let covariance = count < 10 ? 0 : (nllNllBase / Double(count) - (nll / Double(count)) * (nllBase / Double(count))) / Double(count - 1)
        let ratio = logPPL - logBase
        let ratioError = (logPPLError * logPPLError + logBaseError * logBaseError - 2 * covariance).squareRoot()
        let (meanKLD, meanKLDError) = Self.meanAndUncertainty(kld, kld2, count)
        let (meanP, _) = Self.meanAndUncertainty(pDiff, pDiff2, count)
        let (mse, _) = Self.meanAndUncertainty(pDiff2, pDiff4, count)
        let sorted = kldValues.sorted()
        func percentile(_ f: Double) -> Double {
            let p = f * Double(sorted.count - 1)
            let i = Int(p), r = p - Double(i)
            return (1 - r) * Double(sorted[i]) + r * Double(sorted[min(i + 1, sorted.count - 1)])
        }
        let median = sorted.count % 2 == 0 ? 0.5 * Double(sorted[sorted.count / 2] + sorted[sorted.count / 2 - 1]) : Double(sorted[sorted.count / 2])
        let top = Double(sameTop) / Double(count)
        var percentiles: [Double: Double] = [:]
        for f in [0.999, 0.99, 0.95, 0.90, 0.10, 0.05, 0.01, 0.001] { percentiles[f] = percentile(f) }
        return KLDivergenceResult(
            chunks: chunks, count: count, perplexity: exp(logPPL), perplexityError: exp(logPPL) * logPPLError,
            basePerplexity: exp(logBase), basePerplexityError: exp(logBase) * logBaseError,
            correlation: covariance / (logPPLError * logBaseError),
            logPerplexityRatio: ratio, logPerplexityRatioError: ratioError,
            perplexityRatio: exp(ratio), perplexityRatioError: exp(ratio) * ratioError,
            meanKLD: meanKLD, meanKLDError: meanKLDError, maxKLD: Double(sorted.last ?? 0), medianKLD: median,
            kldPercentiles: percentiles, minKLD: Double(sorted.first ?? 0),
            meanDeltaP: meanP, rmsDeltaP: mse.squareRoot(), maxDeltaP: Double(maxPDiff),
            sameTop: top, sameTopError: count > 1 ? (top * (1 - top) / Double(count - 1)).squareRoot() : 0)
    }
}

extension LlamaContext {
    /// Compares this model's token distributions with those saved in `base`, over the base's own
    /// tokens and chunks (its context size must be this context's). `progress` hears each chunk.
    public func klDivergence(against base: LogitsFile, maxChunks: Int? = nil,
                             progress: (_ chunk: Int, _ of: Int, _ partial: KLDivergenceResult, _ seconds: Double) -> Void = { _, _, _, _ in }) throws -> KLDivergenceResult {
        let n = base.contextSize
        guard n == contextSize else {
            throw ModelError("the logits file was made with a context of \(n) but this run uses \(contextSize); use a context size of \(n)")
        }
        let vocab = model.configuration.vocabularySize
        guard base.vocabularySize == vocab else {
            throw ModelError("the logits file has a vocabulary of \(base.vocabularySize) but the model has \(vocab); compare models that share a tokenizer")
        }
        for t in base.tokens where t < 0 || Int(t) >= vocab {
            throw ModelError("the logits file holds token \(t), outside the model's vocabulary of \(vocab)")
        }
        let chunks = min(maxChunks ?? base.chunks, base.chunks)
        var sums = KLDAccumulator()
        let baseRow = UnsafeMutablePointer<Float>.allocate(capacity: vocab)
        defer { baseRow.deallocate() }
        for c in 0..<chunks {
            let start = Date()
            let chunk = Array(base.tokens[(c * n)..<((c + 1) * n)])
            let logits = try chunkLogits(chunk)
            for r in 0..<base.rowsPerChunk {
                base.logProbabilities(chunk: c, row: r, into: baseRow)
                sums.add(logits: logits[(r * vocab)..<((r + 1) * vocab)], base: baseRow, token: Int(chunk[n / 2 + r + 1]))
            }
            progress(c + 1, chunks, sums.result(chunks: c + 1), Date().timeIntervalSince(start))
        }
        return sums.result(chunks: chunks)
    }
}

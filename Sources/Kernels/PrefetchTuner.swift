import CKernels
import Foundation

/// Chooses how far ahead the kernels prefetch the weights they stream during generation, by
/// measuring, not by CPU name.
///
/// Software prefetch can help or halve a generation product depending on the CPU: a Zen 5 core
/// needed 8 KB in flight, while on a Zen 4 the same prefetches halved K-type generation and asking
/// for the block being read was fastest. So the first generation products that stream enough
/// weight bytes take turns with the candidate distances, matrix by matrix (each matrix's first
/// product, from a cold cache, is not counted). Each candidate keeps, per matrix, its fastest of
/// `samples` products; once every matrix seen has them all (at least `matrices`, or 32 of them),
/// the candidate with the least total time stays for the life of the process.
/// `LLAMA_PREFETCH=BYTES` fixes the distance instead.
///
/// The prefetch distance is only a hint: every candidate gives the same results.
public final class PrefetchTuner: @unchecked Sendable {
    /// The one the matrix products report to.
    public static let shared = PrefetchTuner(environment: ProcessInfo.processInfo.environment["LLAMA_PREFETCH"])

    /// The distances tried, in bytes: the block being read, and 8 KB ahead.
    public static let defaultCandidates: [Int32] = [0, 8192]
    /// Products smaller than this are not timed: they may come from cache, and the pool's
    /// hand-off is a large part of their time.
    public static let minimumBytes = 1 << 20

    public let candidates: [Int32]
    public let samples: Int
    /// Whether the environment fixed the distance (nothing is measured then).
    public let fixedByEnvironment: Bool
    private let lock = NSLock()
    /// Per matrix: products seen, and per candidate the products timed and the fastest.
    private struct Timings { var seen = 0; var counts: [Int]; var fastest: [UInt64] }
    private var timings: [UInt: Timings] = [:]
    private var chosen: Int32?

    /// - Parameter environment: the value of `LLAMA_PREFETCH`, if set: a byte count fixes the
    ///   distance; anything else is ignored (the tuner measures).
    public init(candidates: [Int32] = PrefetchTuner.defaultCandidates, samples: Int = 3, environment: String? = nil) {
        precondition(!candidates.isEmpty && samples > 0)
        self.candidates = candidates
        self.samples = samples
        if let environment, let bytes = Int32(environment.trimmingCharacters(in: .whitespaces)), bytes >= 0 {
            chosen = bytes
        }
        fixedByEnvironment = chosen != nil
    }

    /// The distance settled on, or nil while still measuring.
    public var choice: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return chosen
    }

    /// A product about to stream `bytes` of the weights at `matrix`: the distance it should use,
    /// and whether its time is wanted (`record`). Sets the kernels' distance.
    public func begin(matrix: UnsafeRawPointer, bytes: Int) -> (distance: Int32, timed: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if let chosen {
            if llk_get_prefetch_ahead() != chosen { llk_set_prefetch_ahead(chosen) }
            return (chosen, false)
        }
        let key = UInt(bitPattern: matrix)
        guard bytes >= Self.minimumBytes, timings[key] != nil || timings.count < 4096 else { return (llk_get_prefetch_ahead(), false) }
        var entry = timings[key] ?? Timings(counts: Array(repeating: 0, count: candidates.count),
                                            fastest: Array(repeating: .max, count: candidates.count))
        entry.seen += 1
        timings[key] = entry
        guard entry.seen > 1 else { return (llk_get_prefetch_ahead(), false) }  // the cold first product
        let next = entry.counts.indices.min { entry.counts[$0] < entry.counts[$1] } ?? 0
        llk_set_prefetch_ahead(candidates[next])
        return (candidates[next], true)
    }

    /// The time a product of the weights at `matrix`, begun with `distance`, took.
    public func record(matrix: UnsafeRawPointer, distance: Int32, nanoseconds: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        let key = UInt(bitPattern: matrix)
        guard chosen == nil, let index = candidates.firstIndex(of: distance), var entry = timings[key] else { return }
        entry.counts[index] += 1
        entry.fastest[index] = min(entry.fastest[index], nanoseconds)
        timings[key] = entry
        let complete = timings.values.filter { $0.counts.allSatisfy { $0 >= samples } }
        guard complete.count >= 32 || (!complete.isEmpty && complete.count == timings.count) else { return }
        let totals = candidates.indices.map { c in complete.reduce(0.0) { $0 + Double($1.fastest[c]) } }
        let best = totals.indices.min { totals[$0] < totals[$1] } ?? 0
        chosen = candidates[best]
        llk_set_prefetch_ahead(candidates[best])
        timings = [:]
    }
}

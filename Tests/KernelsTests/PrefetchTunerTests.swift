import CKernels
import Kernels
import Testing

/// The prefetch distance: a hint that never changes a result, chosen by measurement.
@Suite struct PrefetchTunerTests {
    /// Fake weight addresses: the tuner only uses them as names.
    static func matrix(_ i: Int) -> UnsafeRawPointer { UnsafeRawPointer(bitPattern: 0x10000 + 4096 * i)! }

    /// Runs products of `matrices` matrices round after round, each taking `time(distance)`,
    /// until the tuner chooses (or `rounds` pass).
    static func settle(_ tuner: PrefetchTuner, matrices: Int, rounds: Int = 50, time: (Int32) -> UInt64) -> (Int32?, timed: Int) {
        var timed = 0
        for _ in 0..<rounds where tuner.choice == nil {
            for m in 0..<matrices {
                let (distance, wanted) = tuner.begin(matrix: matrix(m), bytes: 4 << 20)
                guard wanted else { continue }
                timed += 1
                tuner.record(matrix: matrix(m), distance: distance, nanoseconds: time(distance))
            }
        }
        return (tuner.choice, timed)
    }

    @Test func theFasterDistanceIsChosenWhicheverItIs() {
        let saved = llk_get_prefetch_ahead()
        defer { llk_set_prefetch_ahead(saved) }
        for faster: Int32 in [0, 8192] {
            let tuner = PrefetchTuner(candidates: [0, 8192], samples: 3)
            // Noisy: every seventh product of the faster distance is slowed (another process), yet
            // the fastest of three per matrix sees through it.
            var n = 0
            let (choice, timed) = Self.settle(tuner, matrices: 40) { distance in
                n += 1
                return distance == faster ? (n % 7 == 0 ? 900_000 : 100_000) : 150_000
            }
            #expect(choice == faster)
            // 32 matrices complete: 3 products of each candidate each, and no more than a round more.
            #expect(timed >= 32 * 6 && timed <= 40 * 7)
        }
    }

    @Test func smallAndFirstProductsAreNotTimed() {
        let saved = llk_get_prefetch_ahead()
        defer { llk_set_prefetch_ahead(saved) }
        let tuner = PrefetchTuner(candidates: [0, 8192], samples: 2)
        #expect(!tuner.begin(matrix: Self.matrix(1), bytes: PrefetchTuner.minimumBytes - 1).timed)
        #expect(!tuner.begin(matrix: Self.matrix(1), bytes: PrefetchTuner.minimumBytes - 1).timed)
        #expect(!tuner.begin(matrix: Self.matrix(2), bytes: PrefetchTuner.minimumBytes).timed)  // cold
        #expect(tuner.begin(matrix: Self.matrix(2), bytes: PrefetchTuner.minimumBytes).timed)
        // A model with a single large matrix (a small model's output) still settles.
        let (choice, _) = Self.settle(tuner, matrices: 3) { $0 == 0 ? 10 : 20 }
        #expect(choice == 0)
    }

    // The kernels' distance is process-wide and other suites' products set it as they run, so
    // these tests read the tuners' choices, not it.
    @Test func theEnvironmentFixesTheDistance() {
        let saved = llk_get_prefetch_ahead()
        defer { llk_set_prefetch_ahead(saved) }
        let fixed = PrefetchTuner(environment: " 4096 ")
        #expect(fixed.choice == 4096 && fixed.fixedByEnvironment)
        let product = fixed.begin(matrix: Self.matrix(0), bytes: 8 << 20)
        #expect(product.distance == 4096 && !product.timed)
        #expect(PrefetchTuner(environment: "fast").choice == nil && !PrefetchTuner(environment: "fast").fixedByEnvironment)
        #expect(PrefetchTuner(environment: "-1").choice == nil)
    }

    /// Every distance gives the very numbers (the kernels compile the block-by-block case on its
    /// own), generation and prompts, the row kernels and the regrouped ones; a distance far past
    /// the end of the weights reads nothing.
    @Test(arguments: RegroupedTests.types)
    func resultsDoNotDependOnTheDistance(typeName: String) throws {
        let saved = llk_get_prefetch_ahead()
        defer { llk_set_prefetch_ahead(saved) }
        let type = try #require(GGMLType(name: typeName))
        let id = Int32(type.id)
        for (blocks, tokens) in [(3, 1), (5, 4), (2, 9)] {
            let rows = 16, columns = blocks * type.blockSize
            let weights = try RegroupedTests.weights(type, rows: rows, columns: columns, seed: UInt64(blocks * 7 + tokens))
            let x = VectorKernelTests.randomFloats(columns * tokens, seed: UInt64(tokens))
            let (prepared, _) = RegroupedTests.prepare(type, x, tokens: tokens, blocks: blocks)
            let packed = RegroupedTests.regroup(id, weights, rows: rows, blocks: blocks)
            var results: [[Float]] = []
            for distance: Int32 in [0, 64, 8192, 1 << 20] {
                llk_set_prefetch_ahead(distance)
                var regrouped = [Float](repeating: .nan, count: rows * tokens), byRows = regrouped
                llk_x8_matmul(id, packed, Int64(rows / 8), prepared, Int64(tokens), Int64(blocks), &regrouped, Int64(rows))
                var scratch = [UInt8](repeating: 0, count: Int(llk_q8_scratch_bytes(Int64(blocks))))
                if type.blockSize == 256 {
                    llk_qk_matmul(id, weights, Int64(weights.count / rows), Int64(rows), prepared, Int64(tokens), Int64(blocks), &byRows, Int64(rows))
                } else {
                    llk_q8_matmul(id, weights, Int64(weights.count / rows), Int64(rows), prepared, Int64(tokens), Int64(blocks), &byRows, Int64(rows), &scratch)
                }
                #expect(!regrouped.contains { $0.isNaN } && !byRows.contains { $0.isNaN })
                results.append(regrouped + byRows)
            }
            #expect(results.allSatisfy { $0 == results[0] }, "\(typeName) blocks \(blocks) tokens \(tokens)")
        }
    }
}

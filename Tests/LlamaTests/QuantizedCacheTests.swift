import Foundation
import Llama
import Testing
import TestSupport

/// The KV cache stored as F16, Q8_0 or Q4_0, against the F32 cache on a real text: each rounding
/// moves the next-token distributions, Q4_0 the most, never so far that the text is lost.
/// 300 positions, so attention crosses a span (256) and the spans are merged.
@Suite struct QuantizedCacheTests {
    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    /// Mean KL divergence of `q` from `p` over rows of logits, and how often their top tokens agree.
    static func compare(_ p: [Float], _ q: [Float], vocabulary: Int) -> (kl: Double, sameTop: Double) {
        let rows = p.count / vocabulary
        var kl = 0.0, same = 0
        for r in 0..<rows {
            let a = p[(r * vocabulary)..<((r + 1) * vocabulary)].map(Double.init), b = q[(r * vocabulary)..<((r + 1) * vocabulary)].map(Double.init)
            let ma = a.max()!, mb = b.max()!
            let la = log(a.reduce(0) { $0 + exp($1 - ma) }) + ma, lb = log(b.reduce(0) { $0 + exp($1 - mb) }) + mb
            for i in 0..<vocabulary {
                let pa = exp(a[i] - la)
                if pa > 0 { kl += pa * ((a[i] - la) - (b[i] - lb)) }
            }
            if a.firstIndex(of: ma) == b.firstIndex(of: mb) { same += 1 }
        }
        return (kl / Double(rows), Double(same) / Double(rows))
    }

    @Test func quantizedCachesStayCloseToFullPrecision() throws {
        let text = try Fixtures.text("text/news.txt")
        let tokens = Array(Self.model.tokenizer.encode(String(text.prefix(4000)), addSpecial: true).prefix(300))
        #expect(tokens.count == 300)
        func logits(_ types: LlamaContext.KVCacheTypes) throws -> [Float] {
            let context = LlamaContext(model: Self.model, contextSize: 512, threads: 2, kvCache: types)
            #expect(context.kvCache == types)
            return try context.evaluate(tokens, logitsFor: .all)
        }
        let vocabulary = Self.model.configuration.vocabularySize
        let reference = try logits(.f32)
        var divergence: [String: Double] = [:]
        for types in [LlamaContext.KVCacheTypes.f16, .init(.q8_0), .init(.q4_0), .init(keys: .q8_0, values: .f16), .init(keys: .f16, values: .q4_0)] {
            let (kl, sameTop) = Self.compare(reference, try logits(types), vocabulary: vocabulary)
            print("KV cache \(types.description): KL from F32 \(kl), same top token \(sameTop)")
            divergence[types.description] = kl
            #expect(kl > 0, "\(types.description) changes nothing: is the type used?")
            #expect(sameTop >= (types.keys == .q4_0 || types.values == .q4_0 ? 0.85 : 0.95), "\(types.description)")
        }
        // Any change of the keys and values moves this small model's logits by about 0.004 (the
        // activations' own 8-bit rounding turns a tiny change into a few flipped steps): F16 and
        // Q8_0 sit at that floor. Q4_0 goes further, and would go three times further again
        // without the Hadamard rotations (0.12).
        #expect(divergence["q8_0"]! < 1.5 * divergence["f16"]!)
        #expect(divergence["q4_0"]! > 2 * divergence["q8_0"]!)
        #expect(divergence["q4_0"]! < 0.05)
    }

    /// A quantized cache needs heads in whole blocks of 32: otherwise the library falls back to F16
    /// and `check` says why (tiny260K's heads have 8 values).
    @Test func headsOutsideWholeBlocksAreRefusedClearly() throws {
        let small = try LlamaModel.load(path: Fixtures.path("tiny260K/tiny260K.gguf"))
        let types = LlamaContext.KVCacheTypes(.q8_0)
        #expect(throws: ModelError.self) { try types.check(small) }
        #expect(LlamaContext(model: small, contextSize: 32, kvCache: types).kvCache == .f16)
        #expect(throws: Never.self) { try types.check(Self.model) }
    }
}

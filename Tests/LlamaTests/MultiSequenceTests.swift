import Foundation
import Llama
import Testing
import TestSupport

/// Several sequences in one batch (the ground for continuous batching): each token attends only
/// to its own sequence, so a mixed batch gives what separate contexts give.
@Suite struct MultiSequenceTests {
    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    /// ||a - b|| / ||a||. A batch of n tokens rounds differently from a single token (the
    /// batched kernels sum in another order), which moves SmolLM2's logits by 1-9% in this
    /// measure (the 8-bit rounding of the activations turns tiny changes into whole steps; any
    /// change of the attention's rounding draws other values in that range); another prompt's
    /// logits are about 70% away.
    static func relativeError(_ a: ArraySlice<Float>, _ b: [Float]) -> Float {
        var difference: Float = 0, norm: Float = 0
        for (x, y) in zip(a, b) {
            difference += (x - y) * (x - y)
            norm += x * x
        }
        return (difference / norm).squareRoot()
    }

    static func argmax(_ row: ArraySlice<Float>) -> TokenID {
        TokenID(row.indices.max { row[$0] < row[$1] }! - row.startIndex)
    }

    @Test func mixedBatchEqualsSeparateContexts() throws {
        let tokenizer = Self.model.tokenizer
        let prompts = ["Once upon a time", "The capital of France is", "1, 2, 3, 4,"].map { tokenizer.encode($0) }
        let vocab = Self.model.configuration.vocabularySize

        // Alone: one context per prompt, then 6 greedy tokens each, with the logits of every step.
        var alone: [[TokenID]] = []
        var aloneLogits: [[Float]] = []
        var aloneSteps: [[[Float]]] = []
        for prompt in prompts {
            let context = LlamaContext(model: Self.model, contextSize: 64, threads: 2)
            var logits = try context.evaluate(prompt, logitsFor: .last)
            aloneLogits.append(logits)
            var out: [TokenID] = []
            var steps: [[Float]] = []
            for _ in 0..<6 {
                let next = Self.argmax(logits[...])
                out.append(next)
                logits = try context.evaluate([next], logitsFor: .last)
                steps.append(logits)
            }
            alone.append(out)
            aloneSteps.append(steps)
        }

        // Together: the prompts interleaved in one batch, then one token of each sequence per step.
        let context = LlamaContext(model: Self.model, contextSize: 64, threads: 2, sequences: 3)
        var batch: [LlamaContext.BatchEntry] = []
        for i in 0..<prompts.map(\.count).max()! {
            for (s, prompt) in prompts.enumerated() where i < prompt.count {
                batch.append(.init(sequence: s, token: prompt[i], wantsLogits: i == prompt.count - 1))
            }
        }
        var logits = try context.evaluate(batch: batch)
        #expect(logits.count == 3 * vocab)
        // The rows come in batch order: the shortest prompt finishes first.
        let order = prompts.indices.sorted { (prompts[$0].count, $0) < (prompts[$1].count, $1) }
        for (row, s) in order.enumerated() {
            let error = Self.relativeError(logits[(row * vocab)..<((row + 1) * vocab)], aloneLogits[s])
            #expect(error < 0.12, "sequence \(s): logits differ by \(error)")
        }
        // Then the same tokens, one of each sequence per step (teacher-forced, since a batch
        // rounds differently from a single token and a near tie may go the other way).
        for step in 0..<6 {
            logits = try context.evaluate(batch: (0..<3).map { .init(sequence: $0, token: alone[$0][step], wantsLogits: true) })
            for s in 0..<3 {
                let error = Self.relativeError(logits[(s * vocab)..<((s + 1) * vocab)], aloneSteps[s][step])
                #expect(error < 0.12, "sequence \(s), step \(step): logits differ by \(error)")
            }
        }
        #expect(context.position(of: 1) == prompts[1].count + 6)
    }

    /// One token at a time, a sequence of a multi-sequence context computes exactly what a
    /// context of its own computes (same kernels, same order).
    @Test func oneTokenAtATimeIsExact() throws {
        let prompt = Self.model.tokenizer.encode("Once upon a time there was")
        let single = LlamaContext(model: Self.model, contextSize: 32, threads: 2)
        let multi = LlamaContext(model: Self.model, contextSize: 32, threads: 2, sequences: 3)
        _ = try multi.evaluate(batch: [.init(sequence: 0, token: 42, wantsLogits: false)])  // another sequence's work in between
        for token in prompt {
            let expected = try single.evaluate([token], logitsFor: .last)
            #expect(try multi.evaluate(batch: [.init(sequence: 2, token: token, wantsLogits: true)]) == expected)
        }
    }

    @Test func sequencesAreIndependentAndChecked() throws {
        let context = LlamaContext(model: Self.model, contextSize: 8, threads: 2, sequences: 2)
        _ = try context.evaluate(batch: (0..<5).map { _ in .init(sequence: 1, token: 42, wantsLogits: false) })
        #expect(context.position(of: 1) == 5 && context.position(of: 0) == 0)
        #expect(throws: LlamaError.self) {
            try context.evaluate(batch: (0..<4).map { _ in .init(sequence: 1, token: 42, wantsLogits: false) })
        }
        #expect(context.position(of: 1) == 5)  // a refused batch changes nothing
        #expect(throws: ModelError.self) { try context.evaluate(batch: [.init(sequence: 2, token: 1, wantsLogits: true)]) }
        context.reset(sequence: 1)
        #expect(context.position(of: 1) == 0)
    }
}

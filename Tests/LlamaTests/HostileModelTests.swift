import Foundation
import GGUF
import Llama
import Testing
import TestSupport

/// Model files are untrusted downloads: every damaged hyperparameter or tensor table is a clear
/// error naming what is wrong, never a crash, a write past a buffer or a silent default.
@Suite struct HostileModelTests {
    static let stories = Fixtures.path("tiny260K/tiny260K.gguf")

    /// tiny260K with some metadata replaced (nil removes a key) and its tensors filtered or changed.
    static func variant(_ name: String, metadata changes: [String: GGUFValue?] = [:],
                        tensors transform: (GGUFTensorInfo) -> (shape: [Int], keep: Bool)? = { _ in nil }) throws -> String {
        let original = try GGUFFile(path: stories)
        var writer = GGUFWriter()
        for (key, value) in original.metadata where !changes.keys.contains(key) { writer.set(key, value) }
        for (key, value) in changes { if let value { writer.set(key, value) } }
        for t in original.tensors {
            let change = transform(t)
            guard change?.keep ?? true else { continue }
            let shape = change?.shape ?? t.shape
            var data = Array(original.data(of: t))
            let needed = shape.reduce(1, *) * 4
            if data.count != needed { data = [UInt8](repeating: 0, count: needed) }
            try writer.addTensor(name: t.name, shape: shape, type: t.type, data: data)
        }
        let path = TemporaryFile.path("hostile-\(name).gguf")
        try writer.write(to: path)
        return path
    }

    /// Loading fails with a ModelError whose text holds every one of `words` (on one line, with `oneLine`).
    static func expectRefused(_ path: String, oneLine: Bool = false, _ words: String..., sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try LlamaModel.load(path: path)
            Issue.record("the model loaded", sourceLocation: sourceLocation)
        } catch {
            let message = String(describing: error)
            if oneLine { #expect(!message.contains("\n"), "\(message)", sourceLocation: sourceLocation) }
            for word in words { #expect(message.contains(word), "\(message)", sourceLocation: sourceLocation) }
        }
    }

    @Test func tensorWithoutDimensions() throws {
        let path = try Self.variant("ndims0") { t in t.name == "output_norm.weight" ? ([], true) : nil }
        Self.expectRefused(path, "output_norm.weight", "shape")
    }

    /// The head is 8 wide: a RoPE over more dimensions than that wrote past the head buffer.
    @Test(arguments: [16, 64, 128, 1000, 1 << 20, 7])
    func ropeDimensionsBeyondTheHead(_ dimensions: Int) throws {
        let path = try Self.variant("rope\(dimensions)", metadata: ["llama.rope.dimension_count": .uint32(UInt32(dimensions))])
        Self.expectRefused(path, "rope.dimension_count")
    }

    @Test(arguments: [Float(0), -1, .nan, .infinity])
    func ropeBaseMustBePositiveAndFinite(_ base: Float) throws {
        let path = try Self.variant("freqbase\(base)", metadata: ["llama.rope.freq_base": .float32(base)])
        Self.expectRefused(path, "rope.freq_base")
    }

    @Test(arguments: [Float(0), -1, .nan, -.infinity])
    func rmsEpsilonMustBePositiveAndFinite(_ epsilon: Float) throws {
        let path = try Self.variant("eps\(epsilon)", metadata: ["llama.attention.layer_norm_rms_epsilon": .float32(epsilon)])
        Self.expectRefused(path, "layer_norm_rms_epsilon")
    }

    @Test func contextLengthOfTheWrongType() throws {
        Self.expectRefused(try Self.variant("ctxstring", metadata: ["llama.context_length": .string("4096")]), "context_length")
        Self.expectRefused(try Self.variant("ctxnan", metadata: ["llama.context_length": .float32(.nan)]), "context_length")
        Self.expectRefused(try Self.variant("ctxzero", metadata: ["llama.context_length": .uint32(0)]), "context_length")
    }

    /// A training context far beyond memory: the default context is capped (with a notice), and
    /// an explicit one beyond all memory is cut to what fits, instead of aborting on allocation.
    @Test func hugeContextLengthIsCappedToMemory() throws {
        let path = try Self.variant("ctxhuge", metadata: ["llama.context_length": .uint64(1 << 40)])
        let model = try LlamaModel.load(path: path)
        let limits = LlamaContext.contextLimits(model: model)
        #expect(limits.default < 1 << 40)
        #expect(LlamaContext.defaultContextNotice(model: model)?.contains("-c") == true)
        let perPosition = model.configuration.kvBytesPerPosition(.f16)
        #expect(limits.default * perPosition <= Int(ProcessInfo.processInfo.physicalMemory) / 2)
        let small = try Self.variant("ctx2k", metadata: ["llama.context_length": .uint64(2048)])
        #expect(LlamaContext.defaultContextNotice(model: try LlamaModel.load(path: small)) == nil)
        // 2^62 positions used to overflow the KV size.
        Self.expectRefused(try Self.variant("ctx2p62", metadata: ["llama.context_length": .uint64(1 << 62)]), "context_length")
    }

    @Test func fewerBlocksThanTheFileHolds() throws {
        let path = try Self.variant("blocks", metadata: ["llama.block_count": .uint32(3)])
        Self.expectRefused(path, "block_count", "blk.3")
    }

    @Test func vocabularySizeDisagreesWithTheTokens() throws {
        Self.expectRefused(try Self.variant("vocab", metadata: ["llama.vocab_size": .uint32(100_000)]), "vocab_size")
        // The embedding must have a row per token.
        let rows = try Self.variant("embd") { t in t.name == "token_embd.weight" ? ([t.shape[0], t.shape[1] - 12], true) : nil }
        Self.expectRefused(rows, "token_embd.weight")
    }

    /// tiny260K with one more F32 tensor, which no architecture reads.
    static func withExtraTensor(_ name: String, count: Int) throws -> String {
        let original = try GGUFFile(path: stories)
        var writer = GGUFWriter()
        for (key, value) in original.metadata { writer.set(key, value) }
        for t in original.tensors { try writer.addTensor(name: t.name, shape: t.shape, type: t.type, data: Array(original.data(of: t))) }
        try writer.addTensor(name: name, shape: [count], type: .f32, data: [UInt8](repeating: 0, count: 4 * count))
        let path = TemporaryFile.path("hostile-extra-\(name).gguf")
        try writer.write(to: path)
        return path
    }

    @Test func unknownTensorIsNamed() throws {
        Self.expectRefused(try Self.withExtraTensor("blk.0.attn_q.bias", count: 64), "blk.0.attn_q.bias", "not used")
    }

    @Test func headCountsThatDoNotFit() throws {
        Self.expectRefused(try Self.variant("heads0", metadata: ["llama.attention.head_count": .uint32(0)]), "head_count")
        Self.expectRefused(try Self.variant("headsbig", metadata: ["llama.attention.head_count": .uint32(1000)]), "head")
        Self.expectRefused(try Self.variant("kv3", metadata: ["llama.attention.head_count_kv": .uint32(3)]), "KV heads")
    }

    /// NaN weights give NaN logits: the generation ends with an error naming the problem.
    @Test func nanWeightsEndTheGenerationWithAnError() throws {
        let original = try GGUFFile(path: Self.stories)
        var writer = GGUFWriter()
        for (key, value) in original.metadata { writer.set(key, value) }
        for t in original.tensors {
            var data = Array(original.data(of: t))
            if t.name == "output_norm.weight" {
                let nan = Float.nan.bitPattern
                for i in 0..<4 { data[i] = UInt8(truncatingIfNeeded: nan >> (8 * UInt32(i))) }
            }
            try writer.addTensor(name: t.name, shape: t.shape, type: t.type, data: data)
        }
        let path = TemporaryFile.path("hostile-nan.gguf")
        try writer.write(to: path)
        let model = try LlamaModel.load(path: path)
        for sampler in [SamplerSettings.greedy, SamplerSettings()] {
            let session = Session(model: model, contextSize: 64, threads: 1)
            #expect(throws: GenerationError.self) {
                _ = try session.run(prompt: model.tokenizer.encode("Once"), parameters: GenerationParameters(maxTokens: 4, sampler: sampler)) { _ in }
            }
        }
    }
}

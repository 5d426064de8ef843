import Foundation
import Testing
import TestSupport

@Suite struct EmptyPromptTests {
    /// An empty prompt starts from BOS, as llama2.c does with no prompt.
    @Test func emptyPromptStartsFromBOS() throws {
        let r = try CLI.run(["generate", "-m", Fixtures.path("tiny260K/tiny260K.gguf"), "-p", "", "--temp", "0", "-n", "5"])
        #expect(r.status == 0, "\(r.stderr)")
        // The first of the 200 tokens run.c prints for tiny260K from BOS (Scripts/make_tiny_llama2c.py).
        let expected = try Tiny260KVectors.load()
        let text = r.stdout.hasSuffix("\n") ? String(r.stdout.dropLast()) : r.stdout
        #expect(!text.isEmpty && expected.llama2c_test_all_expected_stdout.text.hasPrefix(text), "\(r.stdout)")
        #expect(r.stderr.contains("prompt: 1 tokens"))
    }

    /// SmolLM2 adds no BOS to prompts, but has one to start an empty text from.
    @Test func emptyPromptOnTheDefaultModel() throws {
        _ = try Fixtures.defaultModel()
        let r = try CLI.run(["generate", "-p", "", "-n", "3", "--temp", "0"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("prompt: 1 tokens; ") || r.stderr.contains("prompt: 1 tokens,"))
        #expect(r.stderr.contains("generated: 3 tokens"))
    }
}

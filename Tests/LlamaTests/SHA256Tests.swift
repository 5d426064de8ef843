import Foundation
import Llama
import Testing
import TestSupport

@Suite struct SHA256Tests {
    static func digest(_ bytes: [UInt8], chunk: Int = .max) -> String {
        var hash = SHA256()
        var start = 0
        repeat {
            let end = min(bytes.count, start + chunk)
            hash.update(Array(bytes[start..<end]))
            start = end
        } while start < bytes.count
        return hash.finalize()
    }

    /// The FIPS 180-2 example vectors.
    @Test func standardVectors() {
        #expect(Self.digest([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Self.digest(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Self.digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(Self.digest([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Feeding the data in odd-sized pieces gives the same digest as one piece.
    @Test(arguments: [1, 7, 63, 64, 65, 1000])
    func chunkedUpdates(chunk: Int) {
        let data = (0..<3).flatMap { _ in (0..<256).map(UInt8.init) }
        #expect(Self.digest(data, chunk: chunk) == "f3a25aa93aa2fbba28d79260535bbd6a5eb0fc1c24a8b0f04e12b484c1dfe363")
    }

    @Test func defaultModelInCacheHasTheExpectedDigest() throws {
        let path = try DefaultModel.locate()
        #expect(try DefaultModel.fileSHA256(path) == DefaultModel.sha256)
    }
}

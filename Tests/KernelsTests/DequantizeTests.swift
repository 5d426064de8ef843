import Foundation
import Kernels
import Testing

/// Every dequantizer against `gguf.quants.dequantize` (golden file from Scripts/make_golden_dequantize.py).
@Suite struct DequantizeTests {
    struct Golden: Decodable {
        struct Case: Decodable {
            let type: String
            let bytes: String
            let values: [Float]
        }
        let cases: [Case]
    }

    static let golden: Golden = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/dequantize.json")
        return try! JSONDecoder().decode(Golden.self, from: Data(contentsOf: path))
    }()

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    @Test(arguments: ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
    func matchesGGUFReference(typeName: String) throws {
        let c = try #require(Self.golden.cases.first { $0.type == typeName })
        let type = try #require(GGMLType(name: typeName))
        let raw = Self.bytes(hex: c.bytes)
        #expect(raw.count == c.values.count / type.blockSize * type.bytesPerBlock)
        var out = [Float](repeating: .nan, count: c.values.count)
        try raw.withUnsafeBytes { src in
            try out.withUnsafeMutableBufferPointer { dst in
                try Dequantize.row(type, src.baseAddress!, dst.baseAddress!, count: c.values.count)
            }
        }
        var worst: Float = 0
        for (got, want) in zip(out, c.values) {
            worst = max(worst, abs(got - want) / max(1, abs(want)))
        }
        #expect(worst <= 1e-6, "\(typeName): worst relative error \(worst)")
    }

    @Test func unsupportedTypesAreNamed() {
        let type = GGMLType(name: "IQ2_XXS")!
        #expect(!Dequantize.supports(type))
        var out = [Float](repeating: 0, count: 256)
        let raw = [UInt8](repeating: 0, count: type.bytesPerBlock)
        do {
            try raw.withUnsafeBytes { src in
                try out.withUnsafeMutableBufferPointer { try Dequantize.row(type, src.baseAddress!, $0.baseAddress!, count: 256) }
            }
            Issue.record("no error")
        } catch {
            #expect(String(describing: error).contains("IQ2_XXS"))
        }
    }
}

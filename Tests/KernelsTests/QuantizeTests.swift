import Foundation
import Kernels
import Testing

/// The block quantizers against `gguf.quants.quantize` (golden file from Scripts/make_golden_quantize.py).
@Suite struct QuantizeTests {
    struct Golden: Decodable {
        struct Case: Decodable { let type: String; let bytes: String }
        let input: String
        let cases: [Case]
    }

    static let golden: Golden = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/quantize.json")
        return try! JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }()

    @Test(arguments: ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
    func bytesMatchTheGGUFPackage(typeName: String) throws {
        let type = try #require(GGMLType(name: typeName))
        let raw = DequantizeTests.bytes(hex: Self.golden.input)
        let floats = stride(from: 0, to: raw.count, by: 4).map { i in
            Float(bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
        }
        let expected = DequantizeTests.bytes(hex: try #require(Self.golden.cases.first { $0.type == typeName }).bytes)
        let got = try floats.withUnsafeBufferPointer { try QuantizeBlocks.row($0, to: type) }
        #expect(got.count == expected.count)
        let firstDifference = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstDifference == nil, "\(typeName): first differing byte \(firstDifference ?? -1)")
    }

    @Test func typesWithoutAQuantizerAreRefused() {
        let x = [Float](repeating: 1, count: 256)
        #expect(throws: QuantizeBlocks.Unsupported.self) { try x.withUnsafeBufferPointer { try QuantizeBlocks.row($0, to: .q3_K) } }
    }
}

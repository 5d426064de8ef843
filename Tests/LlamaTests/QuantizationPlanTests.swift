import Foundation
import Llama
import Testing

/// The tensor types `llama quantize` picks, against the types llama.cpp's own
/// `llama_model_quantize` chose for the same tensors (golden file from
/// Scripts/make_golden_kquants.py): output matrix, mixes, layer rules, fallbacks.
@Suite struct QuantizationPlanTests {
    struct Golden: Decodable {
        struct Model: Decodable {
            struct Tensor: Decodable { let name: String; let shape: [Int]; let type: String }
            let target: String
            let layers: Int
            let tensors: [Tensor]
        }
        let models: [Model]
    }

    @Test func typesMatchLlamaCpp() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/quant_plan.json")
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
        #expect(golden.models.count >= 10)
        for model in golden.models {
            let target = try #require(QuantizationPlan.target(named: model.target))
            let plan = QuantizationPlan(target: target, tensors: model.tensors.map { ($0.name, $0.shape) }, layers: model.layers)
            for (tensor, type) in zip(model.tensors, plan.types) {
                #expect((type?.name ?? "F32") == tensor.type, "\(model.target), \(model.layers) layers: \(tensor.name)")
            }
        }
    }

    @Test func aliasesAndUnknownNames() {
        #expect(QuantizationPlan.target(named: "q4_k")?.name == "Q4_K_M")
        #expect(QuantizationPlan.target(named: "Q5_K")?.name == "Q5_K_M")
        #expect(QuantizationPlan.target(named: "Q3_K_XL") == nil)
    }
}

import Foundation
import Jinja
import Llama
import Testing
import TestSupport

/// What a request can hand the library (sampler settings, grammars, JSON schemas, JSON bodies)
/// is bounded: a clear error or a quick answer, never a trap, a stack overflow or a stall.
@Suite struct HostileRequestTests {
    static func seconds(_ work: () throws -> Void) rethrows -> Double {
        let start = Date()
        try work()
        return Date().timeIntervalSince(start)
    }

    // MARK: Sampling

    /// Every token banned at temperature > 0: min-p used to empty the candidates and trap.
    @Test func everyTokenBanned() {
        let logits = (0..<50).map { Float($0 % 7) }
        for settings in [SamplerSettings(), .greedy] {
            var s = settings
            s.logitBias = Dictionary(uniqueKeysWithValues: (0..<50).map { (TokenID($0), -Float.infinity) })
            var sampler = Sampler(s)
            #expect(sampler.sample(logits[...]) == nil)
            #expect(sampler.sample(logits[...], allowed: { $0 == 3 }) == nil)
        }
        // All but one banned: that one is drawn at any temperature, with every truncation on.
        var s = SamplerSettings()
        s.typicalP = 0.5
        s.logitBias = Dictionary(uniqueKeysWithValues: (0..<50).filter { $0 != 17 }.map { (TokenID($0), -Float.infinity) })
        var sampler = Sampler(s)
        #expect((0..<20).allSatisfy { _ in sampler.sample(logits[...]) == 17 })
    }

    @Test func nonFiniteLogitsAreNotSampled() {
        var sampler = Sampler(SamplerSettings())
        #expect(sampler.sample([1, .nan, 2][...]) == nil)
        #expect(sampler.sample([1, .infinity, 2][...]) == nil)
        // A temperature so small that logits overflow when divided is greedy.
        var s = SamplerSettings()
        s.temperature = .leastNonzeroMagnitude * 1000  // subnormal, about 1.4e-42
        var tiny = Sampler(s)
        #expect(tiny.sample([1, 3e30, 2][...]) == 1)
    }

    @Test func samplerSettingsAreValidated() {
        var cases: [SamplerSettings] = []
        for change in [{ (s: inout SamplerSettings) in s.temperature = .nan }, { $0.topP = 2 }, { $0.minP = -1 }, { $0.topK = -1 },
                       { $0.repeatLastN = -5 }, { $0.mirostat = 1 }, { $0.mirostatTau = .infinity }, { $0.logitBias = [3: .nan] },
                       { $0.typicalP = .nan }, { $0.frequencyPenalty = .infinity }] as [(inout SamplerSettings) -> Void] {
            var s = SamplerSettings()
            change(&s)
            cases.append(s)
        }
        for settings in cases { #expect(throws: ModelError.self) { try settings.validate() } }
        #expect(throws: Never.self) { try SamplerSettings().validate() }
    }

    // MARK: GBNF grammars

    @Test func deeplyNestedGroups() {
        let source = "root ::= " + String(repeating: "(", count: 100_000) + "\"a\"" + String(repeating: ")", count: 100_000)
        #expect(throws: LlamaError.self) { try Grammar(source) }
        // Nesting that real grammars use is fine.
        #expect(throws: Never.self) { try Grammar("root ::= " + String(repeating: "(", count: 50) + "\"a\"" + String(repeating: ")", count: 50)) }
    }

    /// A 20k-character literal repeated 99,999 times would be 2 billion elements.
    @Test func repetitionThatWouldExhaustMemory() {
        let literal = String(repeating: "x", count: 20_000)
        let time = Self.seconds { #expect(throws: LlamaError.self) { try Grammar("root ::= \"\(literal)\"{99999}") } }
        #expect(time < 2)
        #expect(throws: Never.self) { try Grammar("root ::= [a-z]{0,500}") }
    }

    /// 20k rules: the left-recursion check was quadratic in the rule count.
    @Test func manyRulesAreCheckedInLinearTime() throws {
        var source = "root ::= r0\n"
        for i in 0..<20_000 { source += "r\(i) ::= \"x\" | r\(i + 1)\n" }
        source += "r20000 ::= \"y\"\n"
        let time = try Self.seconds { _ = try Grammar(source) }
        #expect(time < 3, "\(time) s")
        // And a cycle through all of them is found.
        let cyclic = source.replacingOccurrences(of: "r20000 ::= \"y\"", with: "r20000 ::= r0 \"y\"")
        #expect(throws: LlamaError.self) { try Grammar(cyclic) }
    }

    /// A 20k-alternative root: masking the vocabulary for one token is bounded by the budget.
    @Test func wideGrammarStaysWithinItsBudget() throws {
        let source = "root ::= " + (0..<20_000).map { "\"k\($0)z\"" }.joined(separator: " | ")
        let matcher = GrammarMatcher(try Grammar(source), workBudget: 200_000)
        matcher.beginToken()
        let time = Self.seconds {
            for i in 0..<2000 { _ = matcher.allows(bytes: Array("k\(i)".utf8), isEndOfText: false) }
        }
        #expect(matcher.budgetExhausted)
        #expect(time < 2)
        // A new token starts a new budget.
        matcher.beginToken()
        #expect(!matcher.budgetExhausted)
    }

    // MARK: JSON schemas

    @Test(arguments: [#"{"type":"string","maxLength":1e300}"#, #"{"type":"array","maxItems":1e999}"#,
                      #"{"type":"array","maxItems":-9223372036854775808}"#, #"{"type":"string","minLength":-1}"#,
                      #"{"type":"array","minItems":5,"maxItems":2}"#, #"{"type":"string","maxLength":"12"}"#,
                      #"{"type":"array","maxItems":9223372036854775807}"#])
    func schemaBoundsAreChecked(_ schema: String) {
        #expect(throws: LlamaError.self) { try Grammar(try JSONGrammar.grammar(schemaJSON: schema)) }
    }

    /// 3000 optional properties made a grammar quadratic in their number (90 s, 4.5 GB).
    @Test func manyOptionalPropertiesStayLinear() throws {
        let properties = (0..<3000).map { "\"p\($0)\":{\"type\":\"integer\"}" }.joined(separator: ",")
        let schema = "{\"type\":\"object\",\"properties\":{\(properties)}}"
        var size = 0
        let time = try Self.seconds {
            let text = try JSONGrammar.grammar(schemaJSON: schema)
            size = text.utf8.count
            _ = try Grammar(text)
        }
        #expect(size < 50 * schema.utf8.count)
        #expect(time < 5, "\(time) s")
    }

    /// The optional-property grammar still accepts exactly the ordered subsets.
    @Test func optionalPropertiesAcceptOrderedSubsets() throws {
        let schema = #"{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"},"c":{"type":"integer"}}}"#
        let grammar = try Grammar(try JSONGrammar.grammar(schemaJSON: schema))
        func accepts(_ text: String) -> Bool {
            let m = GrammarMatcher(grammar)
            for byte in text.utf8 {
                guard m.allows(bytes: [byte], isEndOfText: false) else { return false }
                m.accept(bytes: [byte])
            }
            return m.canEnd
        }
        for ok in ["{}", #"{"a":1}"#, #"{"b":2}"#, #"{"a":1,"c":3}"#, #"{"a":1,"b":2,"c":3}"#, #"{"b":2,"c":3}"#] { #expect(accepts(ok), "\(ok)") }
        for bad in [#"{"b":2,"a":1}"#, #"{"a":1,"a":1}"#, #"{,"a":1}"#, #"{"a":1,}"#] { #expect(!accepts(bad), "\(bad)") }
    }

    @Test func repeatedTypeListsDoNotMultiplyTheGrammar() throws {
        let types = [String](repeating: "\"object\"", count: 50_000).joined(separator: ",")
        let schema = "{\"type\":[\(types)],\"properties\":{\"a\":{\"type\":\"string\"}}}"
        let time = try Self.seconds { _ = try Grammar(try JSONGrammar.grammar(schemaJSON: schema)) }
        #expect(time < 3)
    }

    // MARK: JSON bodies

    @Test func objectsWithManyKeysParseInLinearTime() throws {
        let body = "{" + (0..<200_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + ",\"k7\":-1}"
        var value: JinjaValue = .none
        let time = try Self.seconds { value = try JinjaValue(json: body) }
        #expect(time < 5, "\(time) s")
        guard case .object(let pairs) = value else { Issue.record("not an object"); return }
        #expect(pairs.count == 200_000)
        #expect(value["k7"] == .int(-1))  // the last of a repeated key wins, in its first place
        #expect(pairs[7].0 == "k7")
    }
}

import Foundation
import Jinja
import Llama
import Testing
import TestSupport

/// GBNF grammars and JSON-schema grammars: what they accept, what they refuse, and JSON mode on the default model.
@Suite struct GrammarTests {
    @Test func gbnfBasics() throws {
        let g = #"""
        root ::= greeting " " name ("!" | "?")?   # a comment
        greeting ::= "hi" | "hello"
        name ::= [A-Z] [a-z]{1,5}
        """#
        #expect(try GrammarCheck.accepts(g, "hi Ann"))
        #expect(try GrammarCheck.accepts(g, "hello Bob!"))
        #expect(try !GrammarCheck.accepts(g, "hello bob"))
        #expect(try !GrammarCheck.accepts(g, "hi Annabella"))
        #expect(try !GrammarCheck.accepts(g, "hi"))
        let classes = #"root ::= [^a-c\n]+ "\x41" "é" [\u00e0-\u00ff] ."#
        #expect(try GrammarCheck.accepts(classes, "xyzAéü🦙"))
        #expect(try !GrammarCheck.accepts(classes, "abcAéü!"))
        let multiline = "root ::= \"a\"\n    | \"b\" item*\nitem ::= (\"x\"\n  \"y\")"
        #expect(try GrammarCheck.accepts(multiline, "bxyxy"))
    }

    @Test func badGrammarsAreClearErrors() {
        #expect(throws: LlamaError.self) { try Grammar("rot ::= \"a\"") }
        #expect(throws: LlamaError.self) { try Grammar("root ::= undefined-rule") }
        #expect(throws: LlamaError.self) { try Grammar("root ::= \"unterminated") }
        #expect(throws: LlamaError.self) { try Grammar("root ::= [a-") }
        #expect(throws: LlamaError.self) { try Grammar("root ::= root \"a\" | \"b\"") }
        #expect(throws: LlamaError.self) { try Grammar("root ::= \"a\"{3,1}") }
        #expect(throws: LlamaError.self) { try Grammar("root = \"a\"") }
    }

    @Test func anyJSONObject() throws {
        let g = JSONGrammar.anyObject
        #expect(try GrammarCheck.accepts(g, #"{"a": [1, -2.5e3, true, null, {"b": "x\"y\u00e9"}], "c": {}}"#))
        #expect(try GrammarCheck.accepts(g, "{\n  \"k\": \"v\"\n}"))
        #expect(try !GrammarCheck.accepts(g, #"{"a": 01}"#))
        #expect(try !GrammarCheck.accepts(g, #"{"a" 1}"#))
        #expect(try !GrammarCheck.accepts(g, #"[1, 2]"#))
        #expect(try !GrammarCheck.accepts(g, #"{"a": "line"#))
    }

    @Test func jsonSchemaGrammar() throws {
        let schema = #"""
        {"type": "object",
         "properties": {"name": {"type": "string", "maxLength": 8},
                        "age": {"type": "integer"},
                        "role": {"enum": ["admin", "user"]},
                        "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "maxItems": 2}},
         "required": ["name", "age"],
         "$defs": {"tag": {"type": "string", "minLength": 1}}}
        """#
        let g = try JSONGrammar.grammar(schemaJSON: schema)
        #expect(try GrammarCheck.accepts(g, #"{"name": "Ann", "age": 31}"#))
        #expect(try GrammarCheck.accepts(g, #"{"name": "Ann", "age": -3, "role": "user", "tags": ["a", "b"]}"#))
        #expect(try GrammarCheck.accepts(g, #"{"name":"Ann","age":3,"tags":[]}"#))
        #expect(try !GrammarCheck.accepts(g, #"{"age": 31, "name": "Ann"}"#))              // order of properties
        #expect(try !GrammarCheck.accepts(g, #"{"name": "Ann"}"#))                         // a required one missing
        #expect(try !GrammarCheck.accepts(g, #"{"name": "Annabella!", "age": 1}"#))        // too long
        #expect(try !GrammarCheck.accepts(g, #"{"name": "A", "age": 1.5}"#))               // not an integer
        #expect(try !GrammarCheck.accepts(g, #"{"name": "A", "age": 1, "role": "root"}"#)) // not in the enum
        #expect(try !GrammarCheck.accepts(g, #"{"name": "A", "age": 1, "tags": ["", "b"]}"#))
        #expect(try !GrammarCheck.accepts(g, #"{"name": "A", "age": 1, "tags": ["a", "b", "c"]}"#))
        let optional = try JSONGrammar.grammar(schemaJSON: #"{"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}}}"#)
        for text in ["{}", #"{"a": true}"#, #"{"b": null}"#, #"{"a": false, "b": null}"#] { #expect(try GrammarCheck.accepts(optional, text), "\(text)") }
        #expect(try !GrammarCheck.accepts(optional, #"{"b": null, "a": true}"#))
        #expect(throws: (any Error).self) { try JSONGrammar.grammar(schemaJSON: #"{"type": "object", "properties": {"x": {"$ref": "http://elsewhere"}}}"#) }
    }

    /// Integer bounds: every number near the bounds (and some far off) is accepted exactly when
    /// it lies between them, for random ranges of every sign and width.
    @Test func integerRanges() throws {
        var rng = SplitMix64(seed: 7)
        var cases: [(Int?, Int?)] = [(0, 9), (1, 10), (-5, 5), (-120, -7), (10, 10), (0, 0), (99, 1000), (nil, 42), (-3, nil)]
        for _ in 0..<24 {
            let a = Int(rng.next() % 200_000) - 100_000, b = a + Int(rng.next() % UInt64([10, 1000, 100_000][Int(rng.next() % 3)]))
            cases.append((a, b))
        }
        for (low, high) in cases {
            var schema = #"{"type": "integer""#
            if let low { schema += #", "minimum": \#(low)"# }
            if let high { schema += #", "maximum": \#(high)"# }
            let g = try JSONGrammar.grammar(schemaJSON: schema + "}")
            var probes = [0, 1, -1, 9, 10, -10, 99, 100, 1_000_000, -1_000_000]
            for edge in [low, high].compactMap({ $0 }) { probes += (edge - 12...edge + 12).map { $0 } }
            if let low, let high { probes += (0..<20).map { _ in low + Int(rng.next() % UInt64(high - low + 1)) } }
            for n in probes {
                let inside = n >= (low ?? .min) && n <= (high ?? .max)
                #expect(try GrammarCheck.accepts(g, String(n)) == inside, "\(n) in \(low.map(String.init) ?? "-inf")...\(high.map(String.init) ?? "inf")")
            }
            #expect(try !GrammarCheck.accepts(g, "007"))
        }
        #expect(throws: (any Error).self) { try JSONGrammar.grammar(schemaJSON: #"{"type": "integer", "minimum": 5, "maximum": 4}"#) }
    }

    /// JSON mode on the default model: 20 seeds, each output parses and fits the schema.
    @Test func jsonModeOnTheDefaultModel() throws {
        let model = try LlamaModel.load(path: DefaultModel.locate())
        let schema = #"""
        {"type": "object",
         "properties": {"city": {"type": "string", "maxLength": 24},
                        "country": {"type": "string", "maxLength": 24},
                        "population": {"type": "integer"},
                        "capital": {"type": "boolean"},
                        "languages": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3}},
         "required": ["city", "country", "population", "capital", "languages"]}
        """#
        let grammar = try JSONGrammar.grammar(schemaJSON: schema)
        let session = Session(model: model, contextSize: 512, threads: SystemInfo.physicalCores)
        let prompt = try model.chatTemplate.render([.user("Describe Paris as a JSON object.")], bos: model.bosText, eos: model.eosText)
        let tokens = model.tokenizer.encode(prompt, addSpecial: false, parseSpecial: true)
        for seed in UInt64(1)...20 {
            var settings = SamplerSettings()
            settings.seed = seed
            settings.temperature = 0.8
            let summary = try session.run(prompt: tokens, parameters: GenerationParameters(maxTokens: 256, sampler: settings, grammar: grammar)) { _ in }
            // Valid JSON for Foundation's parser, and the right types for a typed one.
            #expect((try? JSONSerialization.jsonObject(with: Data(summary.text.utf8))) is [String: Any], "seed \(seed): \(summary.text)")
            let o = try JinjaValue(json: summary.text)
            guard case .object(let pairs) = o else { Issue.record("seed \(seed): not an object: \(summary.text)"); continue }
            #expect(summary.finishReason == .stop, "seed \(seed)")
            #expect(pairs.map(\.0) == ["city", "country", "population", "capital", "languages"], "seed \(seed)")
            if case .string(let city) = o["city"] { #expect(city.count <= 24) } else { Issue.record("seed \(seed): city") }
            if case .int = o["population"] {} else { Issue.record("seed \(seed): population in \(summary.text)") }
            if case .bool = o["capital"] {} else { Issue.record("seed \(seed): capital in \(summary.text)") }
            if case .array(let languages) = o["languages"] { #expect(languages.count <= 3) } else { Issue.record("seed \(seed): languages") }
        }
    }

    /// A grammar with a trigger waits: the answer is the free answer up to the trigger, and from
    /// the trigger on it follows the grammar (here: no "!" for at most 40 characters, then "!").
    @Test func aTriggeredGrammarStartsAtItsTrigger() throws {
        let model = try LlamaModel.load(path: DefaultModel.locate())
        let session = Session(model: model, contextSize: 512, threads: SystemInfo.physicalCores)
        let tokens = try model.chatPromptTokens([.user("Tell me about the city of Paris.")])
        let free = try session.run(prompt: tokens, parameters: GenerationParameters(maxTokens: 40, sampler: .greedy)) { _ in }.text
        // The fourth word of the free answer is the trigger.
        let words = free.split(separator: " ").filter { $0.allSatisfy(\.isLetter) }
        let trigger = String(try #require(words.dropFirst(3).first, "\(free)"))
        var parameters = GenerationParameters(maxTokens: 80, sampler: .greedy, grammar: "root ::= \"\(trigger)\" [^!]{0,40} \"!\"")
        parameters.grammarTriggers = [trigger]
        let constrained = try session.run(prompt: tokens, parameters: parameters) { _ in }
        let start = try #require(constrained.text.range(of: trigger), "\(constrained.text)")
        let freeStart = try #require(free.range(of: trigger))
        #expect(constrained.text[..<start.lowerBound] == free[..<freeStart.lowerBound])
        let after = constrained.text[start.upperBound...]
        #expect(after.hasSuffix("!") && after.dropLast().count <= 40 && !after.dropLast().contains("!"), "\(constrained.text)")
        #expect(constrained.finishReason == .stop)
    }
}

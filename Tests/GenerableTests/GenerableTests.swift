import Foundation
import Jinja
import Llama
import LlamaGenerable
import Testing
import TestSupport

@Generable(description: "A character in a short story")
struct Character: Equatable {
    @Guide(description: "The character's first name", .maximumLength(16))
    var name: String
    @Guide(description: "Age in years", .range(1...120))
    var age: Int
    var role: Role
    @Guide(description: "Things the character carries", .maximumCount(3), .element(.maximumLength(16)))
    var items: [String]
    @Guide(description: "A pet, if the character has one")
    var pet: Pet?
    var isBrave: Bool
    let species = "human"  // a constant: not generated

    var summary: String { "\(name), \(age)" }  // computed: not generated
}

@Generable enum Role: Equatable { case hero, villain, sidekick }

@Generable(description: "An animal companion")
struct Pet: Equatable {
    @Guide(.maximumLength(12)) var name: String
    var kind: Kind

    @Generable enum Kind: Equatable { case cat, dog, owl }
}

/// A type that contains itself (twice: building its schema must not branch without end).
@Generable struct Tree {
    var label: String
    var left: [Tree]
    var right: [Tree]
}

/// A tool whose arguments are @Generable: no schema by hand.
struct Forecast: Tool {
    @Generable struct Arguments {
        @Guide(description: "A city", .maximumLength(30)) var city: String
        @Guide(description: "Days ahead", .range(1...7)) var days: Int
    }
    let name = "get_forecast"
    let description = "The weather forecast for a city, some days ahead."
    func call(arguments: Arguments) async throws -> String { "sunny in \(arguments.city) for \(arguments.days) days" }
}

/// `@Generable` types: the schema the macro derives, the grammar it gives, conversion from whole
/// and partial JSON, and typed answers from the default model (whole and streamed).
@Suite struct GenerableTests {
    static let example = #"{"name": "Mira", "age": 31, "role": "hero", "items": ["lamp", "rope"], "isBrave": true, "pet": {"name": "Pip", "kind": "owl"}}"#

    @Test func theSchemaFollowsTheType() throws {
        let schema = Character.generationSchema.json
        #expect(schema["type"] == "object")
        #expect(schema["description"] == "A character in a short story")
        guard case .object(let properties) = schema["properties"] else { Issue.record("no properties"); return }
        #expect(properties.map(\.0) == ["name", "age", "role", "items", "pet", "isBrave"])
        #expect(schema["required"] == ["name", "age", "role", "items", "isBrave"])  // pet is optional
        let byName = Dictionary(uniqueKeysWithValues: properties)
        #expect(byName["name"]?["maxLength"] == 16)
        #expect(byName["name"]?["description"] == "The character's first name")
        #expect(byName["age"]?["minimum"] == 1 && byName["age"]?["maximum"] == 120)
        #expect(byName["role"]?["enum"] == ["hero", "villain", "sidekick"])
        #expect(byName["items"]?["maxItems"] == 3 && byName["items"]?["items"]["maxLength"] == 16)
        #expect(byName["pet"]?["properties"]["kind"]["enum"] == ["cat", "dog", "owl"])
        #expect(byName["pet"]?["description"] == "A pet, if the character has one")
    }

    /// The grammar writes the required properties first, then the optional ones (as llama.cpp's
    /// schema grammars do); conversion takes them in any order.
    @Test func theGrammarHoldsToTheSchema() throws {
        let grammar = try Character.generationSchema.grammar()
        #expect(try GrammarCheck.accepts(grammar, Self.example))
        #expect(try GrammarCheck.accepts(grammar, #"{"name": "Bo", "age": 5, "role": "villain", "items": [], "isBrave": false}"#))
        for bad in [#"{"name": "Bo", "age": 0, "role": "hero", "items": [], "isBrave": true}"#,          // age below 1
                    #"{"name": "Bo", "age": 121, "role": "hero", "items": [], "isBrave": true}"#,        // age above 120
                    #"{"name": "Bo", "age": 5, "role": "king", "items": [], "isBrave": true}"#,          // not a role
                    #"{"name": "Bo", "age": 5, "role": "hero", "items": ["a", "b", "c", "d"], "isBrave": true}"#,
                    #"{"name": "Bo", "age": 5, "role": "hero", "items": [], "isBrave": true, "pet": {"name": "X", "kind": "cow"}}"#,
                    #"{"name": "Bo", "age": 5, "role": "hero", "isBrave": true}"#] {                     // items missing
            #expect(try !GrammarCheck.accepts(grammar, bad), "\(bad)")
        }
    }

    @Test func recursiveTypesAreRefusedByName() {
        #expect(throws: LlamaError.grammar("Tree contains itself; a @Generable type cannot be recursive (a grammar would not end)")) {
            try Tree.generationSchema.grammar()
        }
    }

    @Test func wholeContentConverts() throws {
        let character = try Character(GeneratedContent(json: Self.example))
        #expect(character == Character(name: "Mira", age: 31, role: .hero, items: ["lamp", "rope"], pet: Pet(name: "Pip", kind: .owl), isBrave: true))
        // And back: the value's own content reads as the same value.
        #expect(try Character(GeneratedContent(json: character.generatedContent.jsonString)) == character)
        let noPet = try Character(GeneratedContent(json: #"{"name": "Bo", "age": 5, "role": "sidekick", "items": [], "pet": null, "isBrave": false}"#))
        #expect(noPet.pet == nil)
        for bad in [#"{"name": "Bo"}"#, #"{"name": "Bo", "age": 5.5, "role": "hero", "items": [], "isBrave": true}"#,
                    #"{"name": "Bo", "age": 5, "role": "king", "items": [], "isBrave": true}"#, "[1, 2]"] {
            #expect(throws: (any Error).self, "\(bad)") { try Character(GeneratedContent(json: bad)) }
        }
        for notJSON in ["{", #"{"a": }"#, "[1, 2,]", #"{"a": 1} x"#, "tru", #""\x""#] {
            #expect(throws: GeneratedContent.SyntaxError.self, "\(notJSON)") { try GeneratedContent(json: notJSON) }
        }
    }

    /// Every prefix of a JSON text parses as partial content; the partial values only grow (a
    /// property once there stays, strings extend, arrays lengthen) and end as the whole value.
    @Test func partialContentGrowsInOrder() throws {
        let text = Self.example.replacingOccurrences(of: "Mira", with: "Mi\\u00efra \\\"✓\\\" 🦉\\ud83e\\udd89")
        var previous: Character.PartiallyGenerated?
        var seen = 0
        for end in text.unicodeScalars.indices.dropFirst() + [text.unicodeScalars.endIndex] {
            let prefix = String(text.unicodeScalars[..<end])
            let content = try GeneratedContent(partialJSON: prefix)
            guard case .structure = content.kind else { continue }
            let partial = try Character.PartiallyGenerated(content)
            if let previous {
                if let name = previous.name { #expect(partial.name?.hasPrefix(name) == true, "\(prefix)") }
                if previous.age != nil { #expect(partial.age == previous.age) }
                if previous.role != nil { #expect(partial.role == previous.role) }
                #expect((partial.items?.count ?? 0) >= (previous.items?.count ?? 0), "\(prefix)")
                if let pet = previous.pet?.name { #expect(partial.pet?.name?.hasPrefix(pet) == true) }
                if previous.isBrave != nil { #expect(partial.isBrave == previous.isBrave) }
            }
            previous = partial
            seen += 1
        }
        #expect(seen > 50)
        #expect(previous?.name == "Miïra \"✓\" 🦉🦉" && previous?.age == 31 && previous?.items == ["lamp", "rope"] && previous?.isBrave == true)
        #expect(previous?.pet?.kind == .owl)
        // A number at the very end may go on ("3" of "31"): it is not shown until it ends.
        #expect(try Character.PartiallyGenerated(GeneratedContent(partialJSON: #"{"name": "A", "age": 3"#)).age == nil)
        #expect(try Character.PartiallyGenerated(GeneratedContent(partialJSON: #"{"name": "A", "age": 3,"#)).age == 3)
        #expect(try Character.PartiallyGenerated(GeneratedContent(partialJSON: #"{"name": "A", "role": "her"#)).role == nil)
    }

    static let model: LlamaModel = try! LlamaModel.load(path: DefaultModel.locate())

    /// A tool with @Generable arguments: its parameters are the type's schema, the model's calls
    /// hold to it (days within 1...7), and they convert.
    @Test func toolsTakeGenerableArguments() async throws {
        #expect(Forecast().parameters == Forecast.Arguments.generationSchema.json)
        #expect(try Forecast().decodeArguments(#"{"city": "Oslo", "days": 3}"#).days == 3)
        #expect(throws: (any Error).self) { try Forecast().decodeArguments(#"{"city": "Oslo"}"#) }
        var called = 0
        for seed in UInt64(1)...4 {
            var sampler = SamplerSettings(temperature: 0.8, seed: seed)
            sampler.topK = 40
            let chat = ChatSession(model: Self.model, parameters: GenerationParameters(maxTokens: 200, sampler: sampler), contextSize: 4096,
                                   tools: [Forecast()])
            await chat.setMaxToolRounds(1)
            let answer = try await chat.respond(to: "What will the weather be in Oslo in 3 days? Use get_forecast.")
            #expect(answer.toolResults.allSatisfy { !$0.isError }, "seed \(seed): \(answer.toolResults)")
            called += answer.toolCalls.count
        }
        #expect(called > 0, "no seed called the tool")
    }

    static func chat(seed: UInt64) -> ChatSession {
        var sampler = SamplerSettings()
        sampler.seed = seed
        sampler.temperature = 0.8
        return ChatSession(model: model, parameters: GenerationParameters(maxTokens: 400, sampler: sampler), contextSize: 2048)
    }

    /// The default 135M model, 20 seeds: every answer is a `Character` within its guides.
    @Test func typedAnswersOnTheDefaultModel() async throws {
        var names: Set<String> = []
        for seed in 0..<20 as Range<UInt64> {
            let chat = Self.chat(seed: seed)
            let response = try await chat.respond(to: "Invent a character for a fairy tale.", generating: Character.self)
            let c = response.content
            #expect((1...120).contains(c.age) && c.items.count <= 3 && c.name.count <= 16, "seed \(seed): \(response.rawContent)")
            #expect(c.items.allSatisfy { $0.count <= 16 } && (c.pet?.name.count ?? 0) <= 12)
            #expect(response.summary.finishReason == .stop)
            names.insert(c.name)
            // The transcript holds the question and the JSON answer.
            #expect(await chat.messages.last?.content == response.summary.text)
        }
        #expect(names.count > 3, "the seeds should give different characters: \(names)")
    }

    /// Streamed: snapshots arrive in order, each extending the last, and the final one is the whole answer.
    @Test func streamedAnswersArriveInOrder() async throws {
        for seed in [UInt64(4), 11] {
            var snapshots: [ResponseSnapshot<Character>] = []
            for try await snapshot in await Self.chat(seed: seed).streamResponse(to: "Invent a character for a fairy tale.", generating: Character.self) {
                snapshots.append(snapshot)
            }
            let whole = try await Self.chat(seed: seed).respond(to: "Invent a character for a fairy tale.", generating: Character.self)
            #expect(snapshots.count > 5)
            #expect(snapshots.last?.rawContent == whole.rawContent)
            for (a, b) in zip(snapshots, snapshots.dropFirst()) {
                #expect(b.rawContent.jsonString.count >= a.rawContent.jsonString.count || !a.rawContent.isComplete)
                if let name = a.content.name { #expect(b.content.name?.hasPrefix(name) == true) }
                if let age = a.content.age { #expect(b.content.age == age) }
                #expect((b.content.items?.count ?? 0) >= (a.content.items?.count ?? 0))
            }
            #expect(snapshots.last?.content.name == whole.content.name && snapshots.last?.content.age == whole.content.age)
        }
    }

    /// Answers cut short by maxTokens say so instead of failing to decode.
    @Test func aCutAnswerSaysSo() async throws {
        var parameters = GenerationParameters(maxTokens: 5)
        parameters.sampler.seed = 1
        let chat = ChatSession(model: Self.model, parameters: parameters, contextSize: 1024)
        await #expect(throws: GenerableError.self) { try await chat.respond(to: "Invent a character.", generating: Character.self) }
    }
}

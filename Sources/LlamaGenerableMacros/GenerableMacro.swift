import SwiftCompilerPlugin
import SwiftDiagnostics
import SwiftSyntax
import SwiftSyntaxMacros

/// `@Generable` on a struct or an enum: an extension that makes it `Generable`, with its JSON
/// schema (descriptions and guides from `@Generable(description:)` and `@Guide`), a
/// conversion from generated JSON, one back, and `PartiallyGenerated` for streaming.
public struct GenerableMacro: ExtensionMacro {
    public static func expansion(of node: AttributeSyntax, attachedTo declaration: some DeclGroupSyntax,
                                 providingExtensionsOf type: some TypeSyntaxProtocol, conformingTo protocols: [TypeSyntax],
                                 in context: some MacroExpansionContext) throws -> [ExtensionDeclSyntax] {
        let description = argument(named: "description", of: node) ?? "nil"
        let access = declaration.modifiers.contains { ["public", "open"].contains($0.name.text) } ? "public " : ""
        let body: String
        if let structure = declaration.as(StructDeclSyntax.self) {
            body = try structMembers(structure, description: description, access: access)
        } else if let enumeration = declaration.as(EnumDeclSyntax.self) {
            body = try enumMembers(enumeration, description: description, access: access)
        } else {
            throw MacroError("@Generable applies to a struct or an enum", at: Syntax(node))
        }
        let conformance = protocols.isEmpty ? "" : ": " + protocols.map(\.trimmedDescription).joined(separator: ", ")
        let decl: DeclSyntax = "extension \(type.trimmed)\(raw: conformance) {\n\(raw: body)\n}"
        guard let ext = decl.as(ExtensionDeclSyntax.self) else { throw MacroError("could not form the extension", at: Syntax(node)) }
        return [ext]
    }

    /// A stored property the model fills in.
    struct Field {
        var name: String
        var type: String          // as written
        var wrapped: String?      // `T` when the type is `T?` or `Optional<T>`
        var description: String
        var guides: [String]
    }

    static func structMembers(_ structure: StructDeclSyntax, description: String, access: String) throws -> String {
        var fields: [Field] = []
        for member in structure.memberBlock.members {
            guard let variable = member.decl.as(VariableDeclSyntax.self) else { continue }
            if variable.modifiers.contains(where: { ["static", "class", "lazy"].contains($0.name.text) }) { continue }
            let isLet = variable.bindingSpecifier.tokenKind == .keyword(.let)
            var guide = (description: "nil", guides: [String]())
            for case .attribute(let attribute) in variable.attributes
            where attribute.attributeName.trimmedDescription.hasSuffix("Guide") {
                guide = (argument(named: "description", of: attribute) ?? "nil", unlabeledArguments(of: attribute))
            }
            for binding in variable.bindings {
                if let accessors = binding.accessorBlock?.accessors {
                    // Computed properties are not filled in; observed ones (willSet/didSet) are.
                    guard case .accessors(let list) = accessors,
                          list.allSatisfy({ ["willSet", "didSet"].contains($0.accessorSpecifier.text) }) else { continue }
                }
                if isLet && binding.initializer != nil { continue }  // a constant the model cannot set
                guard let name = binding.pattern.as(IdentifierPatternSyntax.self)?.identifier.text else {
                    throw MacroError("@Generable properties need plain names", at: Syntax(binding.pattern))
                }
                guard let type = binding.typeAnnotation?.type else {
                    throw MacroError("give '\(name)' a type (@Generable builds its schema from the declared types)", at: Syntax(binding))
                }
                fields.append(Field(name: name.filter { $0 != "`" }, type: type.trimmedDescription, wrapped: optionalWrapped(type),
                                    description: guide.description, guides: guide.guides))
            }
        }
        let properties = fields.map { f in
            "GenerationSchema.Property(name: \(literal(f.name)), description: \(f.description), type: \(f.type).self"
                + (f.guides.isEmpty ? "" : ", guides: [\(f.guides.joined(separator: ", "))]") + ")"
        }
        let inits = fields.map { "self.\(escaped($0.name)) = try content.value(\($0.type).self, forProperty: \(literal($0.name)))" }
        let partialFields = fields.map { "\(access)var \(escaped($0.name)): GeneratedPartial<\($0.wrapped ?? $0.type)>?" }
        let partialInits = fields.map {
            "self.\(escaped($0.name)) = try? content.value(GeneratedPartial<\($0.wrapped ?? $0.type)>.self, forProperty: \(literal($0.name)))"
        }
        let pairs = fields.map { "(\(literal($0.name)), \(escaped($0.name)).generatedContent)" }
        return """
            \(access)static var generationSchema: GenerationSchema {
                GenerationSchema(type: Self.self, description: \(description), properties: [
                    \(properties.joined(separator: ",\n        "))
                ])
            }

            \(access)init(_ content: GeneratedContent) throws {
                \(inits.joined(separator: "\n        "))
            }

            \(access)var generatedContent: GeneratedContent {
                GeneratedContent(properties: [\(pairs.joined(separator: ", "))])
            }

            /// Every property optional: what has arrived so far of a streamed value.
            \(access)struct PartiallyGenerated: ConvertibleFromGeneratedContent, Sendable {
                \(partialFields.joined(separator: "\n        "))

                \(access)init(_ content: GeneratedContent) throws {
                    \(partialInits.joined(separator: "\n            "))
                }
            }
            """
    }

    static func enumMembers(_ enumeration: EnumDeclSyntax, description: String, access: String) throws -> String {
        var cases: [String] = []
        for member in enumeration.memberBlock.members {
            guard let decl = member.decl.as(EnumCaseDeclSyntax.self) else { continue }
            for element in decl.elements {
                if element.parameterClause != nil {
                    throw MacroError("@Generable enums take cases without associated values", at: Syntax(element))
                }
                cases.append(element.name.text.filter { $0 != "`" })
            }
        }
        guard !cases.isEmpty else { throw MacroError("@Generable needs an enum with at least one case", at: Syntax(enumeration.name)) }
        let matches = cases.map { "case \(literal($0)): self = .\(escaped($0))" }
        let names = cases.map { "case .\(escaped($0)): return GeneratedContent(\(literal($0)))" }
        return """
            \(access)static var generationSchema: GenerationSchema {
                GenerationSchema(type: Self.self, description: \(description), anyOf: [\(cases.map(literal).joined(separator: ", "))])
            }

            \(access)init(_ content: GeneratedContent) throws {
                guard content.isComplete, case .string(let name) = content.kind else {
                    throw GeneratedContent.Mismatch(expected: "one of \(cases.joined(separator: ", "))", found: content)
                }
                switch name {
                \(matches.joined(separator: "\n        "))
                default: throw GeneratedContent.Mismatch(expected: "one of \(cases.joined(separator: ", "))", found: content)
                }
            }

            \(access)var generatedContent: GeneratedContent {
                switch self {
                \(names.joined(separator: "\n        "))
                }
            }
            """
    }

    /// The wrapped type of `T?` or `Optional<T>`, as written.
    static func optionalWrapped(_ type: TypeSyntax) -> String? {
        if let optional = type.as(OptionalTypeSyntax.self) { return optional.wrappedType.trimmedDescription }
        if let named = type.as(IdentifierTypeSyntax.self), named.name.text == "Optional",
           let argument = named.genericArgumentClause?.arguments.first {
            return argument.argument.trimmedDescription
        }
        return nil
    }

    static func argument(named label: String, of attribute: AttributeSyntax) -> String? {
        guard case .argumentList(let list) = attribute.arguments else { return nil }
        return list.first { $0.label?.text == label }?.expression.trimmedDescription
    }

    static func unlabeledArguments(of attribute: AttributeSyntax) -> [String] {
        guard case .argumentList(let list) = attribute.arguments else { return [] }
        return list.filter { $0.label == nil }.map(\.expression.trimmedDescription)
    }

    static func literal(_ text: String) -> String { StringLiteralExprSyntax(content: text).description }

    /// A name usable as an identifier (keywords in backticks).
    static func escaped(_ name: String) -> String {
        ["default", "case", "class", "struct", "enum", "func", "var", "let", "in", "is", "as", "for", "while", "if", "else",
         "switch", "return", "self", "Self", "true", "false", "nil", "static", "import", "protocol", "extension", "init",
         "where", "repeat", "do", "catch", "throw", "try", "operator", "public", "private", "internal", "fileprivate",
         "subscript", "typealias", "associatedtype", "inout", "break", "continue", "fallthrough", "guard", "defer",
         "deinit", "super", "Any", "rethrows", "throws"].contains(name) ? "`\(name)`" : name
    }
}

/// `@Guide(description:_:)`: read by `@Generable`; adds nothing itself.
public struct GuideMacro: PeerMacro {
    public static func expansion(of node: AttributeSyntax, providingPeersOf declaration: some DeclSyntaxProtocol,
                                 in context: some MacroExpansionContext) throws -> [DeclSyntax] { [] }
}

struct MacroError: Error, DiagnosticMessage, CustomStringConvertible {
    let message: String
    let node: Syntax
    init(_ message: String, at node: Syntax) { self.message = message; self.node = node }
    var diagnosticID: MessageID { MessageID(domain: "LlamaGenerable", id: "generable") }
    var severity: DiagnosticSeverity { .error }
    var description: String { message }
}

@main
struct LlamaGenerablePlugin: CompilerPlugin {
    let providingMacros: [Macro.Type] = [GenerableMacro.self, GuideMacro.self]
}

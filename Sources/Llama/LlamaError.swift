import Foundation
import GGUF
import Kernels

/// What the library throws, as cases a caller can match. Messages speak of the library's own
/// terms (context size, grammar, template), not of any command's flags.
///
///     do { model = try LlamaModel.load(path: path) }
///     catch LlamaError.truncated { print("the download did not finish; fetch the file again") }
///     catch LlamaError.unsupportedArchitecture(let name) { print("\(name) models are not supported yet") }
public enum LlamaError: LocalizedError, CustomStringConvertible, Sendable, Equatable {
    /// The file cannot be opened or read.
    case cannotRead(path: String, reason: String)
    /// The file is not a GGUF model or llama2.c checkpoint, or its structure is damaged.
    case notAModel(path: String, reason: String)
    /// The file ends before its data does (an interrupted download or copy).
    case truncated(path: String, reason: String)
    /// A well-formed model whose metadata or tensors do not add up.
    case invalidModel(String)
    /// A model of an architecture the library does not run (its name).
    case unsupportedArchitecture(String)
    /// A tensor type (or shape) the kernels cannot compute with.
    case unsupportedType(String)
    /// The text needs `needed` positions and the context holds `available`.
    case contextFull(needed: Int, available: Int)
    /// A grammar (GBNF text or JSON schema) that does not parse or cannot be built.
    case grammar(String)
    /// A chat template or conversation that cannot be rendered, or a saved one that cannot be read.
    case template(String)
    /// A setting, token id or request the library refuses.
    case invalidInput(String)

    /// An invalid input, with what is wrong (what `ModelError("...")` made before).
    public init(_ message: String) { self = .invalidInput(message) }

    public var description: String {
        switch self {
        case .cannotRead(let path, let reason): return "cannot read \(path): \(reason)"
        case .notAModel(let path, let reason): return "\(path) is not a model file swift-llama can read: \(reason)"
        case .truncated(let path, let reason): return "\(path) is truncated (an unfinished download or copy?): \(reason)"
        case .invalidModel(let reason): return reason
        case .unsupportedArchitecture(let reason): return reason
        case .unsupportedType(let reason): return reason
        case .contextFull(let needed, let available):
            return "the text needs \(needed) positions but the context holds \(available); use a larger context size or a shorter text"
        case .grammar(let reason), .template(let reason), .invalidInput(let reason): return reason
        }
    }

    public var errorDescription: String? { description }

    /// A loading error in the library's terms.
    static func loading(_ error: any Error, path: String) -> LlamaError {
        switch error {
        case let error as LlamaError:
            if case .invalidInput(let reason) = error { return .invalidModel(reason) }
            return error
        case let error as GGUFError:
            switch error.problem {
            case .cannotOpen(let reason): return .cannotRead(path: path, reason: reason)
            case .truncated, .tensorOutOfRange: return .truncated(path: path, reason: error.description)
            case .unknownTensorType: return .unsupportedType(error.description)
            default: return .notAModel(path: path, reason: error.description)
            }
        case let error as WeightMatrix.Unsupported: return .unsupportedType("\(path): \(error.description)")
        default: return .invalidModel("\(path): \(error)")
        }
    }
}

/// The name errors had before `LlamaError`; `ModelError("...")` is an `.invalidInput`.
public typealias ModelError = LlamaError

/// This release of swift-llama (semantic versioning; CHANGELOG.md says what each one changed).
public enum SwiftLlama {
    public static let version = "0.1.0"
}

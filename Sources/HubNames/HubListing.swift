import Foundation

/// Reading the hub's file listings: pages, and which paths a listing may name.
public enum HubListing {
    /// `<url>; rel="next"` out of a Link header.
    public static func nextPage(_ header: String, base: String) -> String? {
        for part in header.split(separator: ",") {
            let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count >= 2, pieces.dropFirst().contains(where: { $0.replacingOccurrences(of: " ", with: "") == "rel=\"next\"" }),
                  pieces[0].hasPrefix("<"), pieces[0].hasSuffix(">") else { continue }
            return URL(string: String(pieces[0].dropFirst().dropLast()), relativeTo: URL(string: base))?.absoluteURL.absoluteString
        }
        return nil
    }

    /// A path inside the repository: no absolute paths, no `..`, nothing a shell or a folder walk trips on.
    public static func isSafe(path: String) -> Bool {
        !path.isEmpty && path.utf8.count <= 1024 && !path.hasPrefix("/") && !path.contains("\\")
            && path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
            && !path.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }
}

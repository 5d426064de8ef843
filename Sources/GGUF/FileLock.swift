#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock on a file (flock), held until `unlock`: one download of a model
/// file at a time, across processes. It sits beside `MappedFile` as the other file-system
/// primitive the model files need.
public struct FileLock: Sendable {
    private let fd: Int32

    /// Waits for the lock; throws when the lock file cannot be opened.
    public init(path: String) throws(FileLockError) {
        fd = open(path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw FileLockError(description: "cannot open lock file \(path): \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
    }

    /// Call once.
    public func unlock() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}

public struct FileLockError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

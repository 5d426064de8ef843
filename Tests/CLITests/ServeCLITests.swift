import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ServeCLITests {
    /// A port another program holds: a clear error and exit status 1, not a crash.
    @Test func portInUseIsAClearError() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        #expect(bound && listen(fd, 1) == 0)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let r = try CLI.run(["serve", "--port", String(port), "-c", "256"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("port \(port) on 127.0.0.1 is already in use"), "\(r.stderr)")
    }

    @Test func badOptionsAreUsageErrors() throws {
        let r = try CLI.run(["serve", "--parallel", "0"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--parallel must be at least 1"), "\(r.stderr)")
    }
}

import Foundation
import Llama
import LlamaAPI
import Synchronization
#if canImport(Glibc)
/// glibc's: returns free memory at the top of the heap and in free pages to the system.
@_silgen_name("malloc_trim") private func mallocTrim(_ pad: Int) -> Int32
#endif

/// Threads of the server's own for the per-request work whose cost the request decides: parsing
/// the body, rendering the chat template, tokenizing, compiling a grammar. Swift's cooperative
/// pool has one thread per core (two here), and `/health` and every other request need those
/// threads; a heavy request run there would stall them all. Here it waits its turn instead, on
/// threads with a stack large enough for any input the parsers accept, and a client that leaves
/// or a task that is cancelled cancels its job.
final class WorkerPool: @unchecked Sendable {
    /// Jobs that may wait for a thread; more are refused as the server being busy.
    let queueLimit: Int
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var running = true

    init(threads: Int, queueLimit: Int = 256, stackSize: Int = 32 << 20) {
        self.queueLimit = queueLimit
        for i in 0..<max(1, threads) {
            let thread = Thread { [self] in work() }
            thread.name = "llama-worker-\(i)"
            thread.stackSize = stackSize
            thread.start()
        }
    }

    /// Runs `body` on a worker thread. `cancellation` is cancelled when the calling task is; the
    /// body should check it in long loops (template rendering does). A job cancelled before it
    /// starts never runs.
    func run<T: Sendable>(cancellation: Cancellation = Cancellation(), _ body: @escaping @Sendable (Cancellation) throws -> T) async throws -> T {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
                let job: @Sendable () -> Void = {
                    if cancellation.isCancelled {
                        continuation.resume(throwing: CancellationError())
                        return
                    }
                    continuation.resume(with: Result { try body(cancellation) })
                }
                let accepted: Bool = condition.withLock {
                    guard running, jobs.count < queueLimit else { return false }
                    jobs.append(job)
                    condition.signal()
                    return true
                }
                if !accepted {
                    var busy = APIError(.serviceUnavailable, "the server has \(queueLimit) requests waiting to be prepared; try again shortly",
                                        type: "server_error", code: "server_busy")
                    busy.headers[.retryAfter] = "1"
                    continuation.resume(throwing: busy)
                }
            }
        } onCancel: {
            cancellation.cancel()
        }
    }

    /// Lets the threads end once the queue is empty.
    func shutdown() {
        condition.withLock {
            running = false
            condition.broadcast()
        }
    }

    private func work() {
        while true {
            condition.lock()
            while running, jobs.isEmpty { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
            IdleMemoryTrimmer.noteActivity()
        }
    }
}

/// Hands memory freed by requests back to the system. A large request (an 8 MB body, a big
/// template) leaves freed memory in glibc's arenas, on whichever thread it ran: a worker, or an
/// event loop reading a body. One thread for the whole process trims at most once a second, and
/// only after there was activity, so an idle server settles back to its level within a second
/// of its last request, and a busy one trims about once a second.
enum IdleMemoryTrimmer {
    private struct State {
        var dirty = false
        var started = false
    }
    private static let state = Mutex(State())

    /// Called after each request and job.
    static func noteActivity() {
        #if canImport(Glibc)
        let start = state.withLock { s in
            s.dirty = true
            defer { s.started = true }
            return !s.started
        }
        if start {
            let thread = Thread {
                while true {
                    Thread.sleep(forTimeInterval: 1)
                    if state.withLock({ s in defer { s.dirty = false }; return s.dirty }) { _ = mallocTrim(0) }
                }
            }
            thread.name = "llama-memory-trim"
            thread.start()
        }
        #endif
    }
}

import Foundation
import Synchronization

/// A fixed set of worker threads for the many small parallel steps of a forward pass.
///
/// Waking a parked thread costs tens of microseconds, about as long as one matrix-vector
/// product of a small model, so workers spin for a while after each job, ready for the next,
/// and only then park. The calling thread takes a share of every job itself.
public final class ThreadPool: @unchecked Sendable {
    public let threads: Int
    private let shared: Shared
    private let runLock = NSLock()

    public init(threads: Int) {
        self.threads = max(1, threads)
        shared = Shared()
        for _ in 1..<self.threads {
            // Workers hold the shared state, not the pool, so the pool can go away first.
            let state = shared
            let thread = Thread { state.work() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit { shared.stop() }

    /// Runs `body(i)` for every i in 0..<count across the pool; returns when all are done.
    public func run(_ count: Int, _ body: @escaping (Int) -> Void) {
        guard threads > 1, count > 1 else {
            for i in 0..<count { body(i) }
            return
        }
        runLock.lock()
        defer { runLock.unlock() }
        let job = Job(body: body, count: count)
        shared.publish(job)
        job.drain()
        // Another process may have taken a worker's core: after a short spin, give the CPU away
        // between checks instead of burning it while the worker waits to run.
        var spins = 0
        while job.finished.load(ordering: .acquiring) < count {
            spins += 1
            if spins > 2_000 { sched_yield() }
        }
    }

    /// One `run` call. Workers that arrive late find its indices all claimed and leave.
    private final class Job: @unchecked Sendable {
        let body: (Int) -> Void
        let count: Int
        let next = Atomic<Int>(0)
        let finished = Atomic<Int>(0)

        init(body: @escaping (Int) -> Void, count: Int) {
            self.body = body
            self.count = count
        }

        func drain() {
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                guard i < count else { return }
                body(i)
                finished.add(1, ordering: .releasing)
            }
        }
    }

    /// What the workers see: the current job, a generation number that changes with each job,
    /// and a condition to park on.
    private final class Shared: @unchecked Sendable {
        private var current: Job?
        private var stopping = false
        private let generation = Atomic<Int>(0)
        private let parked = Atomic<Int>(0)
        private let condition = NSCondition()

        /// Spin iterations before a worker parks (some hundreds of microseconds).
        private static let spinLimit = 100_000

        func publish(_ job: Job) {
            condition.lock()
            current = job
            generation.add(1, ordering: .releasing)
            if parked.load(ordering: .relaxed) > 0 { condition.broadcast() }
            condition.unlock()
        }

        func stop() {
            condition.lock()
            stopping = true
            current = nil
            generation.add(1, ordering: .releasing)
            condition.broadcast()
            condition.unlock()
        }

        func work() {
            var seen = generation.load(ordering: .acquiring)
            while true {
                var spins = 0
                while generation.load(ordering: .acquiring) == seen {
                    spins += 1
                    guard spins > Shared.spinLimit else { continue }
                    condition.lock()
                    parked.add(1, ordering: .relaxed)
                    while generation.load(ordering: .acquiring) == seen { condition.wait() }
                    parked.subtract(1, ordering: .relaxed)
                    condition.unlock()
                    spins = 0
                }
                condition.lock()
                seen = generation.load(ordering: .acquiring)
                let job = current
                let stop = stopping
                condition.unlock()
                if stop { return }
                job?.drain()
            }
        }
    }
}

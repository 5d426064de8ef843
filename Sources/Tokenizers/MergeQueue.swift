/// The merge loop both BPE flavours share: symbols in a linked list, candidate pairs in a
/// min-heap, so a word of n symbols costs O(n log n) instead of O(n^2). The best pair merges
/// first (lowest priority value; on a tie, the leftmost), exactly as llama.cpp and
/// SentencePiece order them.
struct MergeQueue {
    struct Symbol {
        var start: Int      // byte offset in the word
        var length: Int     // bytes; 0 once merged into its left neighbour
        var prev: Int
        var next: Int
        var id: TokenID     // -1 when the symbol is not a token (an unknown character)
    }

    private struct Candidate {
        var priority: Float
        var left: Int
        var right: Int
        var length: Int
        var merged: TokenID

        @inline(__always) func before(_ other: Candidate) -> Bool {
            priority < other.priority || (priority == other.priority && left < other.left)
        }
    }

    private(set) var symbols: [Symbol] = []
    private var heap: [Candidate] = []

    mutating func reset() {
        symbols.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
    }

    mutating func append(start: Int, length: Int, id: TokenID) {
        let index = symbols.count
        if index > 0 { symbols[index - 1].next = index }
        symbols.append(Symbol(start: start, length: length, prev: index - 1, next: -1, id: id))
    }

    /// Merges until no adjacent pair is mergeable. `pair` says whether two neighbours merge,
    /// with what priority and into which token.
    mutating func run(_ pair: (Symbol, Symbol) -> (priority: Float, merged: TokenID)?) {
        guard symbols.count > 1 else { return }
        for i in 1..<symbols.count { consider(i - 1, i, pair) }
        while let best = popBest() {
            let left = symbols[best.left], right = symbols[best.right]
            // Skip stale candidates: one side already merged away or grown since this was queued.
            guard left.length > 0, right.length > 0, left.next == best.right,
                  left.length + right.length == best.length else { continue }
            symbols[best.left].length = best.length
            symbols[best.left].id = best.merged
            symbols[best.left].next = right.next
            symbols[best.right].length = 0
            if right.next >= 0 { symbols[right.next].prev = best.left }
            if left.prev >= 0 { consider(left.prev, best.left, pair) }
            if right.next >= 0 { consider(best.left, right.next, pair) }
        }
    }

    /// The surviving symbols in order (the first symbol always survives: merges absorb the right side).
    func forEachSymbol(_ body: (Symbol) -> Void) {
        var i = symbols.isEmpty ? -1 : 0
        while i >= 0 {
            body(symbols[i])
            i = symbols[i].next
        }
    }

    private mutating func consider(_ l: Int, _ r: Int, _ pair: (Symbol, Symbol) -> (priority: Float, merged: TokenID)?) {
        guard let (priority, merged) = pair(symbols[l], symbols[r]) else { return }
        push(Candidate(priority: priority, left: l, right: r, length: symbols[l].length + symbols[r].length, merged: merged))
    }

    private mutating func push(_ c: Candidate) {
        heap.append(c)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].before(heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func popBest() -> Candidate? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var smallest = i
                if l < heap.count, heap[l].before(heap[smallest]) { smallest = l }
                if r < heap.count, heap[r].before(heap[smallest]) { smallest = r }
                if smallest == i { break }
                heap.swapAt(i, smallest)
                i = smallest
            }
        }
        return top
    }
}

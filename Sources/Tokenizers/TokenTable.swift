/// Token text -> id, compared byte for byte.
///
/// Swift's `String` equality is Unicode canonical equivalence, so a `[String: TokenID]` would
/// take U+F96D (a compatibility ideograph) for U+7701 and return the wrong token. Tokenizers
/// must match exact bytes, so this open-addressing table hashes and compares UTF-8 bytes, and
/// looks up slices without allocating.
struct TokenTable: Sendable {
    private let storage: [UInt8]    // every token's bytes, one after another
    private let offsets: [Int]      // token i is storage[offsets[i]..<offsets[i + 1]]
    private let slots: [Int32]      // token ids by hash; -1 marks an empty slot
    private let mask: Int

    init(tokens: [String]) {
        var storage: [UInt8] = []
        storage.reserveCapacity(tokens.reduce(0) { $0 + $1.utf8.count })
        var offsets: [Int] = [0]
        offsets.reserveCapacity(tokens.count + 1)
        for token in tokens {
            storage.append(contentsOf: token.utf8)
            offsets.append(storage.count)
        }
        var capacity = 16
        while capacity < tokens.count * 2 { capacity *= 2 }
        var slots = [Int32](repeating: -1, count: capacity)
        let mask = capacity - 1
        storage.withUnsafeBufferPointer { all in
            for id in 0..<tokens.count {
                let key = UnsafeBufferPointer(rebasing: all[offsets[id]..<offsets[id + 1]])
                var slot = TokenTable.hash(key) & mask
                while true {
                    let existing = Int(slots[slot])
                    if existing < 0 {
                        slots[slot] = Int32(id)
                        break
                    }
                    // A repeated text keeps its first (lowest) id.
                    if all[offsets[existing]..<offsets[existing + 1]].elementsEqual(key) { break }
                    slot = (slot + 1) & mask
                }
            }
        }
        self.storage = storage
        self.offsets = offsets
        self.slots = slots
        self.mask = mask
    }

    func id(_ key: UnsafeBufferPointer<UInt8>) -> TokenID? {
        var slot = TokenTable.hash(key) & mask
        return storage.withUnsafeBufferPointer { all in
            while true {
                let candidate = Int(slots[slot])
                if candidate < 0 { return nil }
                if all[offsets[candidate]..<offsets[candidate + 1]].elementsEqual(key) { return TokenID(candidate) }
                slot = (slot + 1) & mask
            }
        }
    }

    func id(_ key: ArraySlice<UInt8>) -> TokenID? {
        key.withUnsafeBufferPointer { id($0) }
    }

    func id(_ text: String) -> TokenID? {
        var text = text
        return text.withUTF8 { id($0) }
    }

    /// FNV-1a: simple, and good enough for short keys.
    @inline(__always)
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3
        }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }
}

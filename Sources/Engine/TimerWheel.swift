/// A hashed timer wheel over integer ticks: O(1) schedule and cancel, `advance(to:)` returns
/// what expired. A pure value type: it never reads a clock, so tests drive it tick by tick.
///
/// Timers are keyed by the authentication's database id (`UInt64`). Storage is a slab of
/// nodes in parallel arrays (struct of arrays, indices instead of references: no ARC, no
/// per-timer allocation) threaded into one doubly linked list per slot, plus an
/// open-addressing index from id to node. A timer costs 28 bytes of node and 8 bytes of
/// index at most load; `bytesPerTimer` reports the real figure, growth slack included.
///
/// A deadline many revolutions ahead sits in its slot and is skipped by the passes in
/// between (its remaining revolutions are implied by its deadline). A deadline already
/// past is parked in the next slot, so the next `advance` fires it.
package struct TimerWheel: Sendable {
    package struct Expired: Sendable, Equatable {
        package var id: UInt64
        package var deadline: Int64
        package init(id: UInt64, deadline: Int64) {
            self.id = id
            self.deadline = deadline
        }
    }

    private static let none: Int32 = -1

    /// The last tick `advance(to:)` reached; every deadline ≤ it has fired.
    package private(set) var currentTick: Int64
    package private(set) var count = 0

    private let slotMask: Int64
    private var slotHeads: [Int32]

    // Node slab (struct of arrays).
    private var ids: [UInt64] = []
    private var deadlines: [Int64] = []
    private var next: [Int32] = []
    private var previous: [Int32] = []
    private var slots: [Int32] = []
    private var freeHead: Int32 = TimerWheel.none

    // id → node index: Robin Hood linear probing, load ≤ 1/2. Sequential database ids sit in
    // their home buckets, so lookups, misses and backward-shift deletions all stop at once
    // even inside long runs of occupied buckets.
    private var buckets: [Int32]
    private var bucketMask: Int

    /// `slotCount` is rounded up to a power of two. With 50 ms ticks, 4,096 slots span 204 s
    /// per revolution: a 300 s challenge is visited twice.
    package init(slotCount: Int = 4096, startTick: Int64 = 0, expectedCount: Int = 0) {
        var slotsPower = 1
        while slotsPower < max(1, slotCount) { slotsPower <<= 1 }
        slotMask = Int64(slotsPower - 1)
        slotHeads = Array(repeating: TimerWheel.none, count: slotsPower)
        currentTick = startTick
        var bucketCount = 16
        while bucketCount < expectedCount * 2 { bucketCount <<= 1 }
        buckets = Array(repeating: TimerWheel.none, count: bucketCount)
        bucketMask = bucketCount - 1
        if expectedCount > 0 {
            ids.reserveCapacity(expectedCount)
            deadlines.reserveCapacity(expectedCount)
            next.reserveCapacity(expectedCount)
            previous.reserveCapacity(expectedCount)
            slots.reserveCapacity(expectedCount)
        }
    }

    package var isEmpty: Bool { count == 0 }

    /// Memory held per pending timer (node slab, index and slot heads, capacity included).
    package var bytesPerTimer: Double {
        guard count > 0 else { return 0 }
        let nodeBytes = ids.capacity * 8 + deadlines.capacity * 8 + next.capacity * 4 + previous.capacity * 4 + slots.capacity * 4
        return Double(nodeBytes + buckets.capacity * 4 + slotHeads.capacity * 4) / Double(count)
    }

    /// The deadline a timer is scheduled for, or nil if none is pending for `id`.
    package func deadline(of id: UInt64) -> Int64? {
        let node = find(id)
        return node == TimerWheel.none ? nil : deadlines[Int(node)]
    }

    package func contains(_ id: UInt64) -> Bool { find(id) != TimerWheel.none }

    /// Schedules `id` to fire at `deadline`; an existing timer for `id` is moved.
    package mutating func schedule(id: UInt64, at deadline: Int64) {
        var node = find(id)
        if node != TimerWheel.none {
            unlink(node)
        } else {
            node = allocate(id)
            insertIndex(node, for: id)
            count += 1
        }
        deadlines[Int(node)] = deadline
        link(node, slot: slot(for: deadline))
    }

    /// Cancels the timer for `id`. False when none was pending (never scheduled, already
    /// fired or already cancelled), which is harmless.
    @discardableResult
    package mutating func cancel(id: UInt64) -> Bool {
        let node = find(id)
        guard node != TimerWheel.none else { return false }
        remove(node)
        return true
    }

    /// Moves time forward to `tick` and returns every timer whose deadline is ≤ `tick`,
    /// ordered by deadline (then id). `tick == currentTick` fires only timers scheduled since
    /// with a deadline already past; moving backwards does nothing.
    package mutating func advance(to tick: Int64) -> [Expired] {
        var expired: [Expired] = []
        advance(to: tick) { expired.append($0) }
        if expired.count > 1 {
            expired.sort { ($0.deadline, $0.id) < ($1.deadline, $1.id) }
        }
        return expired
    }

    /// As `advance(to:)`, calling `body` for each expired timer (slot order, no sorting).
    package mutating func advance(to tick: Int64, _ body: (Expired) -> Void) {
        if tick == currentTick {
            fireSlot(Int((currentTick + 1) & slotMask), upTo: tick, body)
            return
        }
        guard tick > currentTick else { return }
        let slotCount = slotMask + 1
        if tick - currentTick >= slotCount {
            // A whole revolution or more: visit every slot once.
            for slot in 0..<Int(slotCount) { fireSlot(slot, upTo: tick, body) }
        } else {
            var visiting = currentTick + 1
            while visiting <= tick {
                fireSlot(Int(visiting & slotMask), upTo: tick, body)
                visiting += 1
            }
        }
        currentTick = tick
    }

    /// The earliest pending deadline, by a full scan: for tests and diagnostics, not hot paths.
    package func earliestDeadline() -> Int64? {
        var earliest: Int64?
        for head in slotHeads {
            var node = head
            while node != TimerWheel.none {
                let deadline = deadlines[Int(node)]
                if earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
                node = next[Int(node)]
            }
        }
        return earliest
    }

    // MARK: - Slots

    private func slot(for deadline: Int64) -> Int {
        // Past (or present) deadlines go in the next slot to be visited.
        Int(max(deadline, currentTick + 1) & slotMask)
    }

    private mutating func fireSlot(_ slot: Int, upTo tick: Int64, _ body: (Expired) -> Void) {
        var node = slotHeads[slot]
        while node != TimerWheel.none {
            let following = next[Int(node)]
            let deadline = deadlines[Int(node)]
            if deadline <= tick {
                let id = ids[Int(node)]
                remove(node)
                body(Expired(id: id, deadline: deadline))
            }
            node = following
        }
    }

    private mutating func link(_ node: Int32, slot: Int) {
        let head = slotHeads[slot]
        next[Int(node)] = head
        previous[Int(node)] = TimerWheel.none
        slots[Int(node)] = Int32(slot)
        if head != TimerWheel.none { previous[Int(head)] = node }
        slotHeads[slot] = node
    }

    private mutating func unlink(_ node: Int32) {
        let before = previous[Int(node)]
        let after = next[Int(node)]
        if before != TimerWheel.none {
            next[Int(before)] = after
        } else {
            slotHeads[Int(slots[Int(node)])] = after
        }
        if after != TimerWheel.none { previous[Int(after)] = before }
    }

    private mutating func remove(_ node: Int32) {
        unlink(node)
        removeIndex(for: ids[Int(node)])
        next[Int(node)] = freeHead
        freeHead = node
        count -= 1
    }

    private mutating func allocate(_ id: UInt64) -> Int32 {
        if freeHead != TimerWheel.none {
            let node = freeHead
            freeHead = next[Int(node)]
            ids[Int(node)] = id
            return node
        }
        precondition(ids.count < Int(Int32.max), "timer wheel full")
        ids.append(id)
        deadlines.append(0)
        next.append(TimerWheel.none)
        previous.append(TimerWheel.none)
        slots.append(0)
        return Int32(ids.count - 1)
    }

    // MARK: - Index

    @inline(__always)
    private func home(_ id: UInt64) -> Int {
        // Database ids are sequential: keep the low 10 bits, so ids created together land in
        // neighbouring buckets (cache lines), and scatter each block of 1,024 with Fibonacci
        // hashing, so patterned ids (all multiples of 1,024, say) cannot pile up.
        let block = (id >> 10) &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: (block >> 32) << 10 | (id & 1023)) & bucketMask
    }

    @inline(__always)
    private func distance(of node: Int32, at bucket: Int) -> Int {
        (bucket - home(ids[Int(node)])) & bucketMask
    }

    private func find(_ id: UInt64) -> Int32 {
        let bucket = locate(id)
        return bucket < 0 ? TimerWheel.none : buckets[bucket]
    }

    /// The bucket holding `id`, or -1.
    @inline(__always)
    private func locate(_ id: UInt64) -> Int {
        var bucket = home(id)
        var probes = 0
        while true {
            let node = buckets[bucket]
            if node == TimerWheel.none { return -1 }
            if ids[Int(node)] == id { return bucket }
            // Robin Hood invariant: had `id` been here, it would sit before any entry that is
            // closer to its own home than we are to ours.
            if distance(of: node, at: bucket) < probes { return -1 }
            bucket = (bucket + 1) & bucketMask
            probes += 1
        }
    }

    private mutating func insertIndex(_ node: Int32, for id: UInt64) {
        if (count + 1) * 2 > buckets.count { rebuildIndex() }
        place(node, home: home(id))
    }

    private mutating func place(_ node: Int32, home: Int) {
        var carried = node
        var bucket = home
        var probes = 0
        while true {
            let resident = buckets[bucket]
            if resident == TimerWheel.none {
                buckets[bucket] = carried
                return
            }
            let residentProbes = distance(of: resident, at: bucket)
            if residentProbes < probes {
                buckets[bucket] = carried
                carried = resident
                probes = residentProbes
            }
            bucket = (bucket + 1) & bucketMask
            probes += 1
        }
    }

    /// Backward-shift deletion: no tombstones, and it stops at the first entry already home.
    private mutating func removeIndex(for id: UInt64) {
        var hole = locate(id)
        guard hole >= 0 else { return }
        while true {
            let next = (hole + 1) & bucketMask
            let node = buckets[next]
            if node == TimerWheel.none || distance(of: node, at: next) == 0 { break }
            buckets[hole] = node
            hole = next
        }
        buckets[hole] = TimerWheel.none
    }

    private mutating func rebuildIndex() {
        let old = buckets
        buckets = Array(repeating: TimerWheel.none, count: old.count * 2)
        bucketMask = buckets.count - 1
        for node in old where node != TimerWheel.none { place(node, home: home(ids[Int(node)])) }
    }
}

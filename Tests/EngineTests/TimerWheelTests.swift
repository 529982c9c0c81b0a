import Engine
import Testing

/// The wheel is driven by a manual clock (the tick passed to `advance`): nothing here sleeps.
struct TimerWheelTests {
    func ids(_ expired: [TimerWheel.Expired]) -> [UInt64] { expired.map(\.id) }

    @Test func firesInDeadlineOrderAndNotBefore() {
        var wheel = TimerWheel(slotCount: 8)
        wheel.schedule(id: 3, at: 30)
        wheel.schedule(id: 1, at: 10)
        wheel.schedule(id: 2, at: 20)
        let result1 = wheel.advance(to: 9)
        #expect(result1.isEmpty)
        let result2 = wheel.advance(to: 10)
        #expect(ids(result2) == [1])
        let result3 = wheel.advance(to: 19)
        #expect(result3.isEmpty)
        let result4 = wheel.advance(to: 30)
        #expect(ids(result4) == [2, 3])
        #expect(wheel.count == 0)
    }

    @Test func cancelledTimersNeverFire() {
        var wheel = TimerWheel(slotCount: 16)
        wheel.schedule(id: 1, at: 5)
        wheel.schedule(id: 2, at: 5)
        let result5 = wheel.cancel(id: 1)
        #expect(result5)
        let result6 = wheel.cancel(id: 1)
        #expect(!result6)
        let result7 = wheel.advance(to: 5)
        #expect(ids(result7) == [2])
        #expect(wheel.count == 0)
    }

    @Test func rescheduleMovesTheTimer() {
        var wheel = TimerWheel(slotCount: 16)
        wheel.schedule(id: 7, at: 5)
        wheel.schedule(id: 7, at: 40)
        #expect(wheel.count == 1)
        #expect(wheel.deadline(of: 7) == 40)
        let result8 = wheel.advance(to: 39)
        #expect(result8.isEmpty)
        let result9 = wheel.advance(to: 40)
        #expect(result9 == [TimerWheel.Expired(id: 7, deadline: 40)])
        // Earlier again.
        wheel.schedule(id: 8, at: 100)
        wheel.schedule(id: 8, at: 45)
        let result10 = wheel.advance(to: 45)
        #expect(ids(result10) == [8])
    }

    @Test func deadlinesManyRevolutionsAhead() {
        var wheel = TimerWheel(slotCount: 8)
        wheel.schedule(id: 1, at: 8 * 50 + 3)
        wheel.schedule(id: 2, at: 3)
        var fired: [TimerWheel.Expired] = []
        for tick in Int64(1)...Int64(8 * 50 + 2) { fired += wheel.advance(to: tick) }
        #expect(ids(fired) == [2])
        let result11 = wheel.advance(to: 8 * 50 + 3)
        #expect(result11 == [TimerWheel.Expired(id: 1, deadline: 403)])
    }

    @Test func bigJumpsFireEverythingDue() {
        var wheel = TimerWheel(slotCount: 8)
        for id in UInt64(1)...100 { wheel.schedule(id: id, at: Int64(id) * 3) }
        let fired = wheel.advance(to: 150)
        #expect(ids(fired) == Array(1...50))
        #expect(wheel.count == 50)
        #expect(wheel.earliestDeadline() == 153)
    }

    @Test func manyTimersInOneSlot() {
        var wheel = TimerWheel(slotCount: 4)
        for id in UInt64(0)..<10_000 { wheel.schedule(id: id, at: 4 * Int64(id % 3) + 2) }
        for id in stride(from: UInt64(0), to: 10_000, by: 2) { wheel.cancel(id: id) }
        #expect(wheel.count == 5_000)
        var fired = wheel.advance(to: 2)
        #expect(fired.allSatisfy { $0.deadline == 2 && $0.id % 2 == 1 && $0.id % 3 == 0 })
        fired += wheel.advance(to: 100)
        #expect(fired.count == 5_000)
        #expect(Set(ids(fired)).count == 5_000)
        #expect(wheel.isEmpty)
    }

    @Test func cancelOfAnAlreadyFiredTimerIsHarmless() {
        var wheel = TimerWheel(slotCount: 8)
        wheel.schedule(id: 1, at: 2)
        wheel.schedule(id: 2, at: 9)
        let result12 = wheel.advance(to: 2)
        #expect(ids(result12) == [1])
        let result13 = wheel.cancel(id: 1)
        #expect(!result13)
        #expect(wheel.count == 1)
        let result14 = wheel.advance(to: 9)
        #expect(ids(result14) == [2])
    }

    @Test func pastDeadlinesFireOnTheNextAdvance() {
        var wheel = TimerWheel(slotCount: 8, startTick: 1_000)
        wheel.schedule(id: 1, at: 10)
        wheel.schedule(id: 2, at: 1_000)
        let result15 = wheel.advance(to: 1_001)
        #expect(result15 == [TimerWheel.Expired(id: 1, deadline: 10), TimerWheel.Expired(id: 2, deadline: 1_000)])
    }

    @Test func goingBackwardsDoesNothing() {
        var wheel = TimerWheel(slotCount: 8, startTick: 50)
        wheel.schedule(id: 1, at: 60)
        let result16 = wheel.advance(to: 40)
        #expect(result16.isEmpty)
        #expect(wheel.currentTick == 50)
    }

    /// Random operations against a simple model: the wheel fires exactly what the model says.
    @Test func agreesWithAModel() {
        var generator = SplitMix64(seed: 42)
        var wheel = TimerWheel(slotCount: 32)
        var model: [UInt64: Int64] = [:]
        var now: Int64 = 0
        for _ in 0..<20_000 {
            let id = generator.next() % 500
            switch generator.next() % 4 {
            case 0, 1:
                let deadline = now + Int64(generator.next() % 200) - 5
                wheel.schedule(id: id, at: deadline)
                model[id] = deadline
            case 2:
                let result17 = wheel.cancel(id: id)
                #expect(result17 == (model.removeValue(forKey: id) != nil))
            default:
                now += Int64(generator.next() % 20)
                let fired = wheel.advance(to: now)
                let due = model.filter { $0.value <= now }
                #expect(Set(ids(fired)) == Set(due.keys))
                for expired in fired { #expect(model.removeValue(forKey: expired.id) == expired.deadline) }
            }
            #expect(wheel.count == model.count)
        }
    }

    /// The budget: under 96 bytes per pending timer, id index included.
    @Test func memoryPerTimerStaysUnderBudget() {
        var wheel = TimerWheel()
        for id in UInt64(1)...1_000_000 { wheel.schedule(id: id &* 7919, at: Int64(id % 5_000)) }
        #expect(wheel.count == 1_000_000)
        #expect(wheel.bytesPerTimer < 96, "\(wheel.bytesPerTimer) bytes per timer")
        var presized = TimerWheel(expectedCount: 1_000_000)
        for id in UInt64(1)...1_000_000 { presized.schedule(id: id, at: Int64(id % 5_000)) }
        #expect(presized.bytesPerTimer < 48, "\(presized.bytesPerTimer) bytes per timer")
    }
}

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

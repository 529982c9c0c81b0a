import Foundation
import Postgres
import Server
import Synchronization
import Testing

/// The libc replacements for what the engine took from Foundation agree with Foundation.
@Suite struct ProcessSupportTests {
    @Test func environmentMatchesFoundations() {
        #expect(ProcessSupport.environment() == ProcessInfo.processInfo.environment)
    }

    @Test func readsWholeFilesAndReportsMissingOnes() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("oob-read-\(getpid()).bin").path
        let contents = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(contents)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(ProcessSupport.readFile(atPath: path) == contents)
        #expect(ProcessSupport.readFile(atPath: path + ".missing") == nil)
        #expect(ProcessSupport.readFile(atPath: "/") == nil)
    }

    @Test func wallClockAndUserMatchFoundations() {
        #expect(abs(WallClock.milliseconds() / 1000 - Int64(Date().timeIntervalSince1970)) <= 1)
        #expect(ProcessSupport.userName() == ProcessInfo.processInfo.userName)
        #expect(!ProcessSupport.hostName().isEmpty)
    }

    @Test func basicCredentialsStillTrimSpacesTabsAndUnicodeSpaces() throws {
        let credentials = try #require(TokenAuthority.basicCredentials("Basic \t YWJjOmRlZg==\u{00A0}\t"))
        #expect(credentials == ("abc", "def"))
    }

    @Test func namedThreadsRunAndCarryTheirNameCutTo15Bytes() async throws {
        let seen = Mutex<String?>(nil)
        let release = Mutex(false)
        NamedThread.start("oob-test-thread-long-name") {
            var buffer = [UInt8](repeating: 0, count: 64)
            let fd = open("/proc/thread-self/comm", O_RDONLY)
            let count = fd >= 0 ? read(fd, &buffer, buffer.count) : 0
            if fd >= 0 { close(fd) }
            seen.withLock { $0 = String(decoding: buffer[..<max(0, count)], as: UTF8.self) }
            for _ in 0..<500 where !release.withLock({ $0 }) { usleep(10_000) }
        }
        defer { release.withLock { $0 = true } }
        let deadline = ContinuousClock.now + .seconds(5)
        while seen.withLock({ $0 }) == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(seen.withLock { $0 } == "oob-test-thread\n")
    }
}

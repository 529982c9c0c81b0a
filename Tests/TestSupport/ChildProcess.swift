import Foundation
import Glibc
import Synchronization

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A child process started with posix_spawn, for every program the tests start (the engine,
/// scripts, python3, openssl).
///
/// Not Foundation's `Process`: on Linux (Swift 6.3.1) `Process.run()` lists /proc/self/fd with a
/// copy of the whole 256-byte `d_name`, which reads past glibc's buffer now and then and kills
/// the test process with a segmentation fault (swift-corelibs-foundation PR #5472; seen here in
/// the unit tests, once in about a dozen runs). posix_spawn also leaves `environ` alone, which
/// the tests never change once running.
public final class ChildProcess: Sendable {
    /// Where one of the child's standard streams goes.
    public enum Stream: Sendable {
        case null
        /// A pipe; the parent's end is `output` or `errorOutput` (standard input's: `closeInput()`).
        case pipe
        /// A file, created or truncated for output, read for input.
        case file(String)
        /// Standard error only: wherever standard output goes.
        case standardOutput
    }

    public let pid: Int32
    /// The parent's ends of the output pipes asked for (nil otherwise), closed with this object.
    /// Standard input's is closed by `closeInput()` or with this object.
    public let output: Int32?
    public let errorOutput: Int32?
    private let inputEnd: Mutex<Int32?>
    /// The wait status once reaped.
    private let waitStatus = Mutex<Int32?>(nil)

    /// `environment`: the child's whole environment; nil inherits this process's.
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                standardInput: Stream = .null, standardOutput: Stream = .null, standardError: Stream = .null) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var childEnds: [Int32] = []
        defer { childEnds.forEach { close($0) } }
        var parentEnds: [Int32] = []
        var started = false
        defer { if !started { parentEnds.forEach { close($0) } } }
        func redirect(_ stream: Stream, to target: Int32) throws -> Int32? {
            switch stream {
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
                return nil
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, target, path,
                                                 target == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC, 0o600)
                return nil
            case .standardOutput:
                posix_spawn_file_actions_adddup2(&actions, 1, target)
                return nil
            case .pipe:
                var ends: [Int32] = [-1, -1]
                guard pipe(&ends) == 0 else { throw TestSupportError("pipe failed: errno \(errno)") }
                let (parent, child) = target == 0 ? (ends[1], ends[0]) : (ends[0], ends[1])
                // The parent's end must not leak into later children (closefrom covers the
                // children spawned here; this covers any other way a program is started).
                _ = fcntl(parent, F_SETFD, FD_CLOEXEC)
                childEnds.append(child)
                parentEnds.append(parent)
                posix_spawn_file_actions_adddup2(&actions, child, target)
                return parent
            }
        }
        let input = try redirect(standardInput, to: 0)
        let output = try redirect(standardOutput, to: 1)
        let errorOutput = try redirect(standardError, to: 2)
        // Nothing else of the test process's reaches the child: an engine holding another
        // engine's stdin pipe would never see the EOF that tells it the tests are gone.
        guard let closeFrom = Self.addCloseFrom, closeFrom(&actions, 3) == 0 else {
            throw TestSupportError("posix_spawn_file_actions_addclosefrom_np is not available (glibc 2.34 or later)")
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { (argv + (envp ?? [])).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = envp.map { posix_spawn(&pid, executable, &actions, nil, argv, $0) }
            ?? posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw TestSupportError("cannot start \(executable): \(String(cString: strerror(spawned)))")
        }
        started = true
        self.pid = pid
        self.inputEnd = Mutex(input)
        self.output = output
        self.errorOutput = errorOutput
    }

    deinit {
        closeInput()
        output.map { _ = close($0) }
        errorOutput.map { _ = close($0) }
        _ = isRunning   // reaps it if it has exited
    }

    /// Closes the write end of its standard input (EOF for the child).
    public func closeInput() {
        inputEnd.withLock { fd in
            if let open = fd { close(open) }
            fd = nil
        }
    }

    /// Reaps the child if it has exited; false from then on.
    public var isRunning: Bool {
        waitStatus.withLock { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            while true {
                let done = waitpid(pid, &raw, WNOHANG)
                if done == pid { status = raw; return false }
                if done < 0, errno == EINTR { continue }
                return done == 0
            }
        }
    }

    /// Its exit code, or the number of the signal that ended it; nil while it runs.
    public var terminationStatus: Int32? {
        guard !isRunning, let raw = waitStatus.withLock({ $0 }) else { return nil }
        // WIFEXITED / WEXITSTATUS / WTERMSIG by hand (the macros are not imported).
        return raw & 0x7f == 0 ? (raw >> 8) & 0xff : raw & 0x7f
    }

    public func signal(_ number: Int32) {
        if isRunning { _ = kill(pid, number) }
    }

    /// SIGTERM.
    public func terminate() { signal(SIGTERM) }

    /// Waits (polling every 10 ms) until it exits; SIGKILL and nil after `timeout`.
    @discardableResult
    public func wait(timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now > deadline {
                signal(SIGKILL)
                return nil
            }
            usleep(10_000)
        }
        return terminationStatus
    }

    /// Runs a program to its end (bounded), its standard output and error together returned.
    /// They go to a file, not a pipe: a server the program starts (scripts/dev-db) could inherit
    /// the pipe and hold it open long after the program has exited.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           timeout: Duration = .seconds(120)) throws -> (status: Int32, text: String) {
        var template = Array("/tmp/oob-run-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw TestSupportError("mkstemp failed: errno \(errno)") }
        close(fd)
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { unlink(path) }
        let child = try ChildProcess(executable, arguments, environment: environment,
                                     standardOutput: .file(path), standardError: .standardOutput)
        let status = child.wait(timeout: timeout)
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        guard let status else { throw TestSupportError("\(executable) did not finish within \(timeout):\n\(text)") }
        return (status, text)
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    /// glibc ≥ 2.34 has it, but declares it only for _GNU_SOURCE, which Swift's Glibc module lacks.
    private static let addCloseFrom: AddCloseFrom? = dlsym(UnsafeMutableRawPointer(bitPattern: 0),
                                                          "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }
}

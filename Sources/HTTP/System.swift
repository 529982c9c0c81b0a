import Glibc

/// A failed system call: the call's name and errno. Safe to log (no addresses or payloads).
package struct SystemError: Error, Sendable, CustomStringConvertible {
    package var call: String
    package var errno: Int32

    package init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    package var description: String {
        "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs a syscall that returns -1 on failure, reading errno at once and retrying EINTR.
@discardableResult
func systemCall<Result: BinaryInteger>(_ name: String, _ call: () -> Result) throws(SystemError) -> Result {
    while true {
        let result = call()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        throw SystemError(name, errno: code)
    }
}

/// Outcome of one non-blocking read or write.
enum IOResult: Equatable {
    case transferred(Int)
    /// Read only: the peer closed its sending side.
    case endOfFile
    case wouldBlock
    case failed(Int32)
}

func readNonBlocking(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
    while true {
        let n = read(fd, buffer.baseAddress, buffer.count)
        if n > 0 { return .transferred(n) }
        if n == 0 { return .endOfFile }
        let code = errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
        return .failed(code)
    }
}

/// MSG_NOSIGNAL: a vanished peer gives EPIPE here instead of killing the process with SIGPIPE.
func sendNonBlocking(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> IOResult {
    while true {
        let n = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        if n >= 0 { return .transferred(n) }
        let code = errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
        return .failed(code)
    }
}

/// epoll, eventfd and accept4 are not in Swift's Glibc module map (and this package may not add a
/// C shim target), so they are looked up once in libc and called through C function pointers,
/// which keeps the C calling convention exact.
struct LinuxCalls: @unchecked Sendable { // Immutable C function pointers into libc.
    typealias EpollCreate1 = @convention(c) (Int32) -> Int32
    typealias EpollCtl = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias EpollWait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32
    typealias EventFD = @convention(c) (UInt32, Int32) -> Int32
    typealias Accept4 = @convention(c) (Int32, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<socklen_t>?, Int32) -> Int32

    let epollCreate1: EpollCreate1
    let epollCtl: EpollCtl
    let epollWait: EpollWait
    let eventFD: EventFD
    let accept4: Accept4

    static let shared = LinuxCalls()

    private init() {
        let libc = dlopen(nil, RTLD_NOW)
        func symbol<F>(_ name: String, as type: F.Type) -> F {
            guard let address = dlsym(libc, name) else { fatalError("libc has no \(name)") }
            return unsafeBitCast(address, to: type)
        }
        epollCreate1 = symbol("epoll_create1", as: EpollCreate1.self)
        epollCtl = symbol("epoll_ctl", as: EpollCtl.self)
        epollWait = symbol("epoll_wait", as: EpollWait.self)
        eventFD = symbol("eventfd", as: EventFD.self)
        accept4 = symbol("accept4", as: Accept4.self)
    }
}

/// The Linux ABI values (identical on x86_64 and aarch64; see <sys/epoll.h>, <sys/eventfd.h>).
enum Epoll {
    static let input: UInt32 = 0x001
    static let output: UInt32 = 0x004
    static let error: UInt32 = 0x008
    static let hangUp: UInt32 = 0x010
    static let exclusive: UInt32 = 1 << 28
    static let add: Int32 = 1
    static let delete: Int32 = 2
    static let modify: Int32 = 3
    static let closeOnExec: Int32 = 0o2_000_000
    static let eventFDNonBlocking: Int32 = 0o4_000
    static let eventFDCloseOnExec: Int32 = 0o2_000_000
}

/// `struct epoll_event`: packed (12 bytes) on x86_64, naturally aligned (16 bytes) elsewhere.
struct EpollEvent {
    #if arch(x86_64)
    var events: UInt32 = 0
    private var dataLow: UInt32 = 0
    private var dataHigh: UInt32 = 0

    var data: UInt64 {
        get { UInt64(dataHigh) << 32 | UInt64(dataLow) }
        set {
            dataLow = UInt32(truncatingIfNeeded: newValue)
            dataHigh = UInt32(truncatingIfNeeded: newValue >> 32)
        }
    }
    #else
    var events: UInt32 = 0
    private var padding: UInt32 = 0
    var data: UInt64 = 0
    #endif

    init(events: UInt32, data: UInt64) {
        self.events = events
        self.data = data
    }
}

/// Monotonic nanoseconds, for deadlines.
func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let total = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return total.overflow ? Int64.max : total.partialValue + attoseconds / 1_000_000_000
    }
}

/// "ip:port", "[ip6]:port".
func describeAddress(_ storage: sockaddr_storage) -> String {
    var storage = storage
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                var ip = address.pointee.sin_addr
                inet_ntop(AF_INET, &ip, &text, socklen_t(text.count))
                return "\(cText(text)):\(UInt16(bigEndian: address.pointee.sin_port))"
            }
        }
    case AF_INET6:
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                var ip = address.pointee.sin6_addr
                inet_ntop(AF_INET6, &ip, &text, socklen_t(text.count))
                return "[\(cText(text))]:\(UInt16(bigEndian: address.pointee.sin6_port))"
            }
        }
    default:
        return ""
    }
}

private func cText(_ text: [CChar]) -> String {
    let bytes = text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Lets the process keep as many sockets open as the hard limit allows (often 1,024 soft).
func raiseOpenFileLimit() {
    var limit = rlimit()
    guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
}

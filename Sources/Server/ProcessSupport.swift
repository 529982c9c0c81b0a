import Glibc

/// The few process facilities the engine needs, straight from libc: Foundation (ProcessInfo,
/// FileManager, FileHandle) would add several MiB of resident memory for these alone.
package enum ProcessSupport {
    /// The environment as `NAME=value` pairs (the first of duplicate names wins, as getenv does).
    package static func environment() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        for _ in 0..<1_000_000 {
            guard let pointer = entry.pointee else { break }
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                let name = String(text[..<equals])
                if result[name] == nil { result[name] = String(text[text.index(after: equals)...]) }
            }
            entry += 1
        }
        return result
    }

    /// The whole file, or nil when it cannot be opened or read.
    package static func readFile(atPath path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { return contents }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            contents += chunk[..<count]
        }
    }

    /// Writes all of `text` to standard error (unbuffered, like FileHandle.standardError).
    package static func writeToStandardError(_ text: String) {
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress! + written, $0.count - written) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            written += count
        }
    }

    /// The machine's host name (gethostname), or "localhost" when it has none.
    package static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    /// The effective user's login name from the password database, or the numeric id.
    package static func userName() -> String {
        var record = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        if getpwuid_r(geteuid(), &record, &buffer, buffer.count, &result) == 0, result != nil, let name = record.pw_name {
            return String(cString: name)
        }
        return String(geteuid())
    }
}

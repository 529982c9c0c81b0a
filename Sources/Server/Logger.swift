import Glibc
import Synchronization

/// One structured line per event: `ts level label key=value ... msg="..."`, on stderr.
///
/// Nothing secret goes in: callers pass identifiers and outcomes, never a PAN, token, secret,
/// OTP or personal data (a test greps every line the suite produces). Values are quoted when
/// they hold spaces, quotes or control characters, so one event is always one line.
package struct Logger: Sendable {
    package enum Level: Int, Sendable, Comparable, CaseIterable {
        case debug, info, warning, error
        package static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var name: String {
            switch self {
            case .debug: "debug"
            case .info: "info"
            case .warning: "warning"
            case .error: "error"
            }
        }
    }

    package var label: String
    package var minimumLevel: Level
    /// Carried on every line of one request (x-correlation-id, after its pattern was checked).
    package var metadata: [(String, String)] = []

    package init(label: String, minimumLevel: Level = .info) {
        self.label = label
        self.minimumLevel = minimumLevel
    }

    package func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy.metadata.append((key, value))
        return copy
    }

    package func debug(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.debug, message, fields) }
    package func info(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.info, message, fields) }
    package func warning(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.warning, message, fields) }
    package func error(_ message: String, _ fields: KeyValuePairs<String, String> = [:]) { log(.error, message, fields) }

    package func log(_ level: Level, _ message: String, _ fields: KeyValuePairs<String, String>) {
        guard level >= minimumLevel else { return }
        var line = LogClock.timestamp()
        line += " "
        line += level.name
        line += " "
        line += label
        for (key, value) in metadata { Self.append(key, value, to: &line) }
        for (key, value) in fields { Self.append(key, value, to: &line) }
        Self.append("msg", message, to: &line)
        line += "\n"
        LogSink.write(line)
    }

    static func append(_ key: String, _ value: String, to line: inout String) {
        line += " "
        line += key
        line += "="
        line += quoted(value)
    }

    package static func quoted(_ value: String) -> String {
        var needsQuotes = value.isEmpty
        for scalar in value.unicodeScalars where scalar.value <= 0x20 || scalar == "\"" || scalar == "=" || scalar == "\\" || scalar.value == 0x7F {
            needsQuotes = true
            break
        }
        guard needsQuotes else { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// Serialises writes so lines from different threads never interleave.
enum LogSink {
    private static let lock = Mutex(())

    static func write(_ line: String) {
        lock.withLock { _ in
            var line = line
            line.withUTF8 { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }
}

/// RFC 3339 UTC timestamps with milliseconds, without Foundation's formatters.
package enum LogClock {
    package static func timestamp() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return format(unixMilliseconds: Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec / 1_000_000))
    }

    package static func format(unixMilliseconds: Int64) -> String {
        var seconds = time_t(unixMilliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(unixMilliseconds % 1000)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return pad(parts.tm_year + 1900, 4) + "-" + pad(parts.tm_mon + 1, 2) + "-" + pad(parts.tm_mday, 2)
            + "T" + pad(parts.tm_hour, 2) + ":" + pad(parts.tm_min, 2) + ":" + pad(parts.tm_sec, 2)
            + "." + pad(Int32(millis), 3) + "Z"
    }
}

import Foundation
import Testing

/// The engine's executable keeps Foundation (and FoundationNetworking with libcurl and its TLS
/// stack, ICU, Regex) out of its process: about 11 MiB of resident memory when idle.
/// oob-bench and the tests may use Foundation.
@Suite struct NoFoundationTests {
    static let engineModules = ["oob-engine", "Server", "Engine", "HTTP", "JSON", "Postgres", "Crypto"]
    static let refused = ["Foundation", "FoundationEssentials", "FoundationNetworking", "FoundationInternationalization",
                          "RegexBuilder", "_StringProcessing"]

    @Test func engineModulesImportNoFoundation() throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        var checked = 0
        for module in Self.engineModules {
            let directory = root.appendingPathComponent("Sources").appendingPathComponent(module)
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".swift") }
            for file in files {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                checked += 1
                for line in text.split(separator: "\n") {
                    let words = line.split(separator: " ")
                    guard let importIndex = words.firstIndex(of: "import"), importIndex + 1 < words.count,
                          words[..<importIndex].allSatisfy({ ["package", "public", "internal", "@_exported", "@preconcurrency"].contains($0) })
                    else { continue }
                    let imported = words[importIndex + 1].split(separator: ".").first.map(String.init) ?? ""
                    #expect(!Self.refused.contains(imported), "Sources/\(module)/\(file): \(line)")
                }
            }
        }
        #expect(checked > 30)
    }
}

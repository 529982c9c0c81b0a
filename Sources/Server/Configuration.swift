import Engine
import HTTP
import JSON

/// A setting that is missing or invalid: start-up stops with a message that names it.
package struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    package var setting: String
    package var problem: String
    package init(_ setting: String, _ problem: String) {
        self.setting = setting
        self.problem = problem
    }
    package var description: String { "\(setting): \(problem)" }
}

/// host:port as given in OOB_LISTEN / OOB_OPS_LISTEN (`127.0.0.1:8080`, `[::1]:8080`, port 0 = any).
package struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    package init(parsing text: String, setting: String) throws(ConfigurationError) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ConfigurationError(setting, "expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ConfigurationError(setting, "expected host:port, e.g. 127.0.0.1:8080")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { throw ConfigurationError(setting, "the host is empty") }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ConfigurationError(setting, "the port must be a number from 0 to 65535")
        }
        self.init(host: String(host), port: port)
    }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Everything the engine reads at start-up: the environment (DATABASE_URL, OOB_LISTEN,
/// OOB_OPS_LISTEN, OOB_CONFIG, OOB_LOG_LEVEL) and the JSON file OOB_CONFIG names.
package struct EngineSettings: Sendable {
    package var databaseURL: String
    /// OOB_LISTEN, default `127.0.0.1:8080`: D1's and the app backend's API.
    package var listen: ListenAddress
    /// OOB_OPS_LISTEN, default `127.0.0.1:8081`: health, metrics, operations.
    package var opsListen: ListenAddress
    package var logLevel: Logger.Level
    package var file: ConfigFile

    package static let defaultListen = ListenAddress(host: "127.0.0.1", port: 8080)
    package static let defaultOpsListen = ListenAddress(host: "127.0.0.1", port: 8081)

    /// Reads the database setting alone (for `migrate` and the ops CLI).
    package static func databaseURL(from environment: [String: String]) throws(ConfigurationError) -> String {
        guard let url = environment["DATABASE_URL"], !url.isEmpty else {
            throw ConfigurationError("DATABASE_URL", "not set; give a PostgreSQL URL such as postgresql://user@127.0.0.1:5432/oob")
        }
        guard url.hasPrefix("postgresql://") || url.hasPrefix("postgres://") || url.contains("=") else {
            throw ConfigurationError("DATABASE_URL", "not a PostgreSQL connection URL (postgresql://...) or key=value string")
        }
        return url
    }

    package static func load(environment: [String: String]) throws(ConfigurationError) -> EngineSettings {
        let databaseURL = try databaseURL(from: environment)
        let listen = try environment["OOB_LISTEN"].map { text throws(ConfigurationError) in
            try ListenAddress(parsing: text, setting: "OOB_LISTEN")
        } ?? defaultListen
        let opsListen = try environment["OOB_OPS_LISTEN"].map { text throws(ConfigurationError) in
            try ListenAddress(parsing: text, setting: "OOB_OPS_LISTEN")
        } ?? defaultOpsListen
        if listen.port != 0, listen == opsListen {
            throw ConfigurationError("OOB_OPS_LISTEN", "must differ from OOB_LISTEN (\(listen))")
        }
        var logLevel = Logger.Level.info
        if let text = environment["OOB_LOG_LEVEL"] {
            guard let level = Logger.Level.allCases.first(where: { $0.name == text.lowercased() }) else {
                throw ConfigurationError("OOB_LOG_LEVEL", "must be one of debug, info, warning, error")
            }
            logLevel = level
        }
        guard let path = environment["OOB_CONFIG"], !path.isEmpty else {
            throw ConfigurationError("OOB_CONFIG", "not set; give the path of the engine's JSON configuration file (see README.md)")
        }
        guard let data = ProcessSupport.readFile(atPath: path) else {
            throw ConfigurationError("OOB_CONFIG", "cannot read the file \(path)")
        }
        let file = try ConfigFile.parse(data, source: "OOB_CONFIG (\(path))")
        return EngineSettings(databaseURL: databaseURL, listen: listen, opsListen: opsListen,
                              logLevel: logLevel, file: file)
    }
}

/// The JSON file OOB_CONFIG names. Later work extends this shape; nothing here is renamed.
///
/// ```json
/// {
///   "issuers": [{"id": "ISSUER0001", "challengeTTLSeconds": 300}],
///   "authenticators": [{"issuerId": "ISSUER0001", "consumerId": "demo-consumer",
///                       "appInstanceId": "demo-app", "authnType": "BIOMETRIC"}],
///   "database": {"poolSize": 16, "acquireTimeoutMilliseconds": 2000, "pendingCache": true},
///   "http": {"maxBodyBytes": 65536, "maxConnections": 10000, "maxInFlightRequests": 4096,
///            "headerReadTimeoutSeconds": 10, "idleTimeoutSeconds": 60, "bodyReadTimeoutSeconds": 10},
///   "timer": {"tickMilliseconds": 50, "sweepIntervalSeconds": 5, "sweepGraceSeconds": 2}
/// }
/// ```
package struct ConfigFile: Sendable {
    package struct Issuer: Sendable, Hashable {
        package var id: String
        /// How long the cardholder has to decide; default 300 s, 1...3600.
        package var challengeTTLSeconds: Int
    }

    package struct Authenticator: Sendable, Hashable {
        package var issuerId: String
        package var consumerId: String
        package var appInstanceId: String
        package var authnType: String
    }

    /// Defaults: 16 connections, 2 s to get one before answering 503; 10 s statement timeout
    /// (a call the server has not answered 1 s after it is ended by the pool: a frozen server
    /// or stalled link gets a 503, not a hang); 5 s to open a connection; PENDING polls answered
    /// from memory while a LISTEN connection keeps this instance in step (`pendingCache`).
    package struct Database: Sendable, Hashable {
        package var poolSize = 16
        package var acquireTimeoutMilliseconds = 2000
        package var statementTimeoutMilliseconds = 10_000
        package var connectTimeoutSeconds = 5
        /// false: every PENDING poll reads PostgreSQL (no listener connection); finals are
        /// still answered from memory.
        package var pendingCache = true
    }

    /// Defaults match `HTTPServerConfiguration`.
    package struct HTTP: Sendable, Hashable {
        package var maxBodyBytes = 65536
        package var maxConnections = 10000
        package var maxInFlightRequests = 4096
        package var headerReadTimeoutSeconds = 10
        package var idleTimeoutSeconds = 60
        package var bodyReadTimeoutSeconds = 10
    }

    /// Deadlines: the timer wheel's tick, and the sweeper that ends what another (dead)
    /// instance left behind. Defaults: 50 ms, every 5 s, 2 s past the deadline.
    package struct Timer: Sendable, Hashable {
        package var tickMilliseconds = 50
        package var sweepIntervalSeconds = 5
        package var sweepGraceSeconds = 2
        /// Rows ended per sweeper statement; the sweeper repeats while a batch comes back full.
        package var sweepBatchSize = 1000
    }

    /// How each new challenge reaches the bank's app backend. `webhook`: a signed POST to `url`
    /// (`X-OOB-Signature: sha256=<hex HMAC-SHA-256 of the body with secret>`); `simulated`: the
    /// cardholder "decides" `decision` after `afterMilliseconds`, through the real decision path.
    package struct Push: Sendable, Hashable {
        package enum Kind: String, Sendable, Hashable { case webhook, simulated }
        package var kind: Kind
        package var url: String?
        package var secret: String?
        package var timeoutMilliseconds = 2000
        package var deliveryDeadlineSeconds = 30
        package var decision = "APPROVE"
        package var afterMilliseconds = 1000
        /// Delivery workers per instance.
        package var workers = 4
    }

    /// Where D1's Deliver OTP requests go (through the outbox): the bank's messaging service
    /// (`webhook`) or nowhere but the log of delivered ids (`simulated`, the default).
    /// `{"kind": "webhook", "url": "https://...", "secret": "...", "timeoutMilliseconds": 2000,
    ///   "deliveryDeadlineSeconds": 300}` or `{"kind": "simulated"}`.
    package struct OTP: Sendable, Hashable {
        package enum Kind: String, Sendable, Hashable {
            case webhook, simulated
        }
        package var kind = Kind.simulated
        package var url: String?
        /// Signs each delivery (never logged); at least 16 characters.
        package var secret: String?
        package var timeoutMilliseconds = 2000
        /// How long an OTP may wait in the outbox; past it the item is dropped (and its value erased).
        package var deliveryDeadlineSeconds = 300
    }

    /// An OAuth2 client (client-credentials grant). Exactly one of `secret` / `secretSHA256`.
    package struct Client: Sendable, Hashable {
        package var id: String
        package var secret: String?
        /// Hex SHA-256 of the secret, so the file need not hold the secret itself.
        package var secretSHA256: String?
        package var scopes: [String]
        /// Issuer ids, or `["*"]` for all.
        package var issuers: [String]
    }

    /// A JWS key: HS256 with a base64 secret of at least 32 bytes, or ES256 (P-256) with a PEM
    /// private key (it can sign) or public key (verify only), inline or from a file.
    package struct SigningKey: Sendable, Hashable {
        package var kid: String
        package var alg: String
        package var secret: String?
        package var privateKeyPEM: String?
        package var publicKeyPEM: String?
    }

    package var issuers: [String: Issuer] = [:]
    package var authenticators: [Authenticator] = []
    package var clients: [Client] = []
    package var signingKeys: [SigningKey] = []
    /// The key that signs new tokens; default the first of `signingKeys`. The others still verify,
    /// so keys rotate without downtime.
    package var signingKid: String?
    /// Lifetime of issued tokens, default 900 s, at most 3600 s.
    package var tokenTTLSeconds = 900
    package var tokenIssuer = "oob-engine"
    package var tokenAudience = "oob-engine"
    package var database = Database()
    package var http = HTTP()
    package var timer = Timer()
    /// nil: no push adapter (challenges are only listed by the app API).
    package var push: Push?
    package var otp = OTP()
    /// Top-level keys this version does not know (logged as a warning at start-up).
    package var unknownKeys: [String] = []

    package static let defaultChallengeTTLSeconds = 300

    package init() {}

    package static func parse(_ bytes: [UInt8], source: String) throws(ConfigurationError) -> ConfigFile {
        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            throw ConfigurationError(source, error.description)
        }
        guard case .object(let object) = root else { throw ConfigurationError(source, "must be a JSON object") }
        let reader = ConfigReader(source: source)
        var file = ConfigFile()
        let known: Set<String> = ["issuers", "authenticators", "database", "http", "clients", "signingKeys",
                                  "signingKid", "tokenTTLSeconds", "tokenIssuer", "tokenAudience", "timer", "push", "otp"]
        file.unknownKeys = object.keys.filter { !known.contains($0) }

        for (index, issuer) in try reader.array(object, "issuers", required: true).enumerated() {
            let path = "issuers[\(index)]"
            let item = try reader.object(issuer, path)
            let id = try reader.string(item, "id", path: path)
            guard Identifier.isValidIssuerID(id) else {
                throw ConfigurationError("\(source) \(path).id", "an issuerId is exactly 10 characters of [A-Za-z0-9._~-]")
            }
            let ttl = try reader.int(item, "challengeTTLSeconds", path: path, range: 1...3600) ?? defaultChallengeTTLSeconds
            guard file.issuers[id] == nil else { throw ConfigurationError("\(source) \(path).id", "issuer \(id) appears twice") }
            file.issuers[id] = Issuer(id: id, challengeTTLSeconds: ttl)
        }
        for (index, entry) in try reader.array(object, "authenticators", required: false).enumerated() {
            let path = "authenticators[\(index)]"
            let item = try reader.object(entry, path)
            let issuerId = try reader.string(item, "issuerId", path: path)
            guard file.issuers[issuerId] != nil else {
                throw ConfigurationError("\(source) \(path).issuerId", "names an issuer that is not in \"issuers\"")
            }
            let consumerId = try reader.string(item, "consumerId", path: path)
            guard Identifier.isValidToken64(consumerId) else {
                throw ConfigurationError("\(source) \(path).consumerId", "must match ^[A-Za-z0-9_-]{1,64}$")
            }
            let appInstanceId = try reader.string(item, "appInstanceId", path: path)
            guard Identifier.isPrintableText(appInstanceId, maxLength: 128) else {
                throw ConfigurationError("\(source) \(path).appInstanceId", "must be 1 to 128 printable characters")
            }
            let authnType = try reader.string(item, "authnType", path: path)
            guard authnType == "BIOMETRIC" || authnType == "PLATFORM" else {
                throw ConfigurationError("\(source) \(path).authnType", "must be BIOMETRIC or PLATFORM")
            }
            file.authenticators.append(Authenticator(issuerId: issuerId, consumerId: consumerId,
                                                     appInstanceId: appInstanceId, authnType: authnType))
        }
        try parseTokenSettings(object, into: &file, reader: reader, source: source)
        if let database = try reader.optionalObject(object, "database") {
            file.database.poolSize = try reader.int(database, "poolSize", path: "database", range: 1...200) ?? file.database.poolSize
            file.database.acquireTimeoutMilliseconds = try reader.int(
                database, "acquireTimeoutMilliseconds", path: "database", range: 10...60000) ?? file.database.acquireTimeoutMilliseconds
            file.database.statementTimeoutMilliseconds = try reader.int(
                database, "statementTimeoutMilliseconds", path: "database", range: 100...600_000) ?? file.database.statementTimeoutMilliseconds
            file.database.connectTimeoutSeconds = try reader.int(
                database, "connectTimeoutSeconds", path: "database", range: 2...60) ?? file.database.connectTimeoutSeconds
            file.database.pendingCache = try reader.bool(database, "pendingCache", path: "database") ?? file.database.pendingCache
        }
        if let http = try reader.optionalObject(object, "http") {
            file.http.maxBodyBytes = try reader.int(http, "maxBodyBytes", path: "http", range: 1024...(16 << 20)) ?? file.http.maxBodyBytes
            file.http.maxConnections = try reader.int(http, "maxConnections", path: "http", range: 1...1_000_000) ?? file.http.maxConnections
            file.http.maxInFlightRequests = try reader.int(http, "maxInFlightRequests", path: "http", range: 1...1_000_000) ?? file.http.maxInFlightRequests
            file.http.headerReadTimeoutSeconds = try reader.int(http, "headerReadTimeoutSeconds", path: "http", range: 1...600) ?? file.http.headerReadTimeoutSeconds
            file.http.idleTimeoutSeconds = try reader.int(http, "idleTimeoutSeconds", path: "http", range: 1...3600) ?? file.http.idleTimeoutSeconds
            file.http.bodyReadTimeoutSeconds = try reader.int(http, "bodyReadTimeoutSeconds", path: "http", range: 1...600) ?? file.http.bodyReadTimeoutSeconds
        }
        if let push = try reader.optionalObject(object, "push") {
            file.push = try parsePush(push, reader: reader, source: source)
        }
        if let timer = try reader.optionalObject(object, "timer") {
            file.timer.tickMilliseconds = try reader.int(timer, "tickMilliseconds", path: "timer", range: 1...1000) ?? file.timer.tickMilliseconds
            file.timer.sweepIntervalSeconds = try reader.int(timer, "sweepIntervalSeconds", path: "timer", range: 1...3600) ?? file.timer.sweepIntervalSeconds
            file.timer.sweepGraceSeconds = try reader.int(timer, "sweepGraceSeconds", path: "timer", range: 0...3600) ?? file.timer.sweepGraceSeconds
            file.timer.sweepBatchSize = try reader.int(timer, "sweepBatchSize", path: "timer", range: 1...100_000) ?? file.timer.sweepBatchSize
        }
        if let otp = try reader.optionalObject(object, "otp") {
            file.otp = try parseOTP(otp, reader: reader, source: source)
        }
        return file
    }
}

extension ConfigFile {
    static func parsePush(_ object: JSONObject, reader: ConfigReader, source: String) throws(ConfigurationError) -> Push {
        let kindText = try reader.string(object, "kind", path: "push")
        guard let kind = Push.Kind(rawValue: kindText) else {
            throw ConfigurationError("\(source) push.kind", "must be webhook or simulated")
        }
        var push = Push(kind: kind)
        push.timeoutMilliseconds = try reader.int(object, "timeoutMilliseconds", path: "push", range: 10...60_000) ?? push.timeoutMilliseconds
        push.deliveryDeadlineSeconds = try reader.int(object, "deliveryDeadlineSeconds", path: "push", range: 1...3600) ?? push.deliveryDeadlineSeconds
        push.workers = try reader.int(object, "workers", path: "push", range: 1...64) ?? push.workers
        switch kind {
        case .webhook:
            let url = try reader.string(object, "url", path: "push")
            guard HTTPURL(url) != nil else {
                throw ConfigurationError("\(source) push.url", "must be an absolute http:// or https:// URL")
            }
            let secret = try reader.string(object, "secret", path: "push")
            guard secret.utf8.count >= 16 else {
                throw ConfigurationError("\(source) push.secret", "must be at least 16 characters (the webhook signature key)")
            }
            push.url = url
            push.secret = secret
        case .simulated:
            let decision = try reader.optionalString(object, "decision", path: "push") ?? push.decision
            guard decision == "APPROVE" || decision == "DECLINE" else {
                throw ConfigurationError("\(source) push.decision", "must be APPROVE or DECLINE")
            }
            push.decision = decision
            push.afterMilliseconds = try reader.int(object, "afterMilliseconds", path: "push", range: 0...3_600_000) ?? push.afterMilliseconds
        }
        return push
    }

    static func parseOTP(_ object: JSONObject, reader: ConfigReader, source: String) throws(ConfigurationError) -> OTP {
        var otp = OTP()
        let kind = try reader.string(object, "kind", path: "otp")
        guard let parsed = OTP.Kind(rawValue: kind) else { throw ConfigurationError("\(source) otp.kind", "must be webhook or simulated") }
        otp.kind = parsed
        otp.deliveryDeadlineSeconds = try reader.int(object, "deliveryDeadlineSeconds", path: "otp", range: 1...3600) ?? otp.deliveryDeadlineSeconds
        otp.timeoutMilliseconds = try reader.int(object, "timeoutMilliseconds", path: "otp", range: 10...60000) ?? otp.timeoutMilliseconds
        guard parsed == .webhook else { return otp }
        let url = try reader.string(object, "url", path: "otp")
        guard HTTPURL(url) != nil else {
            throw ConfigurationError("\(source) otp.url", "must be an absolute http:// or https:// URL")
        }
        let secret = try reader.string(object, "secret", path: "otp")
        guard secret.utf8.count >= 16 else { throw ConfigurationError("\(source) otp.secret", "must be at least 16 characters") }
        otp.url = url
        otp.secret = secret
        return otp
    }

    static func parseTokenSettings(_ object: JSONObject, into file: inout ConfigFile, reader: ConfigReader,
                                   source: String) throws(ConfigurationError) {
        var clientIds = Set<String>()
        for (index, entry) in try reader.array(object, "clients", required: false).enumerated() {
            let path = "clients[\(index)]"
            let item = try reader.object(entry, path)
            let id = try reader.string(item, "id", path: path)
            guard Identifier.isPrintableText(id, maxLength: 128), !id.contains(":") else {
                throw ConfigurationError("\(source) \(path).id", "must be 1 to 128 printable characters without ':'")
            }
            guard clientIds.insert(id).inserted else { throw ConfigurationError("\(source) \(path).id", "client \(id) appears twice") }
            let secret = try reader.optionalString(item, "secret", path: path)
            let digest = try reader.optionalString(item, "secretSHA256", path: path)
            guard (secret == nil) != (digest == nil) else {
                throw ConfigurationError("\(source) \(path)", "give exactly one of secret or secretSHA256")
            }
            if let secret, secret.utf8.count < 16 {
                throw ConfigurationError("\(source) \(path).secret", "must be at least 16 characters")
            }
            if let digest, digest.utf8.count != 64 || !digest.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) }) {
                throw ConfigurationError("\(source) \(path).secretSHA256", "must be 64 hex digits (SHA-256 of the secret)")
            }
            let scopes = try reader.stringArray(item, "scopes", path: path)
            for scope in scopes where !["d1", "app", "ops"].contains(scope) {
                throw ConfigurationError("\(source) \(path).scopes", "scopes are d1, app and ops")
            }
            let issuers = try reader.stringArray(item, "issuers", path: path)
            for issuer in issuers where issuer != "*" && file.issuers[issuer] == nil {
                throw ConfigurationError("\(source) \(path).issuers", "names an issuer that is not in \"issuers\" (or use \"*\")")
            }
            file.clients.append(Client(id: id, secret: secret, secretSHA256: digest?.lowercased(), scopes: scopes, issuers: issuers))
        }
        var kids = Set<String>()
        for (index, entry) in try reader.array(object, "signingKeys", required: false).enumerated() {
            let path = "signingKeys[\(index)]"
            let item = try reader.object(entry, path)
            let kid = try reader.string(item, "kid", path: path)
            guard Identifier.isToken(kid, maxLength: 64) else {
                throw ConfigurationError("\(source) \(path).kid", "must match ^[A-Za-z0-9_-]{1,64}$")
            }
            guard kids.insert(kid).inserted else { throw ConfigurationError("\(source) \(path).kid", "kid \(kid) appears twice") }
            let alg = try reader.optionalString(item, "alg", path: path) ?? "HS256"
            var key = SigningKey(kid: kid, alg: alg)
            switch alg {
            case "HS256":
                key.secret = try reader.string(item, "secret", path: path)
            case "ES256":
                key.privateKeyPEM = try reader.pem(item, "privateKeyPEM", fileKey: "privateKeyFile", path: path)
                key.publicKeyPEM = try reader.pem(item, "publicKeyPEM", fileKey: "publicKeyFile", path: path)
                guard key.privateKeyPEM != nil || key.publicKeyPEM != nil else {
                    throw ConfigurationError("\(source) \(path)", "an ES256 key needs privateKeyPEM/privateKeyFile or publicKeyPEM/publicKeyFile")
                }
            default:
                throw ConfigurationError("\(source) \(path).alg", "must be HS256 or ES256")
            }
            file.signingKeys.append(key)
        }
        file.signingKid = try reader.optionalString(object, "signingKid", path: "")
        if let kid = file.signingKid, !kids.contains(kid) {
            throw ConfigurationError("\(source) signingKid", "names no key in signingKeys")
        }
        if !file.clients.isEmpty && file.signingKeys.isEmpty {
            throw ConfigurationError("\(source) signingKeys", "clients are configured but no signing key is")
        }
        file.tokenTTLSeconds = try reader.int(object, "tokenTTLSeconds", path: "", range: 60...3600) ?? file.tokenTTLSeconds
        file.tokenIssuer = try reader.optionalString(object, "tokenIssuer", path: "") ?? file.tokenIssuer
        file.tokenAudience = try reader.optionalString(object, "tokenAudience", path: "") ?? file.tokenAudience
    }
}

/// Typed reads from the configuration JSON with errors that name the file and the key.
struct ConfigReader {
    var source: String

    func object(_ value: JSONValue, _ path: String) throws(ConfigurationError) -> JSONObject {
        guard case .object(let object) = value else { throw ConfigurationError("\(source) \(path)", "must be a JSON object") }
        return object
    }

    func optionalObject(_ object: JSONObject, _ key: String) throws(ConfigurationError) -> JSONObject? {
        switch object[key] {
        case nil, .null?: return nil
        case .object(let value)?: return value
        default: throw ConfigurationError("\(source) \(key)", "must be a JSON object")
        }
    }

    func array(_ object: JSONObject, _ key: String, required: Bool) throws(ConfigurationError) -> [JSONValue] {
        switch object[key] {
        case .array(let items)?: return items
        case nil where !required, .null? where !required: return []
        case nil, .null?: throw ConfigurationError("\(source) \(key)", "is required (an array)")
        default: throw ConfigurationError("\(source) \(key)", "must be an array")
        }
    }

    func string(_ object: JSONObject, _ key: String, path: String) throws(ConfigurationError) -> String {
        guard case .string(let value)? = object[key] else {
            throw ConfigurationError("\(source) \(path).\(key)", "is required (a string)")
        }
        return value
    }

    func optionalString(_ object: JSONObject, _ key: String, path: String) throws(ConfigurationError) -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let value)?: return value
        default: throw ConfigurationError(name(path, key), "must be a string")
        }
    }

    func stringArray(_ object: JSONObject, _ key: String, path: String) throws(ConfigurationError) -> [String] {
        guard case .array(let items)? = object[key] else { throw ConfigurationError(name(path, key), "is required (an array of strings)") }
        var strings: [String] = []
        for item in items {
            guard case .string(let value) = item else { throw ConfigurationError(name(path, key), "must hold strings only") }
            strings.append(value)
        }
        return strings
    }

    /// Inline PEM text, or the contents of the file a sibling key names.
    func pem(_ object: JSONObject, _ key: String, fileKey: String, path: String) throws(ConfigurationError) -> String? {
        if let inline = try optionalString(object, key, path: path) { return inline }
        guard let file = try optionalString(object, fileKey, path: path) else { return nil }
        guard let data = ProcessSupport.readFile(atPath: file) else {
            throw ConfigurationError(name(path, fileKey), "cannot read the file \(file)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    func name(_ path: String, _ key: String) -> String {
        path.isEmpty ? "\(source) \(key)" : "\(source) \(path).\(key)"
    }

    func bool(_ object: JSONObject, _ key: String, path: String) throws(ConfigurationError) -> Bool? {
        switch object[key] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        default: throw ConfigurationError(name(path, key), "must be true or false")
        }
    }

    func int(_ object: JSONObject, _ key: String, path: String, range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        switch object[key] {
        case nil, .null?: return nil
        case .number(let number)?:
            guard let value = number.int64, range.contains(Int(value)) else {
                throw ConfigurationError(name(path, key), "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return Int(value)
        default:
            throw ConfigurationError(name(path, key), "must be a number")
        }
    }
}

import Crypto
import Engine

extension TokenAuthority {
    /// Builds the authority from the configuration file; nil when no signing key is configured
    /// (then every protected route answers 401 and the token endpoint `invalid_client`).
    package static func make(from file: ConfigFile, logger: Logger) throws(ConfigurationError) -> TokenAuthority? {
        guard !file.signingKeys.isEmpty else { return nil }
        var keys: [JWTKey] = []
        for (index, key) in file.signingKeys.enumerated() {
            let path = "OOB_CONFIG signingKeys[\(index)]"
            switch key.alg {
            case "HS256":
                guard let text = key.secret, let secret = Base64.decodeLenient(text) else {
                    throw ConfigurationError("\(path).secret", "must be base64")
                }
                guard secret.count >= 32 else {
                    throw ConfigurationError("\(path).secret", "must decode to at least 32 bytes (RFC 7518 §3.2)")
                }
                keys.append(JWTKey(kid: key.kid, algorithm: .hs256, material: .hmac(secret)))
            default:
                do {
                    if let pem = key.privateKeyPEM {
                        keys.append(JWTKey(kid: key.kid, algorithm: .es256, material: .ecPrivate(try ECP256PrivateKey(pem: pem))))
                    } else if let pem = key.publicKeyPEM {
                        keys.append(JWTKey(kid: key.kid, algorithm: .es256, material: .ecPublic(try ECP256PublicKey(pem: pem))))
                    }
                } catch {
                    throw ConfigurationError(path, "not a P-256 key in PEM form")
                }
            }
        }
        let signingKid = file.signingKid ?? file.signingKeys[0].kid
        let keySet: JWTKeySet
        do {
            keySet = try JWTKeySet(keys: keys, signingKid: signingKid)
        } catch {
            throw ConfigurationError("OOB_CONFIG signingKid", "the signing key must be able to sign (HS256, or ES256 with a private key)")
        }
        var clients: [OAuthClient] = []
        for client in file.clients {
            let digest: [UInt8]
            if let secret = client.secret {
                digest = SHA256.hash(Array(secret.utf8))
            } else if let hex = client.secretSHA256, let bytes = Hex.decode(hex) {
                digest = bytes
            } else {
                throw ConfigurationError("OOB_CONFIG clients", "client \(client.id) has no usable secret")
            }
            clients.append(OAuthClient(id: client.id, secretDigest: digest,
                                       scopes: client.scopes.compactMap(Scope.init(rawValue:)), issuers: client.issuers))
        }
        var configuration = Configuration(clients: clients, keys: keySet)
        configuration.issuer = file.tokenIssuer
        configuration.audience = file.tokenAudience
        configuration.tokenTTLSeconds = file.tokenTTLSeconds
        return TokenAuthority(configuration: configuration, logger: logger)
    }
}

/// `POST /authz/d1/v1/oauth2/token` on the API listener.
package struct TokenRoutes: Sendable {
    package var tokens: TokenAuthority?

    package init(tokens: TokenAuthority?) {
        self.tokens = tokens
    }

    package static let path = "/authz/d1/v1/oauth2/token"

    package var routes: [Route] {
        [
            Route("POST", Self.path, name: "oauth.token") { context in
                guard let tokens = self.tokens else {
                    return TokenAuthority.oauthError(401, "invalid_client", "client authentication failed",
                                                     headers: [("WWW-Authenticate", "Basic realm=\"oob-engine\", charset=\"UTF-8\"")])
                }
                return tokens.tokenEndpoint(context)
            },
        ]
    }
}

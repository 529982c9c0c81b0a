// Throwaway keys generated with `openssl genpkey` for these tests only; they protect nothing.
enum Fixtures {
    static let p256PKCS8 = """
    -----BEGIN PRIVATE KEY-----
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTo17TmgQafz41Jry
    exINDjx8m19rro7M5sTUWxkCKFyhRANCAAThFiioXBcAmlnZOMfWd4433edCMxxF
    HIx/uJskpaRE4gEpwyl4C29MtvvGXvdv2I5JuwpwJfveXK9YfzXh1vOx
    -----END PRIVATE KEY-----
    """

    /// The same key as `p256PKCS8`, in SEC 1 form.
    static let p256SEC1 = """
    -----BEGIN EC PRIVATE KEY-----
    MHcCAQEEIE6Ne05oEGn8+NSa8nsSDQ48fJtfa66OzObE1FsZAihcoAoGCCqGSM49
    AwEHoUQDQgAE4RYoqFwXAJpZ2TjH1neON93nQjMcRRyMf7ibJKWkROIBKcMpeAtv
    TLb7xl73b9iOSbsKcCX73lyvWH814dbzsQ==
    -----END EC PRIVATE KEY-----
    """

    static let p256Public = """
    -----BEGIN PUBLIC KEY-----
    MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE4RYoqFwXAJpZ2TjH1neON93nQjMc
    RRyMf7ibJKWkROIBKcMpeAtvTLb7xl73b9iOSbsKcCX73lyvWH814dbzsQ==
    -----END PUBLIC KEY-----
    """

    /// `openssl dgst -sha256 -sign p256PKCS8` over `openSSLSignedMessage`, DER converted to r || s.
    static let openSSLSignedMessage = "eyJhbGciOiJFUzI1NiJ9.e30"
    static let openSSLSignatureHex =
        "e241eadfb0ce52fef97932d9134282557628070100f68bc11aefa9db2b770820"
        + "a9f517ec3e209e3b2918cf638f070fad482583855c251f72a712801b7f5cde4c"

    static let p384PKCS8 = """
    -----BEGIN PRIVATE KEY-----
    MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCGDzLY9FYFsx7TMHZO
    hQ/qC2qWx6hhG0o3Kjta4iuwN6QEo33WBaYOOA82QIQ17RqhZANiAAQTtZU+Elqq
    iQpMSR+JgrOmVnq3cvS0NqSBJJajgYKXEZtK3kMqVM6maayWwUH5LGxkYzxnFL+J
    sEmslPebWLjF/0PVW0rBO6sXHc6jIz5dqOqTnq/DpXUkxyNLNM7ZmBo=
    -----END PRIVATE KEY-----
    """

    static let p384Public = """
    -----BEGIN PUBLIC KEY-----
    MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEE7WVPhJaqokKTEkfiYKzplZ6t3L0tDak
    gSSWo4GClxGbSt5DKlTOpmmslsFB+SxsZGM8ZxS/ibBJrJT3m1i4xf9D1VtKwTur
    Fx3OoyM+Xajqk56vw6V1JMcjSzTO2Zga
    -----END PUBLIC KEY-----
    """

    static let ed25519PKCS8 = """
    -----BEGIN PRIVATE KEY-----
    MC4CAQAwBQYDK2VwBCIEIFWi3hONpV3Om21nrcDoBmlv5uyzdMSmPwQbtrsyxp7X
    -----END PRIVATE KEY-----
    """

    /// `p256PKCS8` encrypted with passphrase "secret": must be refused, never prompt.
    static let p256Encrypted = """
    -----BEGIN ENCRYPTED PRIVATE KEY-----
    MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjLR/OnOXWsqwICCAAw
    DAYIKoZIhvcNAgkFADAdBglghkgBZQMEAQIEECZmEfrZ65ORh0cTJZHvO9gEgZAy
    HRrJn+d4jaS9NLHzmD9n6K4L3hHSPrjHaMU3wJ3L8IcaqD/KPW7qONUExzYGk/Dm
    p29aVIHQlQqd/XlSEGtqoAp1Tm6ofuHv4fKsU64byPFq760ota9ZfJsLB7QdhsBN
    vR72ulYCMAN13HiKJfvb/LrOEU4Q3ECP9VZ0/5KTWJ9vGHSCSuKZ22dNFT81J2k=
    -----END ENCRYPTED PRIVATE KEY-----
    """
}

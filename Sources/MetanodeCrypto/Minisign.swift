import CSodium
import MetanodeCore

// minisign's formats (https://jedisct1.github.io/minisign/), byte-compatible with minisign 0.11:
//
//   public key  "untrusted comment: …" LF  base64("Ed" ‖ keyID[8] ‖ publicKey[32]) LF
//   secret key  "untrusted comment: …" LF  base64("Ed" ‖ kdf ("Sc", or 0,0 if unencrypted) ‖ "B2" ‖ salt[32] ‖
//               opsLimit[8, LE] ‖ memLimit[8, LE] ‖ (keyID[8] ‖ secretKey[64] ‖ checksum[32]) XOR scrypt) LF
//               checksum = BLAKE2b-256("Ed" ‖ keyID ‖ secretKey); minisign 0.11 leaves it zero if unencrypted.
//   signature   "untrusted comment: …" LF  base64(alg ‖ keyID[8] ‖ signature[64]) LF
//               "trusted comment: …" LF  base64(globalSignature[64]) LF
//               alg "ED" signs BLAKE2b-512(message), legacy "Ed" the message itself; the global signature signs
//               signature ‖ trusted comment, so the trusted comment cannot change without the secret key.
// A key ID is 8 random bytes; minisign prints it as a little-endian UInt64 in %016llX.

enum MinisignFormat {
    static let untrustedPrefix = Array("untrusted comment: ".utf8)
    static let trustedPrefix = Array("trusted comment: ".utf8)
    static let signatureAlgorithm = Array("Ed".utf8)
    static let prehashedAlgorithm = Array("ED".utf8)
    static let keyIDByteCount = 8
    /// A key file is a comment line and ~212 base64 characters; 4 KiB bounds what we read and decode.
    static let keyFileMaxBytes = 4096

    /// minisign reads lines with fgets into 1024- and 8192-byte buffers (the line, its LF and a NUL must fit).
    static let untrustedLineMaxBytes = 1022
    static let trustedLineMaxBytes = 8190

    /// Lines split at LF with a trailing CR dropped (minisign trims both), without trailing empty lines.
    static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map {
            $0.last == 0x0D ? $0.dropLast() : $0
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }

    static func keyIDHex(_ keyID: [UInt8]) -> String { hexEncode(keyID.reversed(), uppercase: true) }

    /// An algorithm tag as minisign users would recognise it, or hex when it is not printable.
    static func algorithmName(_ bytes: some Collection<UInt8>) -> String {
        bytes.allSatisfy { (0x21...0x7E).contains($0) }
            ? "\"\(String(decoding: bytes, as: UTF8.self))\"" : "0x\(hexEncode(bytes))"
    }

    /// An untrusted comment is not signed, so making it one line that fits minisign's buffer loses nothing.
    static func oneLine(_ comment: String, maxBytes: Int) -> String {
        var result = String.UnicodeScalarView()
        var byteCount = 0
        for scalar in comment.unicodeScalars {
            let kept: Unicode.Scalar = (scalar == "\n" || scalar == "\r" || scalar == "\0") ? " " : scalar
            byteCount += UTF8.width(kept)
            guard byteCount <= maxBytes else { break }
            result.append(kept)
        }
        return String(result)
    }

    static func untrustedLine(_ comment: String) -> String {
        "untrusted comment: \(oneLine(comment, maxBytes: Minisign.untrustedCommentMaxBytes))\n"
    }

    /// The raw bytes of a key file: an optional untrusted comment line, then one base64 line (as `minisign -P` takes).
    static func decodeKeyFile(_ text: String, kind: String, byteCount: Int) throws(MetanodeError) -> [UInt8] {
        func invalid(_ reason: String) -> MetanodeError {
            MetanodeError(.invalidArgument, "invalid minisign \(kind): \(reason)")
        }
        let bytes = Array(text.utf8)
        guard bytes.count <= keyFileMaxBytes else {
            throw invalid("the text is \(bytes.count) bytes; a key file is at most \(keyFileMaxBytes)")
        }
        var lines = lines(bytes)
        if lines.first?.starts(with: untrustedPrefix) == true { lines.removeFirst() }
        guard lines.count == 1 else {
            throw invalid(
                lines.isEmpty
                    ? "there is no base64 key line"
                    : "expected one base64 line after the untrusted comment, found \(lines.count) lines")
        }
        guard let raw = Base64.decode(lines[0]) else { throw invalid("the key line is not valid base64") }
        guard raw.count == byteCount else {
            throw invalid("the key line decodes to \(raw.count) bytes; expected \(byteCount)")
        }
        guard raw.starts(with: signatureAlgorithm) else {
            throw invalid("unsupported signature algorithm \(algorithmName(raw[0..<2])); expected \"Ed\"")
        }
        return raw
    }
}

// MARK: - Public key

/// A minisign public key: the Ed25519 key and the 8-byte key ID that signatures name.
public struct MinisignPublicKey: Hashable, Sendable, CustomStringConvertible {
    static let byteCount = 2 + MinisignFormat.keyIDByteCount + Ed25519PublicKey.byteCount

    public let keyID: [UInt8]
    public let key: Ed25519PublicKey

    public init(keyID: [UInt8], key: Ed25519PublicKey) throws(MetanodeError) {
        guard keyID.count == MinisignFormat.keyIDByteCount else {
            throw MetanodeError(.invalidArgument, "a minisign key ID is 8 bytes, not \(keyID.count)")
        }
        self.keyID = keyID
        self.key = key
    }

    /// A public key file ("untrusted comment: …" then the base64 line), or the base64 line alone.
    public static func parse(_ text: String) throws(MetanodeError) -> MinisignPublicKey {
        let raw = try MinisignFormat.decodeKeyFile(text, kind: "public key", byteCount: byteCount)
        return try MinisignPublicKey(
            keyID: Array(raw[2..<10]), key: Ed25519PublicKey(bytes: Array(raw[10...])))
    }

    /// The key ID as minisign prints it, e.g. "11143A3155092352".
    public var keyIDHex: String { MinisignFormat.keyIDHex(keyID) }

    /// The key line, also what `minisign -P` takes.
    public var base64: String { Base64.encode(MinisignFormat.signatureAlgorithm + keyID + key.bytes) }

    /// The public key file, with minisign's own comment unless another is given. `minisign -G` prints the key ID
    /// there without zero padding (%llX), unlike everywhere else; copying that keeps the two files byte-identical.
    public func fileContents(comment: String? = nil) -> String {
        let unpaddedKeyID = String(littleEndian(keyID), radix: 16, uppercase: true)
        return MinisignFormat.untrustedLine(comment ?? "minisign public key \(unpaddedKeyID)") + base64 + "\n"
    }

    public var description: String { "minisign public key \(keyIDHex)" }
}

// MARK: - Secret key

/// A minisign secret key. The secret stays out of `description`, `debugDescription` and `dump`.
public struct MinisignSecretKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Cost of the scrypt key derivation that protects an encrypted key file.
    public struct KDFLimits: Hashable, Sendable {
        public var opsLimit: UInt64
        public var memLimitBytes: UInt64

        public init(opsLimit: UInt64, memLimitBytes: UInt64) {
            self.opsLimit = opsLimit
            self.memLimitBytes = memLimitBytes
        }

        /// What `fileContents(passphrase:)` uses: scrypt N=2^16, r=8, p=1 — 64 MiB and about 0.2 s, affordable on a
        /// small node (a sixteenth of minisign's cost); minisign opens such keys.
        public static let standard = KDFLimits(opsLimit: 1 << 21, memLimitBytes: 1 << 26)
        /// What `minisign -G` writes (libsodium's "sensitive" limits): 1 GiB and about a second per use.
        public static let minisign = KDFLimits(opsLimit: 1 << 25, memLimitBytes: 1 << 30)
        /// The most `parse` spends on a key file: minisign's own limits, with room for 4x the work.
        public static let parseMax = KDFLimits(opsLimit: 1 << 27, memLimitBytes: 1 << 30)
    }

    // Byte layout of the decoded key line.
    private static let byteCount = 158
    private static let kdfRange = 2..<4, checksumAlgorithmRange = 4..<6, saltRange = 6..<38
    private static let opsLimitRange = 38..<46, memLimitRange = 46..<54
    /// keyID ‖ secretKey ‖ checksum: the part scrypt's stream encrypts.
    private static let encryptedRange = 54..<158
    private static let keyIDRange = 54..<62, secretKeyRange = 62..<126, checksumRange = 126..<158
    private static let scrypt = Array("Sc".utf8), noKDF: [UInt8] = [0, 0], blake2b = Array("B2".utf8)

    public let keyID: [UInt8]
    public let keyPair: Ed25519KeyPair

    public init(keyID: [UInt8], keyPair: Ed25519KeyPair) throws(MetanodeError) {
        guard keyID.count == MinisignFormat.keyIDByteCount else {
            throw MetanodeError(.invalidArgument, "a minisign key ID is 8 bytes, not \(keyID.count)")
        }
        self.keyID = keyID
        self.keyPair = keyPair
    }

    /// A new key pair with a random key ID, as `minisign -G` makes.
    public static func generate() -> MinisignSecretKey {
        // try! cannot fire: the key ID is 8 bytes by construction.
        try! MinisignSecretKey(keyID: SecureRandom.bytes(MinisignFormat.keyIDByteCount), keyPair: .generate())
    }

    public var publicKey: MinisignPublicKey { try! MinisignPublicKey(keyID: keyID, key: keyPair.publicKey) }
    public var keyIDHex: String { MinisignFormat.keyIDHex(keyID) }

    /// Whether a secret key file needs a passphrase, so a caller can ask for one only when it must.
    public static func isEncrypted(_ text: String) throws(MetanodeError) -> Bool {
        var raw = try decode(text)
        defer { wipe(&raw) }
        return raw[kdfRange].elementsEqual(scrypt)
    }

    /// Reads a secret key file: unencrypted (what `minisign -G -W` writes) or scrypt-encrypted with `passphrase`.
    public static func parse(_ text: String, passphrase: String?) throws(MetanodeError) -> MinisignSecretKey {
        var raw = try decode(text)
        defer { wipe(&raw) }
        if raw[kdfRange].elementsEqual(scrypt) {
            guard let passphrase else {
                throw MetanodeError(.invalidArgument, "this secret key is encrypted; give its passphrase")
            }
            // The file names its own KDF cost; bound it before spending that memory and time.
            let limits = KDFLimits(
                opsLimit: littleEndian(raw[opsLimitRange]), memLimitBytes: littleEndian(raw[memLimitRange]))
            let max = KDFLimits.parseMax
            guard limits.opsLimit <= max.opsLimit, limits.memLimitBytes <= max.memLimitBytes else {
                throw MetanodeError(
                    .limitExceeded,
                    "this secret key's scrypt parameters (opslimit \(limits.opsLimit), memlimit "
                        + "\(limits.memLimitBytes >> 20) MiB) exceed the limit (opslimit \(max.opsLimit), memlimit "
                        + "\(max.memLimitBytes >> 20) MiB)")
            }
            try applyKeystream(to: &raw, passphrase: passphrase, limits: limits)
            guard checksum(raw).elementsEqual(raw[checksumRange]) else {
                throw MetanodeError(.denied, "wrong passphrase or corrupted key")
            }
        } else if raw[kdfRange].elementsEqual(noKDF) {
            // minisign 0.11 writes a zero checksum into unencrypted keys; check the checksum only when there is one.
            let stored = raw[checksumRange]
            guard stored.allSatisfy({ $0 == 0 }) || checksum(raw).elementsEqual(stored) else {
                throw MetanodeError(
                    .invalidArgument, "invalid minisign secret key: its checksum does not match; the key is corrupted")
            }
        } else {
            let name = MinisignFormat.algorithmName(raw[kdfRange])
            throw MetanodeError(
                .invalidArgument,
                "invalid minisign secret key: unsupported key derivation \(name); expected \"Sc\" or none")
        }
        let keyPair: Ed25519KeyPair
        do {
            keyPair = try withContiguousBytes(raw) { bytes throws(MetanodeError) in
                try Ed25519KeyPair(secretKey: UnsafeRawBufferPointer(rebasing: bytes[secretKeyRange]))
            }
        } catch {
            throw MetanodeError(.invalidArgument, "invalid minisign secret key: \(error.message)")
        }
        return try MinisignSecretKey(keyID: Array(raw[keyIDRange]), keyPair: keyPair)
    }

    /// The secret key file: unencrypted when `passphrase` is nil (like `minisign -G -W`, but with the checksum filled
    /// in, which minisign ignores there), otherwise scrypt-encrypted with `KDFLimits.standard`. The passphrase is
    /// used byte for byte; minisign reads at most 1023 bytes of one, and strips the line break, so callers should too.
    public func fileContents(passphrase: String?) -> String {
        fileContents(passphrase: passphrase, kdfLimits: .standard)
    }

    public func fileContents(passphrase: String?, kdfLimits: KDFLimits) -> String {
        let s = Self.self
        var raw = [UInt8](repeating: 0, count: s.byteCount)
        defer { wipe(&raw) }
        raw.replaceSubrange(0..<2, with: MinisignFormat.signatureAlgorithm)
        raw.replaceSubrange(s.checksumAlgorithmRange, with: s.blake2b)
        raw.replaceSubrange(s.keyIDRange, with: keyID)
        raw.replaceSubrange(s.secretKeyRange, with: keyPair.secretKeyBytes)
        raw.replaceSubrange(s.checksumRange, with: s.checksum(raw))
        guard let passphrase else {
            return MinisignFormat.untrustedLine("minisign secret key") + Base64.encode(raw) + "\n"
        }
        raw.replaceSubrange(s.kdfRange, with: s.scrypt)
        raw.replaceSubrange(s.saltRange, with: SecureRandom.bytes(s.saltRange.count))
        // Like minisign: when memory is short, halve the cost rather than fail, down to libsodium's minimum.
        var limits = kdfLimits
        var encrypted = raw
        defer { wipe(&encrypted) }
        while true {
            do {
                try s.applyKeystream(to: &encrypted, passphrase: passphrase, limits: limits)
                break
            } catch {
                limits.opsLimit /= 2
                limits.memLimitBytes /= 2
                precondition(
                    limits.opsLimit >= UInt64(crypto_pwhash_scryptsalsa208sha256_opslimit_min())
                        && limits.memLimitBytes >= UInt64(crypto_pwhash_scryptsalsa208sha256_memlimit_min()),
                    "cannot encrypt the secret key: \(error.message); scrypt needs more memory than is available")
            }
        }
        encrypted.replaceSubrange(s.opsLimitRange, with: littleEndianBytes(limits.opsLimit))
        encrypted.replaceSubrange(s.memLimitRange, with: littleEndianBytes(limits.memLimitBytes))
        return MinisignFormat.untrustedLine("minisign encrypted secret key") + Base64.encode(encrypted) + "\n"
    }

    public var description: String { "minisign secret key \(keyIDHex)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["keyID": keyIDHex, "publicKey": keyPair.publicKey])
    }

    // MARK: -

    private static func decode(_ text: String) throws(MetanodeError) -> [UInt8] {
        var raw = try MinisignFormat.decodeKeyFile(text, kind: "secret key", byteCount: byteCount)
        guard raw[checksumAlgorithmRange].elementsEqual(blake2b) else {
            let name = MinisignFormat.algorithmName(raw[checksumAlgorithmRange])
            wipe(&raw)
            throw MetanodeError(
                .invalidArgument,
                "invalid minisign secret key: unsupported checksum algorithm \(name); expected \"B2\"")
        }
        return raw
    }

    /// BLAKE2b-256("Ed" ‖ keyID ‖ secretKey) of a decrypted key line.
    private static func checksum(_ raw: [UInt8]) -> [UInt8] {
        var input = Array(raw[0..<2]) + raw[keyIDRange] + raw[secretKeyRange]
        defer { wipe(&input) }
        return Hash.blake2b256(input)
    }

    /// XORs the scrypt stream of `passphrase` over the encrypted range; the same call encrypts and decrypts.
    private static func applyKeystream(to raw: inout [UInt8], passphrase: String, limits: KDFLimits)
        throws(MetanodeError)
    {
        var password = Array(passphrase.utf8)
        var stream = [UInt8](repeating: 0, count: encryptedRange.count)
        defer {
            wipe(&password)
            wipe(&stream)
        }
        let salt = Array(raw[saltRange])
        let result = password.withUnsafeBytes { password in
            crypto_pwhash_scryptsalsa208sha256(
                &stream, UInt64(stream.count), UnsafeRawPointer(password.uint8).assumingMemoryBound(to: CChar.self),
                UInt64(password.count), salt, limits.opsLimit, Int(clamping: limits.memLimitBytes))
        }
        try Sodium.check(result, "crypto_pwhash_scryptsalsa208sha256")
        for (offset, byte) in stream.enumerated() { raw[encryptedRange.lowerBound + offset] ^= byte }
    }
}

private func littleEndian(_ bytes: some BidirectionalCollection<UInt8>) -> UInt64 {
    bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
}

private func littleEndianBytes(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

// MARK: - Signature

/// A minisign signature file.
public struct MinisignSignature: Hashable, Sendable {
    public enum Algorithm: Hashable, Sendable {
        /// "ED": signs BLAKE2b-512 of the message — minisign's default.
        case prehashed
        /// "Ed": signs the message itself (`minisign -S -l`, and minisign before 0.8).
        case legacy
    }

    /// Far above the ~9.3 KiB a valid file can reach, and small enough to read whole.
    public static let fileMaxBytes = 16 * 1024

    public let algorithm: Algorithm
    public let keyID: [UInt8]
    public let signature: [UInt8]
    /// Signed by the global signature; shown by `minisign -V`.
    public let trustedComment: String
    public let globalSignature: [UInt8]
    /// Not signed: anyone can change it.
    public let untrustedComment: String

    init(
        algorithm: Algorithm, keyID: [UInt8], signature: [UInt8], trustedComment: String, globalSignature: [UInt8],
        untrustedComment: String
    ) {
        precondition(keyID.count == MinisignFormat.keyIDByteCount)
        precondition(signature.count == 64 && globalSignature.count == 64)
        self.algorithm = algorithm
        self.keyID = keyID
        self.signature = signature
        self.trustedComment = trustedComment
        self.globalSignature = globalSignature
        self.untrustedComment = untrustedComment
    }

    public var keyIDHex: String { MinisignFormat.keyIDHex(keyID) }

    public static func parse(_ text: String) throws(MetanodeError) -> MinisignSignature {
        func invalid(_ reason: String) -> MetanodeError {
            MetanodeError(.signature, "invalid minisign signature: \(reason)")
        }
        let bytes = Array(text.utf8)
        guard bytes.count <= fileMaxBytes else {
            throw invalid("the file is \(bytes.count) bytes; a signature file is at most \(fileMaxBytes)")
        }
        let lines = MinisignFormat.lines(bytes)
        guard lines.count == 4 else {
            throw invalid(
                "expected 4 lines (untrusted comment, signature, trusted comment, global signature), "
                    + "found \(lines.count)")
        }
        let (untrusted, signatureLine, trusted, globalLine) = (lines[0], lines[1], lines[2], lines[3])

        guard untrusted.starts(with: MinisignFormat.untrustedPrefix) else {
            throw invalid("line 1 must start with \"untrusted comment: \"")
        }
        guard untrusted.count <= MinisignFormat.untrustedLineMaxBytes else {
            throw invalid(
                "the untrusted comment line is \(untrusted.count) bytes; "
                    + "the limit is \(MinisignFormat.untrustedLineMaxBytes)")
        }
        guard let signatureBlob = Base64.decode(signatureLine) else {
            throw invalid("line 2 (the signature) is not valid base64")
        }
        guard signatureBlob.count == 2 + MinisignFormat.keyIDByteCount + 64 else {
            throw invalid("the signature line decodes to \(signatureBlob.count) bytes; expected 74")
        }
        let algorithm: Algorithm
        switch Array(signatureBlob[0..<2]) {
        case MinisignFormat.prehashedAlgorithm: algorithm = .prehashed
        case MinisignFormat.signatureAlgorithm: algorithm = .legacy
        default:
            let name = MinisignFormat.algorithmName(signatureBlob[0..<2])
            throw invalid("unsupported signature algorithm \(name); expected \"ED\" or \"Ed\"")
        }
        guard trusted.starts(with: MinisignFormat.trustedPrefix) else {
            throw invalid("line 3 must start with \"trusted comment: \"")
        }
        guard trusted.count <= MinisignFormat.trustedLineMaxBytes else {
            throw invalid(
                "the trusted comment line is \(trusted.count) bytes; the limit is \(MinisignFormat.trustedLineMaxBytes)"
            )
        }
        // minisign signs the comment up to its first NUL (strlen), so a NUL would make the two disagree.
        guard !trusted.contains(0) else { throw invalid("the trusted comment contains a NUL byte") }
        guard let globalSignature = Base64.decode(globalLine) else {
            throw invalid("line 4 (the global signature) is not valid base64")
        }
        guard globalSignature.count == 64 else {
            throw invalid("the global signature decodes to \(globalSignature.count) bytes; expected 64")
        }
        // The lines are slices of valid UTF-8 cut at ASCII bytes, so decoding keeps every byte as signed.
        return MinisignSignature(
            algorithm: algorithm, keyID: Array(signatureBlob[2..<10]), signature: Array(signatureBlob[10...]),
            trustedComment: String(decoding: trusted.dropFirst(MinisignFormat.trustedPrefix.count), as: UTF8.self),
            globalSignature: globalSignature,
            untrustedComment: String(
                decoding: untrusted.dropFirst(MinisignFormat.untrustedPrefix.count), as: UTF8.self))
    }

    public func fileContents() -> String {
        let tag = algorithm == .prehashed ? MinisignFormat.prehashedAlgorithm : MinisignFormat.signatureAlgorithm
        return MinisignFormat.untrustedLine(untrustedComment) + Base64.encode(tag + keyID + signature) + "\n"
            + "trusted comment: \(trustedComment)\n" + Base64.encode(globalSignature) + "\n"
    }
}

// MARK: - Signing and verifying

public enum Minisign {
    /// minisign refuses longer trusted comments (its 8192-byte line buffer, less prefix, LF and NUL).
    public static let trustedCommentMaxBytes = 8173
    /// minisign cannot read back longer untrusted comments (its 1024-byte line buffer); longer ones are cut.
    public static let untrustedCommentMaxBytes = 1003
    public static let defaultUntrustedComment = "signature from metanode secret key"

    /// A prehashed ("ED") signature, as `minisign -S` makes by default. Throws if the trusted comment is not one line
    /// or is too long: it is signed, so it cannot be quietly repaired like the untrusted one.
    public static func sign(
        _ message: UnsafeRawBufferPointer, with key: MinisignSecretKey, trustedComment: String,
        untrustedComment: String = defaultUntrustedComment
    ) throws(MetanodeError) -> MinisignSignature {
        let comment = Array(trustedComment.utf8)
        guard !comment.contains(where: { $0 == 0x0A || $0 == 0x0D || $0 == 0 }) else {
            throw MetanodeError(
                .invalidArgument, "a trusted comment must be one line, without line breaks or NUL bytes")
        }
        guard comment.count <= trustedCommentMaxBytes else {
            throw MetanodeError(
                .limitExceeded,
                "the trusted comment is \(comment.count) bytes; minisign accepts at most \(trustedCommentMaxBytes)")
        }
        let signature = key.keyPair.sign(Hash.blake2b512(message))
        return MinisignSignature(
            algorithm: .prehashed, keyID: key.keyID, signature: signature, trustedComment: trustedComment,
            globalSignature: key.keyPair.sign(signature + comment),
            untrustedComment: MinisignFormat.oneLine(untrustedComment, maxBytes: untrustedCommentMaxBytes))
    }

    public static func sign(
        _ message: some Sequence<UInt8>, with key: MinisignSecretKey, trustedComment: String,
        untrustedComment: String = defaultUntrustedComment
    ) throws(MetanodeError) -> MinisignSignature {
        try withContiguousBytes(message) { message throws(MetanodeError) in
            try sign(message, with: key, trustedComment: trustedComment, untrustedComment: untrustedComment)
        }
    }

    /// Checks that `publicKey` signed `message` and the trusted comment; accepts prehashed and legacy signatures.
    public static func verify(
        _ message: UnsafeRawBufferPointer, signature: MinisignSignature, publicKey: MinisignPublicKey
    ) throws(MetanodeError) {
        guard signature.keyID == publicKey.keyID else {
            throw MetanodeError(
                .signature, "signed by key \(signature.keyIDHex), not by this public key (\(publicKey.keyIDHex))")
        }
        let matches =
            switch signature.algorithm {
            case .prehashed: publicKey.key.isValidSignature(signature.signature, for: Hash.blake2b512(message))
            case .legacy: signature.signature.withUnsafeBytes { publicKey.key.isValidSignature($0, for: message) }
            }
        guard matches else { throw MetanodeError(.signature, "signature does not match the content") }
        let signedComment = signature.signature + Array(signature.trustedComment.utf8)
        guard publicKey.key.isValidSignature(signature.globalSignature, for: signedComment) else {
            throw MetanodeError(.signature, "trusted comment signature is invalid")
        }
    }

    public static func verify(
        _ message: some Sequence<UInt8>, signature: MinisignSignature, publicKey: MinisignPublicKey
    ) throws(MetanodeError) {
        try withContiguousBytes(message) { message throws(MetanodeError) in
            try verify(message, signature: signature, publicKey: publicKey)
        }
    }

    /// Verifies with the trusted key the signature names and returns that key.
    public static func verify(
        _ message: UnsafeRawBufferPointer, signature: MinisignSignature, trustedKeys: [MinisignPublicKey]
    ) throws(MetanodeError) -> MinisignPublicKey {
        // Key IDs are random, not authenticated: two trusted keys may share one, so try each that matches.
        var firstFailure: MetanodeError?
        for key in trustedKeys where key.keyID == signature.keyID {
            do {
                try verify(message, signature: signature, publicKey: key)
                return key
            } catch {
                firstFailure = firstFailure ?? error
            }
        }
        throw firstFailure
            ?? MetanodeError(
                .untrusted,
                "signed by key \(signature.keyIDHex), which is not in the trust store "
                    + "(add it with `metanode trust add KEYFILE`)")
    }

    public static func verify(
        _ message: some Sequence<UInt8>, signature: MinisignSignature, trustedKeys: [MinisignPublicKey]
    ) throws(MetanodeError) -> MinisignPublicKey {
        try withContiguousBytes(message) { message throws(MetanodeError) in
            try verify(message, signature: signature, trustedKeys: trustedKeys)
        }
    }
}

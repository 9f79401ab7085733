/// A Semantic Versioning 2.0.0 version: `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`, parsed strictly (no `v` prefix, no
/// leading zeros in numeric parts, identifiers of `[0-9A-Za-z-]`).
///
/// Ordering is semver precedence (semver.org §11). Equality and hashing follow the same rule and so ignore build
/// metadata (`1.0.0+a == 1.0.0+b`), because `Comparable` requires `==` to agree with `<`. Compare `build` explicitly
/// where it matters (`PluginManifest` does).
public struct SemanticVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var major: UInt64
    public var minor: UInt64
    public var patch: UInt64
    public var prerelease: [String]
    public var build: [String]

    public init(_ major: UInt64, _ minor: UInt64, _ patch: UInt64, prerelease: [String] = [], build: [String] = []) {
        self.major = major
        self.minor = minor
        self.patch = patch
        self.prerelease = prerelease
        self.build = build
    }

    /// Code `.invalidVersion`: "'1.0' is not a semantic version (expected MAJOR.MINOR.PATCH like 1.0.0)".
    public init(parsing text: String) throws(MetanodeError) {
        func fail(_ detail: String? = nil) -> MetanodeError {
            MetanodeError(
                .invalidVersion,
                "\(Text.quote(text)) is not a semantic version\(detail.map { ": \($0)" } ?? "") "
                    + "(expected MAJOR.MINOR.PATCH like 1.0.0)")
        }
        var rest = Substring(text)
        var build: [String] = []
        if let plus = rest.firstIndex(of: "+") {
            build = rest[rest.index(after: plus)...].split(separator: ".", omittingEmptySubsequences: false).map(
                String.init)
            rest = rest[..<plus]
            guard build.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(Self.isIdentifierByte) }) else {
                throw fail("build metadata must be dot-separated identifiers of [0-9A-Za-z-]")
            }
        }
        var prerelease: [String] = []
        if let dash = rest.firstIndex(of: "-") {
            prerelease = rest[rest.index(after: dash)...].split(separator: ".", omittingEmptySubsequences: false)
                .map(String.init)
            rest = rest[..<dash]
            for identifier in prerelease {
                guard !identifier.isEmpty, identifier.utf8.allSatisfy(Self.isIdentifierByte) else {
                    throw fail("pre-release must be dot-separated identifiers of [0-9A-Za-z-]")
                }
                if Self.isNumeric(identifier), identifier.count > 1, identifier.hasPrefix("0") {
                    throw fail("pre-release identifier '\(identifier)' has a leading zero")
                }
            }
        }
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw fail() }
        var numbers: [UInt64] = []
        for part in parts {
            guard !part.isEmpty, Self.isNumeric(part) else { throw fail() }
            guard part.count == 1 || !part.hasPrefix("0") else { throw fail("'\(part)' has a leading zero") }
            guard let n = UInt64(part) else { throw fail("'\(part)' is too large") }
            numbers.append(n)
        }
        self.init(numbers[0], numbers[1], numbers[2], prerelease: prerelease, build: build)
    }

    public var isPrerelease: Bool { !prerelease.isEmpty }

    public var description: String {
        var s = "\(major).\(minor).\(patch)"
        if !prerelease.isEmpty { s += "-" + prerelease.joined(separator: ".") }
        if !build.isEmpty { s += "+" + build.joined(separator: ".") }
        return s
    }

    /// The same version without pre-release and build.
    public var release: SemanticVersion { SemanticVersion(major, minor, patch) }

    public static func == (a: SemanticVersion, b: SemanticVersion) -> Bool {
        a.major == b.major && a.minor == b.minor && a.patch == b.patch && a.prerelease == b.prerelease
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(major)
        hasher.combine(minor)
        hasher.combine(patch)
        hasher.combine(prerelease)
    }

    /// semver.org §11: numbers numerically; a pre-release sorts before its release; pre-release identifiers compare
    /// numerically if both are numeric, numeric before alphanumeric, else by ASCII; a longer list wins a tie.
    public static func < (a: SemanticVersion, b: SemanticVersion) -> Bool {
        if (a.major, a.minor, a.patch) != (b.major, b.minor, b.patch) {
            return (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
        }
        switch (a.prerelease.isEmpty, b.prerelease.isEmpty) {
        case (true, _): return false
        case (false, true): return true
        case (false, false): break
        }
        for (x, y) in zip(a.prerelease, b.prerelease) where x != y {
            switch (isNumeric(x), isNumeric(y)) {
            // No leading zeros, so the shorter number is smaller; equal lengths compare as text. No overflow.
            case (true, true): return x.count != y.count ? x.count < y.count : x < y
            case (true, false): return true
            case (false, true): return false
            case (false, false): return x.utf8.lexicographicallyPrecedes(y.utf8)
            }
        }
        return a.prerelease.count < b.prerelease.count
    }

    static func isNumeric(_ s: some StringProtocol) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    static func isIdentifierByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "-"):
            true
        default: false
        }
    }
}

/// The plugin ABI version, `MAJOR.MINOR` ("1.0"), as in `MN_ABI_VERSION_MAJOR`/`MINOR` and a manifest's "abi".
public struct ABIVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var major: UInt16
    public var minor: UInt16

    public init(major: UInt16, minor: UInt16) {
        self.major = major
        self.minor = minor
    }

    /// The ABI this kernel implements (the header's MN_ABI_VERSION_*).
    public static let current = ABIVersion(major: Limits.abiMajor, minor: Limits.abiMinor)

    /// Code `.invalidVersion`: "'1' is not an ABI version (expected MAJOR.MINOR like 1.0)".
    public init(parsing text: String) throws(MetanodeError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2,
            parts.allSatisfy({ SemanticVersion.isNumeric($0) && ($0.count == 1 || !$0.hasPrefix("0")) }),
            let major = UInt16(parts[0]), let minor = UInt16(parts[1])
        else {
            throw MetanodeError(
                .invalidVersion, "\(Text.quote(text)) is not an ABI version (expected MAJOR.MINOR like 1.0)")
        }
        self.init(major: major, minor: minor)
    }

    /// Whether a kernel of this ABI can load a plugin built against `plugin`: same major, and the plugin's minor is
    /// not newer (structs only grow within a major version).
    public func canLoad(_ plugin: ABIVersion) -> Bool {
        plugin.major == major && plugin.minor <= minor
    }

    public var description: String { "\(major).\(minor)" }

    public static func < (a: ABIVersion, b: ABIVersion) -> Bool { (a.major, a.minor) < (b.major, b.minor) }
}

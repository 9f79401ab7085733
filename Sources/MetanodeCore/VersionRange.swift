/// A set of versions written as in npm's node-semver: `*`, `1.2.3` / `=1.2.3`, `>1.2.3`, `>=`, `<`, `<=`, `^1.2.3`,
/// `~1.2.3`, partials and x-ranges (`1`, `1.x`, `1.2.*`), hyphen ranges `1.2.3 - 2.3.4`; comparators separated by
/// spaces must all hold, sets separated by `||` are alternatives.
///
/// Each form is rewritten to primitive comparators exactly as node-semver does (`^1.2.3` is `>=1.2.3 <2.0.0-0`), and
/// node-semver's pre-release rule applies: a pre-release version satisfies a comparator set only if some comparator in
/// it names the same MAJOR.MINOR.PATCH with a pre-release (`1.2.4-rc.1` is in `>=1.2.4-beta` but not in `^1.2.3`).
///
/// Equality compares the rewritten comparators, so `^1.2.3 == >=1.2.3 <2.0.0-0`; `description` is the text as written.
public struct VersionRange: Sendable, Hashable, CustomStringConvertible {
    /// One primitive comparison against a version.
    struct Comparator: Sendable, Hashable, CustomStringConvertible {
        enum Op: String, Sendable { case lt = "<", le = "<=", gt = ">", ge = ">=", eq = "=" }
        var op: Op
        var version: SemanticVersion

        func test(_ v: SemanticVersion) -> Bool {
            switch op {
            case .lt: v < version
            case .le: v <= version
            case .gt: v > version
            case .ge: v >= version
            case .eq: v == version
            }
        }

        var description: String { (op == .eq ? "" : op.rawValue) + version.description }
    }

    /// The range as written (trimmed).
    public let text: String
    /// Alternatives (`||`), each a conjunction; an empty conjunction matches every release.
    let sets: [[Comparator]]

    /// Every release version (not pre-releases, per the rule above).
    public static let any = VersionRange(text: "*", sets: [[]])

    private init(text: String, sets: [[Comparator]]) {
        self.text = text
        self.sets = sets
    }

    /// Code `.invalidVersion`, naming the bad part and the accepted forms.
    public init(parsing input: String) throws(MetanodeError) {
        let text = input.trimmingWhitespace
        var sets: [[Comparator]] = []
        for alternative in text.split(separator: "||", omittingEmptySubsequences: false).map(\.trimmingWhitespace) {
            guard !alternative.isEmpty else {
                throw Self.error(
                    input, text.isEmpty ? "it is empty (use * for any version)" : "an alternative around || is empty")
            }
            sets.append(try Self.parseSet(alternative, input: input))
        }
        self.init(text: text, sets: sets)
    }

    public func contains(_ v: SemanticVersion) -> Bool {
        sets.contains { set in
            guard set.allSatisfy({ $0.test(v) }) else { return false }
            guard v.isPrerelease else { return true }
            return set.contains {
                $0.version.isPrerelease
                    && ($0.version.major, $0.version.minor, $0.version.patch) == (v.major, v.minor, v.patch)
            }
        }
    }

    public var description: String { text }

    /// The rewritten form, e.g. ">=1.2.3 <2.0.0-0" for "^1.2.3"; "*" for a set without comparators.
    public var normalized: String {
        sets.map { $0.isEmpty ? "*" : $0.map(\.description).joined(separator: " ") }.joined(separator: " || ")
    }

    public static func == (a: VersionRange, b: VersionRange) -> Bool { a.sets == b.sets }
    public func hash(into hasher: inout Hasher) { hasher.combine(sets) }

    // MARK: Parsing

    /// A version with possibly missing or wildcard parts: nil means `x`/`*`/absent.
    private struct Partial {
        var major: UInt64?
        var minor: UInt64?
        var patch: UInt64?
        var prerelease: [String] = []

        var full: SemanticVersion? {
            guard let major, let minor, let patch else { return nil }
            return SemanticVersion(major, minor, patch, prerelease: prerelease)
        }
    }

    private static func error(_ input: String, _ detail: String) -> MetanodeError {
        MetanodeError(
            .invalidVersion,
            "\(Text.quote(input)) is not a version range: \(detail) "
                + "(expected forms like 1.2.3, ^1.2.3, ~1.2, 1.x, >=1.0.0 <2.0.0, 1.0.0 - 2.0.0, joined with ||)")
    }

    private static func parseSet(_ text: String, input: String) throws(MetanodeError) -> [Comparator] {
        var tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if tokens.count == 3, tokens[1] == "-" {
            return try hyphen(parsePartial(tokens[0], input: input), parsePartial(tokens[2], input: input))
        }
        // node-semver allows a space after an operator: ">= 1.2.3".
        var index = 0
        while index < tokens.count {
            if tokens[index].allSatisfy({ "<>=~^".contains($0) }), index + 1 < tokens.count {
                tokens[index] += tokens.remove(at: index + 1)
            }
            index += 1
        }
        var comparators: [Comparator] = []
        for token in tokens {
            guard token != "-" else { throw error(input, "a hyphen range needs one version on each side of ' - '") }
            let op = ["~>", ">=", "<=", ">", "<", "=", "^", "~"].first { token.hasPrefix($0) } ?? ""
            let partial = try parsePartial(String(token.dropFirst(op.count)), input: input)
            switch op {
            case "^": comparators += caret(partial)
            case "~", "~>": comparators += tilde(partial)
            default: comparators += xRange(op, partial)
            }
        }
        return comparators
    }

    private static func parsePartial(_ text: String, input: String) throws(MetanodeError) -> Partial {
        guard !text.isEmpty else { throw error(input, "an operator is not followed by a version") }
        var core = Substring(text)
        var partial = Partial()
        if let dash = core.firstIndex(where: { $0 == "-" || $0 == "+" }) {
            // A pre-release or build suffix is only meaningful on a full version; reuse the strict version parser.
            let version: SemanticVersion
            do throws(MetanodeError) {
                version = try SemanticVersion(parsing: text)
            } catch {
                throw Self.error(input, "\(Text.quote(text)) is not a version (\(error.message))")
            }
            core = core[..<dash]
            partial.prerelease = version.prerelease
        }
        let parts = core.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 3 else { throw error(input, "\(Text.quote(text)) has more than three parts") }
        var numbers: [UInt64?] = []
        for part in parts {
            if part == "x" || part == "X" || part == "*" {
                numbers.append(nil)
            } else {
                guard SemanticVersion.isNumeric(part), part.count == 1 || !part.hasPrefix("0"), let n = UInt64(part)
                else {
                    throw error(input, "\(Text.quote(part)) in \(Text.quote(text)) is not a number or x")
                }
                guard !numbers.contains(where: { $0 == nil }) else {
                    throw error(input, "\(Text.quote(text)) has a number after a wildcard")
                }
                numbers.append(n)
            }
        }
        numbers += Array(repeating: nil, count: 3 - numbers.count)
        (partial.major, partial.minor, partial.patch) = (numbers[0], numbers[1], numbers[2])
        return partial
    }

    // MARK: Rewrites (node-semver's replaceCaret, replaceTilde, replaceXRange, hyphenReplace)

    /// `M.m.p-0`: the lowest version with that core, so `<` it excludes its pre-releases too.
    private static func floor(_ major: UInt64, _ minor: UInt64, _ patch: UInt64) -> SemanticVersion {
        SemanticVersion(major, minor, patch, prerelease: ["0"])
    }

    /// `<` the next major/minor/patch; nil (no upper bound) when the part is already at its maximum.
    private static func below(major: UInt64) -> [Comparator] {
        major == .max ? [] : [Comparator(op: .lt, version: floor(major + 1, 0, 0))]
    }
    private static func below(major: UInt64, minor: UInt64) -> [Comparator] {
        minor == .max ? below(major: major) : [Comparator(op: .lt, version: floor(major, minor + 1, 0))]
    }
    private static func below(major: UInt64, minor: UInt64, patch: UInt64) -> [Comparator] {
        patch == .max
            ? below(major: major, minor: minor) : [Comparator(op: .lt, version: floor(major, minor, patch + 1))]
    }

    private static let nothing = [Comparator(op: .lt, version: floor(0, 0, 0))]

    private static func atLeast(_ major: UInt64, _ minor: UInt64, _ patch: UInt64, _ pre: [String] = []) -> Comparator {
        Comparator(op: .ge, version: SemanticVersion(major, minor, patch, prerelease: pre))
    }

    /// Allows changes that keep the left-most non-zero part.
    private static func caret(_ p: Partial) -> [Comparator] {
        guard let major = p.major else { return [] }
        guard let minor = p.minor else { return [atLeast(major, 0, 0)] + below(major: major) }
        guard let patch = p.patch else {
            return [atLeast(major, minor, 0)] + (major == 0 ? below(major: 0, minor: minor) : below(major: major))
        }
        let lower = atLeast(major, minor, patch, p.prerelease)
        if major != 0 { return [lower] + below(major: major) }
        if minor != 0 { return [lower] + below(major: 0, minor: minor) }
        return [lower] + below(major: 0, minor: 0, patch: patch)
    }

    /// Allows patch-level changes if a minor is given, minor-level changes if not.
    private static func tilde(_ p: Partial) -> [Comparator] {
        guard let major = p.major else { return [] }
        guard let minor = p.minor else { return [atLeast(major, 0, 0)] + below(major: major) }
        return [atLeast(major, minor, p.patch ?? 0, p.prerelease)] + below(major: major, minor: minor)
    }

    private static func xRange(_ op: String, _ p: Partial) -> [Comparator] {
        if let full = p.full {
            let ops: [String: Comparator.Op] = ["": .eq, "=": .eq, ">": .gt, ">=": .ge, "<": .lt, "<=": .le]
            return [Comparator(op: ops[op]!, version: full)]
        }
        guard let major = p.major else { return op == ">" || op == "<" ? nothing : [] }
        switch op {
        case ">":  // >1 is >=2.0.0; >1.2 is >=1.3.0
            if let minor = p.minor {
                return minor == .max
                    ? (major == .max ? nothing : [atLeast(major + 1, 0, 0)]) : [atLeast(major, minor + 1, 0)]
            }
            return major == .max ? nothing : [atLeast(major + 1, 0, 0)]
        case ">=": return [atLeast(major, p.minor ?? 0, 0)]
        case "<": return [Comparator(op: .lt, version: floor(major, p.minor ?? 0, 0))]
        case "<=": return p.minor.map { below(major: major, minor: $0) } ?? below(major: major)
        default:  // "" or "=": the whole partial range
            guard let minor = p.minor else { return [atLeast(major, 0, 0)] + below(major: major) }
            return [atLeast(major, minor, 0)] + below(major: major, minor: minor)
        }
    }

    private static func hyphen(_ from: Partial, _ to: Partial) -> [Comparator] {
        var result: [Comparator] = []
        if let major = from.major { result.append(atLeast(major, from.minor ?? 0, from.patch ?? 0, from.prerelease)) }
        if let full = to.full {
            result.append(Comparator(op: .le, version: full))
        } else if let major = to.major {
            result += to.minor.map { below(major: major, minor: $0) } ?? below(major: major)
        }
        return result
    }
}

extension StringProtocol {
    var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}

import MetanodeCore
import Testing

@Suite struct VersionRangeTests {
    private func satisfies(_ range: String, _ version: String) throws -> Bool {
        try VersionRange(parsing: range).contains(SemanticVersion(parsing: version))
    }

    // From node-semver's test/fixtures/range-include.js (strict-mode cases without a "v" prefix).
    @Test(arguments: [
        ("1.0.0 - 2.0.0", "1.2.3"), ("^1.2.3+build", "1.2.3"), ("^1.2.3+build", "1.3.0"),
        ("1.2.3-pre+asdf - 2.4.3-pre+asdf", "1.2.3"), ("1.2.3-pre+asdf - 2.4.3-pre+asdf", "1.2.3-pre.2"),
        ("1.2.3-pre+asdf - 2.4.3-pre+asdf", "2.4.3-alpha"), ("1.2.3+asdf - 2.4.3+asdf", "1.2.3"),
        ("1.0.0", "1.0.0"), (">=*", "0.2.4"), ("*", "1.2.3"), (">=1.0.0", "1.0.0"), (">=1.0.0", "1.0.1"),
        (">=1.0.0", "1.1.0"), (">1.0.0", "1.0.1"), (">1.0.0", "1.1.0"), ("<=2.0.0", "2.0.0"),
        ("<=2.0.0", "1.9999.9999"), ("<=2.0.0", "0.2.9"), ("<2.0.0", "1.9999.9999"), ("<2.0.0", "0.2.9"),
        (">= 1.0.0", "1.0.0"), (">=  1.0.0", "1.0.1"), ("> 1.0.0", "1.0.1"), ("<=   2.0.0", "2.0.0"),
        ("0.1.20 || 1.2.4", "1.2.4"), (">=0.2.3 || <0.0.1", "0.0.0"), (">=0.2.3 || <0.0.1", "0.2.3"),
        (">=0.2.3 || <0.0.1", "0.2.4"), ("2.x.x", "2.1.3"), ("1.2.x", "1.2.3"), ("1.2.x || 2.x", "2.1.3"),
        ("1.2.x || 2.x", "1.2.3"), ("x", "1.2.3"), ("2.*.*", "2.1.3"), ("1.2.*", "1.2.3"), ("1.2.* || 2.*", "2.1.3"),
        ("2", "2.1.2"), ("2.3", "2.3.1"), ("~0.0.1", "0.0.1"), ("~0.0.1", "0.0.2"), ("~x", "0.0.9"), ("~2", "2.0.9"),
        ("~2.4", "2.4.0"), ("~2.4", "2.4.5"), ("~>3.2.1", "3.2.2"), ("~1", "1.2.3"), ("~>1", "1.2.3"),
        ("~> 1", "1.2.3"), ("~1.0", "1.0.2"), ("~ 1.0", "1.0.2"), ("~ 1.0.3", "1.0.12"), (">=1", "1.0.0"),
        (">= 1", "1.0.0"), ("<1.2", "1.1.1"), ("< 1.2", "1.1.1"), ("~0.5.4-pre", "0.5.5"), ("~0.5.4-pre", "0.5.4"),
        ("=0.7.x", "0.7.2"), ("<=0.7.x", "0.7.2"), (">=0.7.x", "0.7.2"), ("<=0.7.x", "0.6.2"),
        ("~1.2.1 >=1.2.3", "1.2.3"), ("~1.2.1 =1.2.3", "1.2.3"), ("~1.2.1 1.2.3", "1.2.3"),
        ("~1.2.1 >=1.2.3 1.2.3", "1.2.3"), (">=1.2.1 1.2.3", "1.2.3"), ("1.2.3 >=1.2.1", "1.2.3"),
        (">=1.2", "1.2.8"), ("^1.2.3", "1.8.1"), ("^0.1.2", "0.1.2"), ("^0.1", "0.1.2"), ("^0.0.1", "0.0.1"),
        ("^1.2", "1.4.2"), ("^1.2 ^1", "1.4.2"), ("^1.2.3-alpha", "1.2.3-pre"), ("^1.2.0-alpha", "1.2.0-pre"),
        ("^0.0.1-alpha", "0.0.1-beta"), ("^0.0.1-alpha", "0.0.1"), ("^0.1.1-alpha", "0.1.1-beta"), ("^x", "1.2.3"),
        ("x - 1.0.0", "0.9.7"), ("x - 1.x", "0.9.7"), ("1.0.0 - x", "1.9.7"), ("1.x - x", "1.9.7"), ("<=7.x", "7.9.9"),
    ])
    func includesNodeSemverExamples(range: String, version: String) throws {
        #expect(try satisfies(range, version))
    }

    // From node-semver's test/fixtures/range-exclude.js (strict-mode cases without a "v" prefix).
    @Test(arguments: [
        ("1.0.0 - 2.0.0", "2.2.3"), ("1.2.3+asdf - 2.4.3+asdf", "1.2.3-pre.2"),
        ("1.2.3+asdf - 2.4.3+asdf", "2.4.3-alpha"),
        ("^1.2.3+build", "2.0.0"), ("^1.2.3+build", "1.2.0"), ("^1.2.3", "1.2.3-pre"), ("^1.2", "1.2.0-pre"),
        (">1.2", "1.3.0-beta"), ("<=1.2.3", "1.2.3-beta"), ("^1.2.3", "1.2.3-beta"), ("=0.7.x", "0.7.0-asdf"),
        (">=0.7.x", "0.7.0-asdf"), ("<=0.7.x", "0.7.0-asdf"), ("1.0.0", "1.0.1"), (">=1.0.0", "0.0.0"),
        (">=1.0.0", "0.0.1"), (">=1.0.0", "0.1.0"), (">1.0.0", "0.0.1"), (">1.0.0", "0.1.0"), ("<=2.0.0", "3.0.0"),
        ("<=2.0.0", "2.9999.9999"), ("<=2.0.0", "2.2.9"), ("<2.0.0", "2.9999.9999"), ("<2.0.0", "2.2.9"),
        (">=0.1.97", "0.1.93"), ("0.1.20 || 1.2.4", "1.2.3"), (">=0.2.3 || <0.0.1", "0.0.3"),
        (">=0.2.3 || <0.0.1", "0.2.2"), ("2.x.x", "1.1.3"), ("2.x.x", "3.1.3"), ("1.2.x", "1.3.3"),
        ("1.2.x || 2.x", "3.1.3"), ("1.2.x || 2.x", "1.1.3"), ("2.*.*", "1.1.3"), ("2.*.*", "3.1.3"),
        ("1.2.*", "1.3.3"), ("1.2.* || 2.*", "3.1.3"), ("1.2.* || 2.*", "1.1.3"), ("2", "1.1.2"), ("2.3", "2.4.1"),
        ("~0.0.1", "0.1.0-alpha"), ("~0.0.1", "0.1.0"), ("~2.4", "2.5.0"), ("~2.4", "2.3.9"), ("~>3.2.1", "3.3.2"),
        ("~>3.2.1", "3.2.0"), ("~1", "0.2.3"), ("~>1", "2.2.3"), ("~1.0", "1.1.0"), ("<1", "1.0.0"),
        (">=1.2", "1.1.1"), ("~0.5.4-beta", "0.5.4-alpha"), ("=0.7.x", "0.8.2"), (">=0.7.x", "0.6.2"),
        ("<0.7.x", "0.7.2"), ("<1.2.3", "1.2.3-beta"), ("=1.2.3", "1.2.3-beta"), (">1.2", "1.2.8"),
        ("^0.0.1", "0.0.2-alpha"), ("^0.0.1", "0.0.2"), ("^1.2.3", "2.0.0-alpha"), ("^1.2.3", "1.2.2"),
        ("^1.2", "1.1.9"), ("*", "1.2.3-foo"), ("^1.0.0", "2.0.0-rc1"), ("1 - 2", "2.0.0-pre"), ("1 - 2", "1.0.0-pre"),
        ("1.0 - 2", "1.0.0-pre"), ("1.1.x", "1.0.0-a"), ("1.1.x", "1.1.0-a"), ("1.1.x", "1.2.0-a"), ("1.x", "1.0.0-a"),
        ("1.x", "1.1.0-a"), ("1.x", "1.2.0-a"), (">=1.0.0 <1.1.0", "1.1.0"), (">=1.0.0 <1.1.0", "1.1.0-pre"),
        (">=1.0.0 <1.1.0-pre", "1.1.0-pre"),
    ])
    func excludesNodeSemverExamples(range: String, version: String) throws {
        #expect(try !satisfies(range, version))
    }

    // node-semver's desugaring (test/fixtures/range-parse.js).
    @Test(arguments: [
        ("^1.2.3", ">=1.2.3 <2.0.0-0"), ("^0.2.3", ">=0.2.3 <0.3.0-0"), ("^0.0.3", ">=0.0.3 <0.0.4-0"),
        ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0-0"), ("^0.0.3-beta", ">=0.0.3-beta <0.0.4-0"),
        ("^1.2.x", ">=1.2.0 <2.0.0-0"), ("^0.0.x", ">=0.0.0 <0.1.0-0"), ("^0.0", ">=0.0.0 <0.1.0-0"),
        ("^1.x", ">=1.0.0 <2.0.0-0"), ("^0.x", ">=0.0.0 <1.0.0-0"), ("^0.2", ">=0.2.0 <0.3.0-0"),
        ("~1.2.3", ">=1.2.3 <1.3.0-0"), ("~1.2", ">=1.2.0 <1.3.0-0"), ("~1", ">=1.0.0 <2.0.0-0"),
        ("~0.2.3", ">=0.2.3 <0.3.0-0"), ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0-0"),
        ("1.x", ">=1.0.0 <2.0.0-0"), ("1.2.x", ">=1.2.0 <1.3.0-0"), ("1.2", ">=1.2.0 <1.3.0-0"), ("*", "*"),
        ("1.2.3 - 2.3.4", ">=1.2.3 <=2.3.4"), ("1.2 - 2.3.4", ">=1.2.0 <=2.3.4"), ("1.2.3 - 2.3", ">=1.2.3 <2.4.0-0"),
        ("1.2.3 - 2", ">=1.2.3 <3.0.0-0"), (">1", ">=2.0.0"), (">1.2", ">=1.3.0"), ("<1.2", "<1.2.0-0"),
        ("<=1.2", "<1.3.0-0"), (">*", "<0.0.0-0"), ("1.2.3", "1.2.3"), ("=1.2.3", "1.2.3"),
        ("1.x || >=2.5.0 || 5.0.0 - 7.2.3", ">=1.0.0 <2.0.0-0 || >=2.5.0 || >=5.0.0 <=7.2.3"),
    ])
    func rewritesToPrimitiveComparatorsAsNodeSemverDoes(range: String, normalized: String) throws {
        #expect(try VersionRange(parsing: range).normalized == normalized)
    }

    @Test func prereleaseSatisfiesOnlyWhenAComparatorSharesItsCoreVersion() throws {
        #expect(try satisfies(">1.2.3-alpha.3", "1.2.3-alpha.7"))
        #expect(try !satisfies(">1.2.3-alpha.3", "3.4.5-alpha.9"))
        #expect(try satisfies(">1.2.3-alpha.3", "3.4.5"))
    }

    @Test func equalityComparesMeaningAndDescriptionKeepsTheText() throws {
        let caret = try VersionRange(parsing: " ^1.2.3 ")
        #expect(caret == (try VersionRange(parsing: ">=1.2.3 <2.0.0-0")))
        #expect(caret.description == "^1.2.3")
        #expect(caret != (try VersionRange(parsing: "~1.2.3")))
    }

    @Test func anyMatchesEveryRelease() throws {
        #expect(VersionRange.any.contains(try SemanticVersion(parsing: "0.0.0")))
        #expect(VersionRange.any.contains(try SemanticVersion(parsing: "99.1.2")))
        #expect(VersionRange.any == (try VersionRange(parsing: "*")))
    }

    @Test(arguments: [
        ("", "it is empty (use * for any version)"),
        ("1.x ||", "an alternative around || is empty"),
        ("^1.2.z", "'z' in '1.2.z' is not a number or x"),
        ("1.2.3.4", "has more than three parts"),
        ("1.x.3", "has a number after a wildcard"),
        (">=", "an operator is not followed by a version"),
        ("1.2-beta", "'1.2-beta' is not a version"),
        ("1.0.0 - ", "a hyphen range needs one version on each side of ' - '"),
        ("01.2.3", "'01' in '01.2.3' is not a number or x"),
    ])
    func refusesMalformedRanges(text: String, fragment: String) {
        expectFailure(.invalidVersion, fragment) { () throws(MetanodeError) in try VersionRange(parsing: text) }
    }

    @Test func errorListsTheAcceptedForms() {
        expectFailure(.invalidVersion, "(expected forms like 1.2.3, ^1.2.3, ~1.2, 1.x") { () throws(MetanodeError) in
            try VersionRange(parsing: "latest")
        }
    }

    @Test func boundsAtTheLargestVersionDoNotOverflow() throws {
        #expect(try satisfies("^18446744073709551615.0.0", "18446744073709551615.5.5"))
        #expect(try !satisfies(">18446744073709551615", "18446744073709551615.0.0"))
    }
}

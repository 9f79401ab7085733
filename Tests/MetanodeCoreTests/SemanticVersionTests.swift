import MetanodeCore
import Testing

@Suite struct SemanticVersionTests {
    private func v(_ text: String) throws(MetanodeError) -> SemanticVersion { try SemanticVersion(parsing: text) }

    @Test func parsesAllParts() throws {
        let version = try v("1.22.333-rc.1.x-y+build.007")
        #expect(version.major == 1)
        #expect(version.minor == 22)
        #expect(version.patch == 333)
        #expect(version.prerelease == ["rc", "1", "x-y"])
        #expect(version.build == ["build", "007"])
        #expect(version.description == "1.22.333-rc.1.x-y+build.007")
    }

    @Test func acceptsTheLargest64BitNumbers() throws {
        #expect(try v("18446744073709551615.0.0").major == .max)
    }

    @Test func precedenceFollowsSemverOrgSection11() throws {
        let ordered = [
            "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
            "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1",
        ]
        let versions = try ordered.map { (text) throws(MetanodeError) in try v(text) }
        for (a, b) in zip(versions, versions.dropFirst()) {
            #expect(a < b, "\(a) < \(b)")
            #expect(!(b < a), "not \(b) < \(a)")
        }
        #expect(versions.shuffled().sorted() == versions)
    }

    @Test func numericIdentifiersCompareByValueNotText() throws {
        #expect(try v("1.0.0-2") < v("1.0.0-10"))
        #expect(try v("1.0.0-99999999999999999999999") < v("1.0.0-100000000000000000000000"))
        #expect(try v("1.0.0-9") < v("1.0.0-a"))  // numeric before alphanumeric
        #expect(try v("1.0.0-B") < v("1.0.0-a"))  // ASCII order
    }

    @Test func buildMetadataDoesNotAffectPrecedenceOrEquality() throws {
        let a = try v("1.0.0+a")
        let b = try v("1.0.0+b")
        #expect(!(a < b) && !(b < a))
        #expect(a == b)
        #expect(Set([a, b]).count == 1)
        #expect(a.build != b.build)
    }

    @Test(arguments: ["1.0", "1", "1.0.0.0", "", "v1.0.0", "1.0.x", "a.b.c", "1..0", " 1.0.0"])
    func refusesTextThatIsNotMajorMinorPatch(text: String) {
        expectFailure(.invalidVersion, "'\(text)' is not a semantic version") { () throws(MetanodeError) in try v(text)
        }
    }

    @Test func messageNamesTheExpectedForm() {
        expectFailure(.invalidVersion, "'1.0' is not a semantic version (expected MAJOR.MINOR.PATCH like 1.0.0)") {
            () throws(MetanodeError) in try v("1.0")
        }
    }

    @Test func refusesLeadingZeros() {
        expectFailure(.invalidVersion, "'01' has a leading zero") { () throws(MetanodeError) in try v("01.0.0") }
        expectFailure(.invalidVersion, "pre-release identifier '01' has a leading zero") { () throws(MetanodeError) in
            try v("1.0.0-01")
        }
    }

    @Test func refusesEmptyOrInvalidIdentifiers() {
        expectFailure(.invalidVersion, "pre-release must be") { () throws(MetanodeError) in try v("1.0.0-") }
        expectFailure(.invalidVersion, "pre-release must be") { () throws(MetanodeError) in try v("1.0.0-a..b") }
        expectFailure(.invalidVersion, "build metadata must be") { () throws(MetanodeError) in try v("1.0.0+a_b") }
    }

    @Test func refusesNumbersThatOverflow() {
        expectFailure(.invalidVersion, "'18446744073709551616' is too large") { () throws(MetanodeError) in
            try v("18446744073709551616.0.0")
        }
    }
}

@Suite struct ABIVersionTests {
    @Test func parsesMajorDotMinor() throws {
        #expect(try ABIVersion(parsing: "1.0") == ABIVersion(major: 1, minor: 0))
        #expect(try ABIVersion(parsing: "2.13").description == "2.13")
    }

    @Test(arguments: ["1", "1.0.0", "01.0", "1.x", "", "65536.0"])
    func refusesOtherForms(text: String) {
        expectFailure(.invalidVersion, "is not an ABI version (expected MAJOR.MINOR like 1.0)") {
            () throws(MetanodeError) in try ABIVersion(parsing: text)
        }
    }

    @Test func ordersByMajorThenMinor() {
        #expect(ABIVersion(major: 1, minor: 9) < ABIVersion(major: 2, minor: 0))
        #expect(ABIVersion(major: 1, minor: 0) < ABIVersion(major: 1, minor: 1))
    }

    @Test func kernelLoadsSameMajorWithMinorNotNewer() {
        let kernel = ABIVersion(major: 1, minor: 2)
        #expect(kernel.canLoad(ABIVersion(major: 1, minor: 0)))
        #expect(kernel.canLoad(ABIVersion(major: 1, minor: 2)))
        #expect(!kernel.canLoad(ABIVersion(major: 1, minor: 3)))
        #expect(!kernel.canLoad(ABIVersion(major: 2, minor: 0)))
    }
}

import MetanodeCore
import Testing

@Suite struct DependencySolverTests {
    private func node(_ name: String, _ version: String = "1.0.0", _ deps: [String: String] = [:]) throws
        -> DependencySolver.Node
    {
        DependencySolver.Node(
            name: name, version: try SemanticVersion(parsing: version),
            dependencies: try deps.mapValues { try VersionRange(parsing: $0) })
    }

    @Test func startsDependenciesFirstAndBreaksTiesByName() throws {
        let plan = DependencySolver.plan([
            try node("web", "1.0.0", ["db": "^1.0.0", "auth": "*"]),
            try node("db"), try node("auth", "2.0.0", ["db": "1.x"]), try node("zeta"), try node("alpha"),
        ])
        #expect(plan.failures.isEmpty)
        #expect(plan.startOrder == ["alpha", "db", "auth", "web", "zeta"])
    }

    @Test func missingDependencyFails() throws {
        let plan = DependencySolver.plan([try node("b", "1.0.0", ["a": "^2.0.0"])])
        #expect(plan.startOrder == [])
        #expect(plan.failures["b"]?.code == .dependency)
        #expect(
            plan.failures["b"]?.message == "plugin 'b' 1.0.0 needs 'a' ^2.0.0, which is not installed or not enabled")
    }

    @Test func incompatibleVersionFails() throws {
        let plan = DependencySolver.plan([try node("a", "1.4.0"), try node("b", "1.0.0", ["a": "^2.0.0"])])
        #expect(plan.startOrder == ["a"])
        #expect(plan.failures["b"]?.message == "plugin 'b' 1.0.0 needs 'a' ^2.0.0, but 'a' is 1.4.0")
    }

    @Test func everyMemberOfACycleFailsNamingTheCycle() throws {
        let plan = DependencySolver.plan([
            try node("a", "1.0.0", ["b": "*"]), try node("b", "1.0.0", ["c": "*"]), try node("c", "1.0.0", ["a": "*"]),
            try node("d"),
        ])
        #expect(plan.startOrder == ["d"])
        #expect(plan.failures["a"]?.message == "dependency cycle: a -> b -> c -> a")
        #expect(plan.failures["b"]?.message == "dependency cycle: b -> c -> a -> b")
        #expect(plan.failures["c"]?.message == "dependency cycle: c -> a -> b -> c")
        #expect(plan.failures["d"] == nil)
    }

    @Test func selfDependencyIsACycle() throws {
        let plan = DependencySolver.plan([try node("a", "1.0.0", ["a": "*"])])
        #expect(plan.failures["a"]?.message == "dependency cycle: a -> a")
    }

    @Test func failureSpreadsToEveryDependent() throws {
        let plan = DependencySolver.plan([
            try node("b", "1.0.0", ["a": "^2.0.0"]), try node("c", "1.0.0", ["b": "*"]),
            try node("d", "1.0.0", ["c": "*"]),
            try node("e"),
        ])
        #expect(plan.startOrder == ["e"])
        #expect(
            plan.failures["c"]?.message
                == "plugin 'c' needs 'b', which cannot start: plugin 'b' 1.0.0 needs 'a' ^2.0.0, which is not installed or not enabled"
        )
        #expect(
            plan.failures["d"]?.message.hasPrefix("plugin 'd' needs 'c', which cannot start: plugin 'c' needs 'b'")
                == true)
    }

    @Test func dependentsOfACycleFailButAreNotPartOfIt() throws {
        let plan = DependencySolver.plan([
            try node("a", "1.0.0", ["b": "*"]), try node("b", "1.0.0", ["a": "*"]), try node("x", "1.0.0", ["a": "*"]),
        ])
        #expect(
            plan.failures["x"]?.message == "plugin 'x' needs 'a', which cannot start: dependency cycle: a -> b -> a")
    }

    @Test func everyDirectProblemIsReported() throws {
        let plan = DependencySolver.plan([try node("a", "1.0.0"), try node("z", "1.0.0", ["a": "2", "b": "1"])])
        #expect(
            plan.failures["z"]?.message
                == "plugin 'z' 1.0.0 needs 'a' 2, but 'a' is 1.0.0; plugin 'z' 1.0.0 needs 'b' 1, which is not installed or not enabled"
        )
    }

    @Test func planIsTheSameForAnyInputOrder() throws {
        let nodes = [
            try node("a"), try node("b", "1.0.0", ["a": "*"]), try node("c", "1.0.0", ["a": "*"]),
            try node("d", "1.0.0", ["b": "*", "c": "*"]), try node("e", "1.0.0", ["x": "*"]), try node("f"),
            try node("g", "1.0.0", ["h": "*"]), try node("h", "1.0.0", ["g": "*"]),
        ]
        let reference = DependencySolver.plan(nodes)
        #expect(reference.startOrder == ["a", "b", "c", "d", "f"])
        for _ in 0..<20 {
            let plan = DependencySolver.plan(nodes.shuffled())
            #expect(plan.startOrder == reference.startOrder)
            #expect(plan.failures.mapValues(\.message) == reference.failures.mapValues(\.message))
        }
    }

    @Test func checkThrowsTheFirstFailureByName() throws {
        let nodes = [try node("b", "1.0.0", ["zz": "*"]), try node("a", "1.0.0", ["yy": "*"])]
        expectFailure(.dependency, "plugin 'a' 1.0.0 needs 'yy' *") { () throws(MetanodeError) in
            try DependencySolver.check(nodes)
        }
        try DependencySolver.check([try node("a")])
    }

    private func user(_ name: String, optional: [String: String], _ deps: [String: String] = [:]) throws
        -> DependencySolver.Node
    {
        var user = try node(name, "1.0.0", deps)
        user.optionalDependencies = try optional.mapValues { try VersionRange(parsing: $0) }
        return user
    }

    @Test func anOptionalDependencyThatIsThereStartsFirst() throws {
        let plan = DependencySolver.plan([try user("alpha", optional: ["ledger": "^0.1.0"]), try node("ledger", "0.1.0")])
        #expect(plan.failures.isEmpty && plan.notes.isEmpty)
        #expect(plan.startOrder == ["ledger", "alpha"], "by name alone alpha would start first")
        #expect(plan.optionalStartsAfter == ["alpha": ["ledger"]])
    }

    @Test func anOptionalDependencyThatIsAbsentOrFailingIsNoReasonNotToStart() throws {
        let absent = DependencySolver.plan([try user("alpha", optional: ["ledger": "*"])])
        #expect(absent.startOrder == ["alpha"] && absent.failures.isEmpty && absent.optionalStartsAfter.isEmpty)
        let failing = DependencySolver.plan([
            try user("alpha", optional: ["ledger": "*"]), try node("ledger", "1.0.0", ["gone": "*"]),
        ])
        #expect(failing.startOrder == ["alpha"] && failing.failures.keys.sorted() == ["ledger"])
        #expect(failing.optionalStartsAfter.isEmpty)
    }

    @Test func anOptionalDependencyOutOfRangeIsNotWaitedForAndSaysSo() throws {
        let plan = DependencySolver.plan([try user("zeta", optional: ["ledger": "^0.1.0"]), try node("ledger", "2.0.0")])
        #expect(plan.failures.isEmpty && plan.startOrder == ["ledger", "zeta"] && plan.optionalStartsAfter.isEmpty)
        #expect(plan.notes == ["plugin 'zeta' 1.0.0 can use 'ledger' ^0.1.0, but 'ledger' is 2.0.0; it starts without it"])
    }

    @Test func aCycleThroughAnOptionalDependencyFailsLikeAnyCycle() throws {
        let plan = DependencySolver.plan([try user("a", optional: ["b": "*"]), try node("b", "1.0.0", ["a": "*"])])
        #expect(plan.startOrder.isEmpty)
        #expect(plan.failures["a"]?.message == "dependency cycle: a -> b -> a")
    }

    @Test func nodeCanBeMadeFromAManifest() throws {
        let manifest = PluginManifest(
            name: "a", version: SemanticVersion(1, 2, 3), library: LibraryEntry(file: "a.so"),
            dependencies: ["b": try VersionRange(parsing: "^1.0.0")])
        let n = DependencySolver.Node(manifest)
        #expect(n.name == "a" && n.version == SemanticVersion(1, 2, 3) && n.dependencies.keys.sorted() == ["b"])
    }
}

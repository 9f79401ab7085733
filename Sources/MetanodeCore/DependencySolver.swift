/// Decides which installed plugins can start and in which order. Each plugin has exactly one installed version, so
/// there is nothing to choose, only to check: every dependency present, in range, not circular, and able to start.
public enum DependencySolver {
    public struct Node: Sendable, Hashable {
        public var name: String
        public var version: SemanticVersion
        public var dependencies: [String: VersionRange]
        /// Started first when present and in range; never a reason not to start (`PluginManifest.optionalDependencies`).
        public var optionalDependencies: [String: VersionRange]

        public init(name: String, version: SemanticVersion, dependencies: [String: VersionRange] = [:],
                    optionalDependencies: [String: VersionRange] = [:]) {
            self.name = name
            self.version = version
            self.dependencies = dependencies
            self.optionalDependencies = optionalDependencies
        }

        public init(_ manifest: PluginManifest) {
            self.init(name: manifest.name, version: manifest.version, dependencies: manifest.dependencies,
                      optionalDependencies: manifest.optionalDependencies)
        }
    }

    public struct Plan: Sendable {
        /// Plugins that can start, each after all of its dependencies; ties broken by name, so equal input gives an
        /// equal plan. Stop in reverse.
        public var startOrder: [String]
        /// Plugins that cannot start, with why (code `.dependency`).
        public var failures: [String: MetanodeError]
        /// Each plugin's optional dependencies that start before it (present, in range, able to start).
        public var optionalStartsAfter: [String: [String]] = [:]
        /// Optional dependencies that are installed but out of range, so are not waited for: the plugin starts
        /// without them ("plugin 'docklock' 0.1.0 can use 'bpi' ^0.1.0, but 'bpi' is 2.0.0; it starts without it").
        public var notes: [String] = []
    }

    /// Precondition: names are unique (one installed version per plugin).
    public static func plan(_ nodes: [Node]) -> Plan {
        let byName = Dictionary(nodes.map { ($0.name, $0) }) { _, _ in
            preconditionFailure("DependencySolver.plan: a plugin name appears twice")
        }
        let names = byName.keys.sorted()
        var failures: [String: MetanodeError] = [:]

        // 1. Direct problems: a dependency absent or out of range.
        for name in names {
            let node = byName[name]!
            var problems: [String] = []
            for (dependency, range) in node.dependencies.sorted(by: { $0.key < $1.key }) {
                let needs = "plugin '\(name)' \(node.version) needs '\(dependency)' \(range)"
                if let installed = byName[dependency] {
                    if !range.contains(installed.version) {
                        problems.append("\(needs), but '\(dependency)' is \(installed.version)")
                    }
                } else {
                    problems.append("\(needs), which is not installed or not enabled")
                }
            }
            if !problems.isEmpty { failures[name] = MetanodeError(.dependency, problems.joined(separator: "; ")) }
        }

        // Optional dependencies that are installed and in range order the start like required ones.
        var notes: [String] = []
        var optionalEdges: [String: [String]] = [:]
        for name in names {
            let node = byName[name]!
            for (dependency, range) in node.optionalDependencies.sorted(by: { $0.key < $1.key }) {
                guard let installed = byName[dependency] else { continue }
                guard range.contains(installed.version) else {
                    notes.append("plugin '\(name)' \(node.version) can use '\(dependency)' \(range), but "
                        + "'\(dependency)' is \(installed.version); it starts without it")
                    continue
                }
                optionalEdges[name, default: []].append(dependency)
            }
        }

        // 2. Cycles: every member of a strongly connected component with a cycle fails, naming a cycle through itself.
        func required(_ name: String) -> [String] {
            byName[name]!.dependencies.keys.filter { byName[$0] != nil }.sorted()
        }
        func edges(_ name: String) -> [String] { Array(Set(required(name) + (optionalEdges[name] ?? []))).sorted() }
        for component in stronglyConnectedComponents(names, edges: edges) {
            let members = Set(component)
            guard component.count > 1 || edges(component[0]).contains(component[0]) else { continue }
            for member in component {
                let cycle = shortestCycle(from: member, within: members, edges: edges)
                let message = "dependency cycle: " + cycle.joined(separator: " -> ")
                if let earlier = failures[member] {
                    failures[member] = MetanodeError(.dependency, earlier.message + "; " + message)
                } else {
                    failures[member] = MetanodeError(.dependency, message)
                }
            }
        }

        // 3. Failure spreads to dependents. What is left after step 2 is acyclic, so this recursion ends.
        func spread(_ name: String) -> MetanodeError? {
            if let failure = failures[name] { return failure }
            for dependency in required(name) {
                if let cause = spread(dependency) {
                    let failure = MetanodeError(
                        .dependency, "plugin '\(name)' needs '\(dependency)', which cannot start: \(cause.message)")
                    failures[name] = failure
                    return failure
                }
            }
            return nil
        }
        for name in names { _ = spread(name) }

        // 4. Kahn's algorithm over the rest, always taking the smallest ready name.
        let healthy = names.filter { failures[$0] == nil }
        let able = Set(healthy)
        var waitingOn = Dictionary(uniqueKeysWithValues: healthy.map { ($0, Set(edges($0)).intersection(able)) })
        var order: [String] = []
        while let next = waitingOn.filter({ $0.value.isEmpty }).keys.min() {
            order.append(next)
            waitingOn[next] = nil
            for key in waitingOn.keys { waitingOn[key]!.remove(next) }
        }
        precondition(waitingOn.isEmpty, "DependencySolver: a cycle survived cycle detection")
        var optionalStartsAfter: [String: [String]] = [:]
        for name in healthy {
            let first = (optionalEdges[name] ?? []).filter(able.contains)
            if !first.isEmpty { optionalStartsAfter[name] = first }
        }
        return Plan(startOrder: order, failures: failures, optionalStartsAfter: optionalStartsAfter, notes: notes)
    }

    /// Throws the failure of the first failing plugin by name, for the command line.
    public static func check(_ nodes: [Node]) throws(MetanodeError) {
        let failures = plan(nodes).failures
        if let first = failures.keys.min() { throw failures[first]! }
    }

    // MARK: Graph helpers

    /// Tarjan's algorithm. Components come out in a deterministic order because the names and edges are sorted.
    private static func stronglyConnectedComponents(_ names: [String], edges: (String) -> [String]) -> [[String]] {
        var index: [String: Int] = [:]
        var lowLink: [String: Int] = [:]
        var stack: [String] = []
        var onStack: Set<String> = []
        var components: [[String]] = []

        func visit(_ v: String) {
            index[v] = index.count
            lowLink[v] = index[v]
            stack.append(v)
            onStack.insert(v)
            for w in edges(v) {
                if index[w] == nil {
                    visit(w)
                    lowLink[v] = min(lowLink[v]!, lowLink[w]!)
                } else if onStack.contains(w) {
                    lowLink[v] = min(lowLink[v]!, index[w]!)
                }
            }
            if lowLink[v] == index[v] {
                var component: [String] = []
                while let w = stack.popLast() {
                    onStack.remove(w)
                    component.append(w)
                    if w == v { break }
                }
                components.append(component.sorted())
            }
        }
        for name in names where index[name] == nil { visit(name) }
        return components
    }

    /// Breadth-first from `start` back to itself inside its component: ["a", "b", "a"].
    private static func shortestCycle(from start: String, within members: Set<String>, edges: (String) -> [String])
        -> [String]
    {
        var parent: [String: String] = [:]
        var queue = [start]
        var head = 0
        while head < queue.count {
            let v = queue[head]
            head += 1
            for w in edges(v) where members.contains(w) {
                if w == start {
                    var path = [start]
                    var at = v
                    while at != start {
                        path.append(at)
                        at = parent[at]!
                    }
                    return [start] + path.dropFirst().reversed() + [start]
                }
                if parent[w] == nil {
                    parent[w] = v
                    queue.append(w)
                }
            }
        }
        preconditionFailure("DependencySolver: \(start) is in a cyclic component but on no cycle")
    }
}

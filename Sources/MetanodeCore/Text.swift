/// Small helpers for error messages, so every message quotes user input the same way and stays bounded in size.
enum Text {
    /// Longest piece of user input repeated in a message; longer input is cut so logs stay readable.
    static let quoteCharsMax = 80

    /// `'text'`, cut to `quoteCharsMax` characters, control characters escaped.
    static func quote(_ text: some StringProtocol) -> String {
        "'\(clip(text))'"
    }

    static func clip(_ text: some StringProtocol) -> String {
        var out = ""
        for (n, scalar) in text.unicodeScalars.enumerated() {
            if n == quoteCharsMax { return out + "…" }
            out += scalar.value < 0x20 || scalar.value == 0x7f ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return out
    }

    /// A byte as a character if printable ASCII, else as hex: `'g'` or `0xff`.
    static func describe(byte: UInt8) -> String {
        (0x21...0x7e).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "0x" + Hex.encode([byte])
    }

    /// "1 item" / "2 items".
    static func count(_ n: Int, _ singular: String, _ plural: String? = nil) -> String {
        "\(n) \(n == 1 ? singular : plural ?? singular + "s")"
    }

    /// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
    static func suggestion(for word: String, in candidates: some Sequence<String>) -> String? {
        let target = Array(word.lowercased().unicodeScalars)
        var best: (String, Int)?
        for candidate in candidates {
            let d = distance(target, Array(candidate.lowercased().unicodeScalars))
            if d <= max(1, target.count / 3), d < best?.1 ?? .max { best = (candidate, d) }
        }
        return best?.0
    }

    /// " (did you mean 'x'?)" or "".
    static func didYouMean(_ word: String, _ candidates: some Sequence<String>) -> String {
        suggestion(for: word, in: candidates).map { " (did you mean '\($0)'?)" } ?? ""
    }

    /// Edit distance counting a swap of two adjacent characters as one edit ("prot" -> "port"), the commonest typo.
    private static func distance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}

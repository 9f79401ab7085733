/// BPCI's four tokens. Amounts are integers of each token's smallest unit; nothing here uses floating point.
///
/// | Token | Role | Decimals | Supply |
/// |---|---|---|---|
/// | GEN | governance | 6 | fixed: 100,000 GEN, all distributed in genesis |
/// | NEX | mining reward | 9 | minted only by the mining authority |
/// | FLX | fees and billing | 9 | genesis, plus minting by module authority; base fees are burned |
/// | AUR | gold-backed | 9 | minted and burned only by the gold-reserve authority |
public enum Denomination: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case gen = 1, nex = 2, flx = 3, aur = 4

    public var decimals: Int {
        switch self {
        case .gen: 6
        case .nex, .flx, .aur: 9
        }
    }

    /// GEN's whole supply, in its smallest unit.
    public static let genSupply: UInt64 = 100_000 * 1_000_000

    public var symbol: String {
        switch self {
        case .gen: "GEN"
        case .nex: "NEX"
        case .flx: "FLX"
        case .aur: "AUR"
        }
    }

    public var description: String { symbol }

    public init?(symbol: String) {
        guard let found = Self.allCases.first(where: { $0.symbol == symbol.uppercased() }) else { return nil }
        self = found
    }

    /// "12.5 FLX" → 12_500_000_000; nil for a malformed amount, more decimals than the token has, or overflow.
    public func parse(_ text: String) -> UInt64? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCII),
              whole.allSatisfy(\.isNumber) else { return nil }
        let fraction = parts.count == 2 ? parts[1] : ""
        guard fraction.count <= decimals, fraction.allSatisfy({ $0.isASCII && $0.isNumber }),
              parts.count == 1 || !fraction.isEmpty else { return nil }
        guard let wholeValue = UInt64(whole) else { return nil }
        let padded = fraction + String(repeating: "0", count: decimals - fraction.count)
        let fractionValue = padded.isEmpty ? 0 : UInt64(padded)!
        let (scaled, overflow) = wholeValue.multipliedReportingOverflow(by: Self.unit(decimals))
        guard !overflow else { return nil }
        let (sum, overflow2) = scaled.addingReportingOverflow(fractionValue)
        return overflow2 ? nil : sum
    }

    /// 12_500_000_000 → "12.5".
    public func format(_ amount: UInt64) -> String {
        let unit = Self.unit(decimals)
        let whole = amount / unit, fraction = amount % unit
        guard fraction > 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: decimals - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    static func unit(_ decimals: Int) -> UInt64 {
        var unit: UInt64 = 1
        for _ in 0..<decimals { unit *= 10 }
        return unit
    }
}

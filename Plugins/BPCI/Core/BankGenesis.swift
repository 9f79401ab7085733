import Foundation
import MetanodeWire

/// BPCI's section of the genesis file (`modules.bpci`): starting balances and the fee market. Amounts are decimal
/// strings in whole tokens ("100000", "0.000001"), parsed exactly; never floating point.
///
///     {"accounts": [{"address": "mn1…", "balances": {"GEN": "100000", "FLX": "1000000"}}],
///      "fees": {"initialBaseFee": "0.000001", "minimumBaseFee": "0.000000001", "changeDenominator": 8,
///               "targetTransactions": 2500}}
///
/// GEN must add up to exactly 100,000. `targetTransactions` is half the block's transaction limit (`chain genesis`
/// writes it from the chain's parameters).
public struct BankGenesis: Sendable {
    public static let accountsMax = 100_000
    public static let defaultFees = FeeMarket.Parameters(targetTransactions: 2_500, changeDenominator: 8,
                                                         minimumBaseFee: 1, initialBaseFee: 1_000)

    public var balances: [(Address, Denomination, UInt64)]
    public var fees: FeeMarket.Parameters

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// nil for an empty section ("{}"): the chain has no economy.
    public static func parse(_ json: [UInt8]) throws(ParseError) -> BankGenesis? {
        func fail(_ message: String) -> ParseError { ParseError(description: "genesis modules.bpci: \(message)") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] else {
            throw fail("is not a JSON object")
        }
        let unknown = Set(object.keys).subtracting(["accounts", "fees"])
        guard unknown.isEmpty else { throw fail("unknown field(s) \(unknown.sorted())") }
        if object.isEmpty { return nil }
        guard let accounts = object["accounts"] as? [Any] else {
            throw fail("needs \"accounts\": a list of {\"address\", \"balances\"} (all 100,000 GEN among them)")
        }
        guard accounts.count <= accountsMax else { throw fail("more than \(accountsMax) accounts") }
        var balances: [(Address, Denomination, UInt64)] = []
        for (index, item) in accounts.enumerated() {
            guard let account = item as? [String: Any], let text = account["address"] as? String else {
                throw fail("accounts[\(index)] needs an \"address\"")
            }
            let address: Address
            do throws(WireError) { address = try Address.parse(text) } catch {
                throw fail("accounts[\(index)]: \(error.message)")
            }
            guard let amounts = account["balances"] as? [String: Any] else {
                throw fail("accounts[\(index)] needs \"balances\", e.g. {\"FLX\": \"1000\"}")
            }
            for symbol in amounts.keys.sorted() {
                guard let denomination = Denomination(symbol: symbol) else {
                    throw fail("accounts[\(index)]: '\(symbol)' is not a token (GEN, NEX, FLX, AUR)")
                }
                guard let amountText = amounts[symbol] as? String, let amount = denomination.parse(amountText),
                      amount > 0 else {
                    throw fail("accounts[\(index)].\(symbol) must be a positive amount as a string, e.g. \"12.5\"")
                }
                balances.append((address, denomination, amount))
            }
        }
        var fees = defaultFees
        if let section = object["fees"] {
            guard let section = section as? [String: Any] else { throw fail("fees must be an object") }
            func flx(_ field: String, _ fallback: UInt64) throws(ParseError) -> UInt64 {
                guard let value = section[field] else { return fallback }
                guard let text = value as? String, let units = Denomination.flx.parse(text) else {
                    throw fail("fees.\(field) must be an FLX amount as a string, e.g. \"0.000001\"")
                }
                return units
            }
            func count(_ field: String, _ fallback: UInt64) throws(ParseError) -> UInt64 {
                guard let value = section[field] else { return fallback }
                guard let number = value as? Int, number >= 1 else { throw fail("fees.\(field) must be an integer ≥ 1") }
                return UInt64(number)
            }
            let unknownFees = Set(section.keys).subtracting(["initialBaseFee", "minimumBaseFee", "changeDenominator",
                                                              "targetTransactions"])
            guard unknownFees.isEmpty else { throw fail("unknown fee field(s) \(unknownFees.sorted())") }
            let minimum = try flx("minimumBaseFee", fees.minimumBaseFee)
            let initial = try flx("initialBaseFee", fees.initialBaseFee)
            guard initial >= minimum else { throw fail("fees.initialBaseFee is below fees.minimumBaseFee") }
            fees = FeeMarket.Parameters(targetTransactions: try count("targetTransactions", fees.targetTransactions),
                                        changeDenominator: try count("changeDenominator", fees.changeDenominator),
                                        minimumBaseFee: minimum, initialBaseFee: initial)
        }
        return BankGenesis(balances: balances, fees: fees)
    }
}

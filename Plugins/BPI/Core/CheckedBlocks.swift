/// What checking each block found at the current height, so that a block is checked (and executed) once: a node
/// checks a proposal when it arrives and commits it with the effects found then, and a proposer's own block comes
/// back to it for checking right after it was built.
///
/// Entries are found by header hash, but the header covers transaction ids, not signatures. So an entry counts only
/// for a block equal to its own in every byte: another block under the same header (a signature swapped for one that
/// does not verify) is checked on its own, neither inheriting the honest block's success nor leaving its failure
/// where the honest block would find it and stall the height. Nor is a refusal by this node's clock kept (a timestamp
/// too far ahead): the block may pass once the clock has caught up, and a finalized block must still be committed.
public struct CheckedBlocks: Sendable {
    /// Entries kept before all are dropped: a height sees a proposal per round, so this is never reached honestly,
    /// and a Byzantine proposer's flood of distinct blocks costs it checks, not this node's memory.
    public static let entriesMax = 64

    private var entries: [[UInt8]: (block: Block, result: Result<BlockRules.Effects, BlockProblem>)] = [:]

    public init() {}

    public var count: Int { entries.count }

    /// The result recorded for exactly this block, if any.
    public func result(for block: Block) -> Result<BlockRules.Effects, BlockProblem>? {
        guard let known = entries[block.hash], known.block == block else { return nil }
        return known.result
    }

    /// Records `block`'s result, replacing whatever was recorded under its header.
    public mutating func record(_ block: Block, _ result: Result<BlockRules.Effects, BlockProblem>) {
        let hash = block.hash
        if case .failure(let problem) = result, problem.dependsOnClock {
            entries[hash] = nil
            return
        }
        if entries[hash] == nil, entries.count >= Self.entriesMax { entries.removeAll() }
        entries[hash] = (block, result)
    }

    /// A block was committed: nothing checked at the old height applies any more.
    public mutating func removeAll() { entries.removeAll() }
}

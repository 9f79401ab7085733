import DockLockCore
import DockLockRuntime
import Foundation
import MetanodePluginKit
import MetanodeWire

/// `POST /verify`: runs a --deterministic receipt's execution again on this node and compares what the receipt
/// recorded. Body: {"receipt": <signed receipt JSON>, "env": [...], "stdin": base64} — env and stdin may be left out
/// for this node's own receipts (it kept them); the receipt only holds their hashes.
struct VerifyRequest: Decodable {
    var receipt: SignedReceipt
    var env: [String]?
    var stdin: String?
}

extension DockLock {
    /// The checks before anything runs: a valid signature, a deterministic profile, inputs matching their hashes.
    func replayPlan(_ request: VerifyRequest) throws -> RunRequest {
        let receipt = request.receipt.receipt
        try request.receipt.verify(publicKey: receipt.node)
        guard receipt.profile.deterministic else {
            throw DockLockError(.invalid, "receipt \(receipt.sequence) is not of a --deterministic run; only those can be "
                + "repeated exactly")
        }
        var env = request.env, stdin = request.stdin
        if env == nil || stdin == nil, receipt.node == nodeKey,
           let kept = try ReceiptStore.replay(receipt.sequence, kv: context.kv)
        {
            env = env ?? kept.env
            stdin = stdin ?? kept.stdin
        }
        guard let env else {
            throw DockLockError(.invalid, "the receipt holds only the environment's hash; give the run's environment "
                + "(\"env\") to verify another node's receipt")
        }
        guard ExecutionReceipt.environmentHash(env) == receipt.environmentHash else {
            throw DockLockError(.integrity, "the environment given does not match the receipt's environment hash")
        }
        let input = stdin.flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        guard StreamDigest(of: input) == receipt.stdin else {
            throw DockLockError(.integrity, "the stdin given does not match the receipt's stdin hash and size")
        }
        return RunRequest(image: receipt.imageDigest, command: receipt.command, env: env,
                          workdir: receipt.workingDirectory, stdin: Data(input).base64EncodedString(),
                          timeoutMs: receipt.profile.timeoutMs == 0 ? nil : receipt.profile.timeoutMs, deterministic: true)
    }

    /// Which recorded results the new run did not reproduce (empty: all of them).
    static func differences(_ recorded: ExecutionReceipt, _ again: ExecutionReceipt) -> [String] {
        var differ: [String] = []
        if recorded.profile != again.profile { differ.append("profile") }
        if recorded.outcome != again.outcome { differ.append("outcome") }
        if recorded.stdout != again.stdout { differ.append("stdout") }
        if recorded.stderr != again.stderr { differ.append("stderr") }
        if recorded.oomKilled != again.oomKilled { differ.append("oomKilled") }
        if recorded.timedOut != again.timedOut { differ.append("timedOut") }
        return differ
    }

    func registerVerifyRoute() throws {
        try context.http.deferrableRoute("POST", "/verify") { [unowned self] request in
            let plan: RunRequest
            let recorded: ExecutionReceipt
            do {
                let verify = try JSONDecoder().decode(VerifyRequest.self, from: Data(request.body))
                recorded = verify.receipt.receipt
                plan = try replayPlan(verify)
            } catch { return .now(Self.error(error)) }
            let responder = try request.deferResponse(timeoutMs: Self.runDeferTimeoutMs)
            do {
                _ = try start(plan) { outcome in
                    guard let again = outcome.receipt?.receipt else {
                        responder.respond(Self.json(["error": "the repeat ran but got no receipt: "
                            + (outcome.receiptError ?? "unknown")], status: 500))
                        return
                    }
                    let differ = Self.differences(recorded, again)
                    responder.respond(Self.json([
                        "reproducible": differ.isEmpty, "differ": differ, "recorded": Hex.encode(recorded.hash),
                        "repeat": ["sequence": again.sequence, "hash": Hex.encode(again.hash)],
                    ]))
                }
            } catch { responder.respond(Self.error(error)) }
            return .later(responder)
        }
    }
}

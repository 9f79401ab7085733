import MetanodeCore
import Testing

/// Runs `body`, expecting it to throw a `MetanodeError` with `code` whose message contains `fragment`.
@discardableResult
func expectFailure<T>(
    _ code: MetanodeError.Code, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(MetanodeError) -> T
) -> MetanodeError? {
    do {
        let value = try body()
        Issue.record(
            "expected a \(code) error containing \"\(fragment)\", got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.code == code, "message: \(error.message)", sourceLocation: sourceLocation)
        #expect(error.message.contains(fragment), "message: \(error.message)", sourceLocation: sourceLocation)
        return error
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

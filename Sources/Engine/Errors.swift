/// Every recoverable failure in the engine is an `EngineError` whose message names the operation and
/// the offending shapes or values, so a user sees *what* went wrong and *where*.
public struct EngineError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

@inline(always)
func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw EngineError(message()) }
}

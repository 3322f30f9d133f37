/// Every failure to read or process audio names the file (or input) and the reason.
public struct AudioError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

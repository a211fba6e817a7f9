import Foundation

/// A harness error with a one-line message saying what to do (the CLI prints it after "error: ").
public struct BenchError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// One line saying what is wrong with a JSON document, from Foundation's decoding error
/// (its own descriptions are generic or span several lines).
func describeDecoding(_ error: Error) -> String {
    guard let error = error as? DecodingError else { return oneLine("\(error)") }
    func path(_ context: DecodingError.Context, _ last: CodingKey? = nil) -> String {
        let keys = context.codingPath + (last.map { [$0] } ?? [])
        return keys.isEmpty ? "the top level" : keys.map { $0.intValue.map(String.init) ?? $0.stringValue }
            .joined(separator: ".")
    }
    switch error {
    case .dataCorrupted(let context) where context.codingPath.isEmpty:
        return "not valid JSON"
    case .dataCorrupted(let context):
        return "\(path(context)): \(oneLine(context.debugDescription))"
    case .keyNotFound(let key, let context):
        return "\(path(context, key)) is missing"
    case .typeMismatch(let type, let context):
        return "\(path(context)) is not a \(type)"
    case .valueNotFound(let type, let context):
        return "\(path(context)) is null, expected a \(type)"
    @unknown default:
        return oneLine("\(error)")
    }
}

func oneLine(_ text: String) -> String {
    text.split(whereSeparator: \.isNewline).joined(separator: " ")
}

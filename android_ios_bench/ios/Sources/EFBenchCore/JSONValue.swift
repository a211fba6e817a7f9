import Foundation

/// Any JSON value. Used for the parts of the manifest/LUT that the harness passes through
/// unchanged (`search_space`, a unit's fields, a reference model's config, the provenance
/// sections) and for building LUT entries, which are flat objects:
/// {"kind": ..., <unit fields>..., <timing statistics>...}.
///
/// Numbers keep their value, not their spelling: Foundation decodes an integral `1.0` as the
/// integer 1, which is written back as `1` (equal for JSON Schema and for Python's `==`).
public enum JSONValue: Codable, Equatable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var intValue: Int? {
        if case .int(let value) = self { return value }
        return nil
    }

    /// The value of a JSON number, integer or not.
    public var numberValue: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// Compact JSON text of the value, for messages.
    public var text: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) } ?? "\(self)"
    }

    /// Writes pretty-printed JSON with sorted keys atomically (Foundation writes a temp file
    /// beside `url` and renames it into place): a reader never sees half a file.
    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var data = try encoder.encode(self)
        data.append(0x0A)
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw BenchError("cannot write \(url.path) (\(oneLine(error.localizedDescription))); check the folder")
        }
    }
}

/// Decodes a JSON file; a missing, unreadable or malformed file is a one-line BenchError naming
/// `what` it should have been, then `hint` (what to do).
public func readJSON<T: Decodable>(_ type: T.Type, from url: URL, what: String, hint: String) throws -> T {
    let data: Data
    do {
        data = try Data(contentsOf: url)
    } catch {
        throw BenchError("\(what) not found or unreadable: \(url.path); \(hint)")
    }
    do {
        return try JSONDecoder().decode(type, from: data)
    } catch {
        throw BenchError("\(url.path) is not a valid \(what) (\(describeDecoding(error))); \(hint)")
    }
}

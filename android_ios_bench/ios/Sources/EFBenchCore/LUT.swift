import Foundation

/// The latency LUT this harness writes: android_ios_bench/schema/lut.schema.json, the format the
/// Python host/Android harnesses write and `search.lut.predict` reads. A document is built as
/// JSON values so that the manifest's `search_space` and each unit's fields pass through as they
/// are; every key written here is checked against the schema by tests/test_ios_schema.py.
public struct LUTDocument {
    public static let formatName = "ef-keras-latency-lut"
    public static let formatVersion = 1

    public var device: [String: JSONValue]
    public var runtime: [String: JSONValue]
    public var measurement: [String: JSONValue]
    public var searchSpace: JSONValue
    public var entries: [String: JSONValue]

    public init(device: DeviceInfo, computeUnits: ComputeUnits, precision: String, warmup: Int, runs: Int,
                command: String, searchSpace: JSONValue) {
        self.device = [
            "name": .string(device.name),
            "model": .string(device.model),
            "os": .string(device.os),
            "arch": .string(device.arch),
        ]
        self.runtime = [
            "name": .string("coreml"),
            "version": .string(device.os),
            "delegate": .null,
            "compute_units": .string(computeUnits.rawValue),
            "threads": .null,
            "precision": .string(precision),
        ]
        self.measurement = [
            "tool": .string("android_ios_bench/ios efbench"),
            "tool_version": .string(efbenchVersion),
            "date": .string(isoNow()),
            "warmup": .int(warmup),
            "runs": .int(runs),
            "order": .string("interleaved: each round times every loaded model once, in a new random order"),
            "command": .string(command),
        ]
        self.searchSpace = searchSpace
        self.entries = [:]
    }

    /// A LUT entry: {"kind": kind, <unit fields>, <statistics>} (Python: lut.make_entry).
    public static func entry(kind: String, unit: [String: JSONValue], stats: TimingStats) -> JSONValue {
        var fields = unit
        fields["kind"] = .string(kind)
        for (key, value) in stats.lutFields { fields[key] = value }
        return .object(fields)
    }

    public var json: JSONValue {
        .object([
            "format": .string(LUTDocument.formatName),
            "version": .int(LUTDocument.formatVersion),
            "device": .object(device),
            "runtime": .object(runtime),
            "measurement": .object(measurement),
            "search_space": searchSpace,
            "entries": .object(entries),
        ])
    }

    /// Writes the document atomically (a temp file replaced in one step): never half a file.
    public func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(json).write(to: url, options: .atomic)
    }

    /// Entries already measured in an existing LUT at `url` (to resume), after checking that it
    /// was measured on this device with the same compute units and precision.
    public static func existingEntries(at url: URL, matching fresh: LUTDocument) throws -> [String: JSONValue] {
        guard FileManager.default.fileExists(atPath: url.path) else { return [:] }
        let old = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url)).objectValue ?? [:]
        for (section, field) in [("device", "name"), ("runtime", "compute_units"), ("runtime", "precision")] {
            let before = old[section]?.objectValue?[field]
            let now = (section == "device" ? fresh.device : fresh.runtime)[field]
            if before != now {
                throw BenchError("\(url.path) was measured with \(section).\(field)=\(String(describing: before)), "
                    + "this run has \(String(describing: now)); use another --lut-out")
            }
        }
        if old["search_space"] != fresh.searchSpace {
            throw BenchError("\(url.path) was measured for another search space; use another --lut-out")
        }
        return old["entries"]?.objectValue ?? [:]
    }
}

public let efbenchVersion = "0.1.0"

func isoNow() -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: Date())
}

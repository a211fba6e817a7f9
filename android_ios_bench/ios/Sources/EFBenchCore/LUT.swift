import Foundation

/// The provenance a LUT and a raw-timings document start with: android_ios_bench/schema/
/// lut.schema.json's `device`, `runtime`, `measurement` and `search_space`. The sections are
/// kept as JSON objects, so whatever fields the session recorded pass through unchanged.
public struct SessionHeader: Equatable {
    public var device: [String: JSONValue]
    public var runtime: [String: JSONValue]
    public var measurement: [String: JSONValue]
    public var searchSpace: JSONValue

    public init(device: [String: JSONValue], runtime: [String: JSONValue], measurement: [String: JSONValue],
                searchSpace: JSONValue) {
        self.device = device
        self.runtime = runtime
        self.measurement = measurement
        self.searchSpace = searchSpace
    }

    /// The four sections of a parsed document; `what`/`hint` word the error.
    init(document: [String: JSONValue], url: URL, what: String, hint: String) throws {
        guard let device = document["device"]?.objectValue, let runtime = document["runtime"]?.objectValue,
              let measurement = document["measurement"]?.objectValue, let searchSpace = document["search_space"]
        else {
            throw BenchError("\(url.path) is not a valid \(what) (it needs device, runtime, measurement and "
                + "search_space objects); \(hint)")
        }
        self.init(device: device, runtime: runtime, measurement: measurement, searchSpace: searchSpace)
    }

    var fields: [String: JSONValue] {
        ["device": .object(device), "runtime": .object(runtime), "measurement": .object(measurement),
         "search_space": searchSpace]
    }

    /// The runtime fields that must agree for two documents' timings to be one table
    /// (Python: `android_ios_bench.lut.identity`, with device.name and search_space).
    static let identityRuntime = ["name", "delegate", "compute_units", "threads", "precision"]

    /// Throws unless `other` (read from `url`) is a session of the same table: same device name,
    /// runtime identity fields and search space (a missing field counts as null, as in Python).
    func checkSameTable(as other: SessionHeader, url: URL, flag: String) throws {
        var fields = [("device.name", device["name"] ?? .null, other.device["name"] ?? .null)]
        fields += SessionHeader.identityRuntime.map { ("runtime.\($0)", runtime[$0] ?? .null, other.runtime[$0] ?? .null) }
        for (name, mine, theirs) in fields where mine != theirs {
            throw BenchError("\(url.path) was measured with \(name) = \(theirs.text), this run has \(mine.text); "
                + "use another \(flag)")
        }
        if searchSpace != other.searchSpace {
            throw BenchError("\(url.path) was measured for another search space than this manifest's; "
                + "use another \(flag)")
        }
    }
}

/// The latency LUT this harness writes: android_ios_bench/schema/lut.schema.json, the format the
/// Python host/Android harnesses write and `android_ios_bench.predictor.predict` reads. Units go
/// to `entries` ({"kind", <unit fields>, <statistics>}); whole reference models (manifest kind
/// "model") to `reference_models`, on which Python fits the LUT's correction
/// (`python -m android_ios_bench.ios`, `predictor.refit_correction`).
public struct LUTDocument {
    public static let formatName = "ef-keras-latency-lut"
    public static let formatVersion = 1
    static let hint = "re-measure it or choose another --lut-out"

    public var header: SessionHeader
    /// LUT entries by key.
    public var entries: [String: JSONValue] = [:]
    /// `reference_models` records by model name.
    public var referenceModels: [String: JSONValue] = [:]

    public init(header: SessionHeader) {
        self.header = header
    }

    /// Reads a LUT this harness (or another) wrote, to resume into it.
    public static func load(_ url: URL) throws -> LUTDocument {
        let document = try readDocument(url, format: formatName, version: formatVersion, what: "LUT", hint: hint)
        var lut = LUTDocument(header: try SessionHeader(document: document, url: url, what: "LUT", hint: hint))
        lut.entries = document["entries"]?.objectValue ?? [:]
        for record in document["reference_models"]?.arrayValue ?? [] {
            guard let name = record.objectValue?["name"]?.stringValue else {
                throw BenchError("\(url.path) is not a valid LUT (a reference model has no name); \(hint)")
            }
            lut.referenceModels[name] = record
        }
        return lut
    }

    /// A LUT entry: {"kind": kind, <unit fields>, <statistics>} (Python: lut.make_entry).
    public static func entry(kind: String, unit: [String: JSONValue], stats: TimingStats) -> JSONValue {
        var fields = unit
        fields["kind"] = .string(kind)
        for (key, value) in stats.lutFields { fields[key] = value }
        return .object(fields)
    }

    /// Stores the statistics of a manifest entry: a unit as an entry, a whole model as a
    /// reference-model record {"name", "config", <referenceFields>} (Python: host.harness.store_reference).
    public mutating func record(_ entry: ManifestEntry, stats: TimingStats) throws {
        guard entry.isReferenceModel else {
            entries[entry.key] = LUTDocument.entry(kind: entry.kind, unit: entry.unit, stats: stats)
            return
        }
        guard let name = entry.unit["name"]?.stringValue, let config = entry.unit["config"]?.objectValue else {
            throw BenchError("manifest entry \(entry.key) is a whole model without a unit name and config; "
                + "re-export the manifest")
        }
        var fields = stats.referenceFields
        fields["name"] = .string(name)
        fields["config"] = .object(config)
        referenceModels[name] = .object(fields)
    }

    /// Whether this LUT already holds a timing of `entry` (a resumed run skips it).
    public func contains(_ entry: ManifestEntry) -> Bool {
        if entry.isReferenceModel, let name = entry.unit["name"]?.stringValue {
            return referenceModels[name] != nil
        }
        return entries[entry.key] != nil
    }

    public var json: JSONValue {
        var fields = header.fields
        fields["format"] = .string(LUTDocument.formatName)
        fields["version"] = .int(LUTDocument.formatVersion)
        fields["entries"] = .object(entries)
        if !referenceModels.isEmpty {
            fields["reference_models"] = .array(referenceModels.keys.sorted().map { referenceModels[$0]! })
        }
        return .object(fields)
    }

    /// Writes the LUT atomically: never half a file.
    public func write(to url: URL) throws {
        try json.write(to: url)
    }
}

/// Every per-call time of a session: the LUT's header plus {key: [ms, ...]} under `timings_ms`.
/// The CoreML run keeps it beside the LUT (`--raw-out`); `efbench --timings` turns one into a
/// LUT anywhere, so statistics can be recomputed, and checked, without re-measuring.
public struct RawTimings {
    public static let formatName = "ef-keras-raw-timings"
    public static let formatVersion = 1
    static let hint = "pass a file efbench wrote with --raw-out"

    public var header: SessionHeader
    public var timings: [String: [Double]] = [:]

    public init(header: SessionHeader) {
        self.header = header
    }

    public static func load(_ url: URL) throws -> RawTimings {
        let document = try readDocument(url, format: formatName, version: formatVersion, what: "raw-timings file",
                                        hint: hint)
        var raw = RawTimings(header: try SessionHeader(document: document, url: url, what: "raw-timings file",
                                                       hint: hint))
        guard let timings = document["timings_ms"]?.objectValue else {
            throw BenchError("\(url.path) is not a valid raw-timings file (no timings_ms object); \(hint)")
        }
        for (key, value) in timings {
            let samples = value.arrayValue?.compactMap(\.numberValue) ?? []
            guard !samples.isEmpty, samples.count == value.arrayValue?.count, samples.allSatisfy({ $0 > 0 }) else {
                throw BenchError("\(url.path): timings_ms.\(key) must be a non-empty list of positive milliseconds; "
                    + hint)
            }
            raw.timings[key] = samples
        }
        return raw
    }

    public var json: JSONValue {
        var fields = header.fields
        fields["format"] = .string(RawTimings.formatName)
        fields["version"] = .int(RawTimings.formatVersion)
        fields["timings_ms"] = .object(timings.mapValues { .array($0.map(JSONValue.double)) })
        return .object(fields)
    }

    public func write(to url: URL) throws {
        try json.write(to: url)
    }
}

/// The LUT of recorded timings: each manifest entry that has samples in `raw` gets the
/// statistics of those samples; the provenance is the raw record's (who measured, where, when).
/// Returns the LUT and the keys of manifest entries that have no timings (a partial LUT).
public func summarizeTimings(_ raw: RawTimings, manifest: Manifest, source: URL) throws
    -> (lut: LUTDocument, untimed: [String]) {
    if raw.header.searchSpace != manifest.search_space {
        throw BenchError("\(source.path) was measured for another search space than the manifest's; pass the "
            + "manifest the timings were measured from")
    }
    if raw.header.runtime["precision"] != .string(manifest.precision) {
        throw BenchError("\(source.path) has runtime.precision \((raw.header.runtime["precision"] ?? .null).text) "
            + "but the manifest's models are \(manifest.precision); pass the manifest the timings were measured from")
    }
    let known = Set(manifest.entries.map(\.key))
    let unknown = raw.timings.keys.filter { !known.contains($0) }.sorted()
    if let first = unknown.first {
        throw BenchError("\(source.path) has timings of \(unknown.count) key(s) the manifest lacks (e.g. \(first)); "
            + "pass the manifest the timings were measured from")
    }
    var lut = LUTDocument(header: raw.header)
    let note = "statistics computed by efbench \(efbenchVersion) from the raw per-call timings"
    lut.header.measurement["notes"] = .string(
        [raw.header.measurement["notes"]?.stringValue, note].compactMap { $0 }.joined(separator: "; "))
    var untimed: [String] = []
    for entry in manifest.entries {
        guard let samples = raw.timings[entry.key] else {
            untimed.append(entry.key)
            continue
        }
        try lut.record(entry, stats: TimingStats(milliseconds: samples))
    }
    return (lut, untimed)
}

/// A parsed LUT-like document after checking its format and version.
func readDocument(_ url: URL, format: String, version: Int, what: String, hint: String) throws -> [String: JSONValue] {
    let value = try readJSON(JSONValue.self, from: url, what: what, hint: hint)
    guard let document = value.objectValue else {
        throw BenchError("\(url.path) is not a valid \(what) (not a JSON object); \(hint)")
    }
    guard document["format"] == .string(format), document["version"] == .int(version) else {
        throw BenchError("\(url.path) is not a \(format) v\(version) document; \(hint)")
    }
    return document
}

public let efbenchVersion = "0.2.0"

import Foundation

/// The micro-model manifest written by `python -m android_ios_bench.export` (or the latency
/// analysis' `--export-only`): android_ios_bench/schema/manifest.schema.json. File paths in it
/// are relative to the manifest's directory. Property names are the JSON keys.
public struct Manifest: Decodable {
    public let format: String
    public let version: Int
    public let precision: String
    public let search_space: JSONValue
    public let entries: [ManifestEntry]

    /// The directory the manifest was read from (model paths resolve against it).
    public private(set) var directory = URL(fileURLWithPath: ".")

    private enum CodingKeys: String, CodingKey {
        case format, version, precision, search_space, entries
    }

    public static let formatName = "ef-keras-latency-manifest"
    public static let formatVersion = 1
    static let exportHint = "export one with `python -m android_ios_bench.export --out DIR --coreml`"

    /// Reads and checks a manifest; errors say what to do.
    public static func load(_ url: URL) throws -> Manifest {
        var manifest = try readJSON(Manifest.self, from: url, what: "manifest", hint: exportHint)
        guard manifest.format == formatName, manifest.version == formatVersion else {
            throw BenchError("\(url.path) has format \(manifest.format) v\(manifest.version), "
                + "expected \(formatName) v\(formatVersion); \(exportHint)")
        }
        var seen = Set<String>()
        for entry in manifest.entries where !seen.insert(entry.key).inserted {
            throw BenchError("\(url.path): key \(entry.key) appears twice; re-export the manifest")
        }
        manifest.directory = url.deletingLastPathComponent()
        return manifest
    }

    /// The entries a CoreML run times: those with a CoreML model, restricted to `keys` if given.
    /// Checked before any timing starts: throws when there are none, when `keys` names keys the
    /// manifest lacks, or when model files are missing (naming the first and how many).
    public func coreMLEntries(keys: Set<String>?) throws -> [ManifestEntry] {
        if let keys {
            let unknown = keys.subtracting(entries.map(\.key)).sorted()
            if let first = unknown.first {
                throw BenchError("--keys names \(unknown.count) key(s) the manifest does not have (e.g. \(first)); "
                    + "use keys from \(directory.appendingPathComponent("manifest.json").path)")
            }
        }
        let wanted = entries.filter { $0.coreml != nil && (keys?.contains($0.key) ?? true) }
        if wanted.isEmpty {
            throw BenchError("the manifest has no CoreML models\(keys == nil ? "" : " with those keys"); "
                + "re-export it with --coreml")
        }
        let missing = wanted.filter { !FileManager.default.fileExists(atPath: coreMLURL($0)!.path) }
        if let first = missing.first {
            throw BenchError("\(missing.count) of \(wanted.count) CoreML models of the manifest are missing "
                + "(e.g. \(first.coreml!) in \(directory.path)); copy the whole exported folder")
        }
        return wanted
    }

    /// The CoreML model file of an entry (nil if it has none).
    public func coreMLURL(_ entry: ManifestEntry) -> URL? {
        entry.coreml.map { directory.appendingPathComponent($0) }
    }
}

/// One micro-model of the manifest.
public struct ManifestEntry: Decodable {
    public let key: String
    public let kind: String
    public let unit: [String: JSONValue]
    public let input_shape: [Int]
    public let input_dtype: String
    public let tflite: String?
    public let coreml: String?
    public let group: String?

    /// A whole model (kind "model", `export.model_item`): timed like a unit, stored in the LUT's
    /// `reference_models` under its unit's `name`, with its `config`.
    public var isReferenceModel: Bool { kind == "model" }
}

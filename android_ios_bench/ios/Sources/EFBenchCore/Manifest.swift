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

    /// Reads and checks a manifest; errors say what to do.
    public static func load(_ url: URL) throws -> Manifest {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw BenchError("manifest not found or unreadable: \(url.path); export one with "
                + "`python -m android_ios_bench.export --out DIR --coreml`")
        }
        var manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: data)
        } catch {
            throw BenchError("\(url.path) is not a valid manifest (\(error.localizedDescription)); re-export it")
        }
        guard manifest.format == formatName, manifest.version == formatVersion else {
            throw BenchError("\(url.path) has format \(manifest.format) v\(manifest.version); "
                + "expected \(formatName) v\(formatVersion)")
        }
        manifest.directory = url.deletingLastPathComponent()
        return manifest
    }

    /// The CoreML model of an entry, or an error naming the missing file.
    public func coreMLURL(_ entry: ManifestEntry) throws -> URL {
        guard let relative = entry.coreml else {
            throw BenchError("manifest entry \(entry.key) has no CoreML model; re-export with --coreml")
        }
        let url = directory.appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw BenchError("manifest entry \(entry.key) names \(relative), which does not exist in "
                + "\(directory.path); copy the whole exported folder")
        }
        return url
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
}

/// A harness error with a one-line message saying what to do.
public struct BenchError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

import Foundation
#if canImport(CoreML)
import CoreML
#endif

/// How the micro-models are timed: the paper's authors averaged many runs (their CoreML
/// harness: 50 warm-ups, then 500 timed predictions); the default here is the same, reported
/// as median/p10/p90 over single predictions.
public struct BenchmarkSettings {
    public var computeUnits: ComputeUnits = .all
    public var warmup: Int = 50
    public var runs: Int = 500
    /// Models loaded and timed interleaved at once (bounded memory).
    public var groupSize: Int = 8
    /// Only these manifest keys (nil: all entries that have a CoreML model).
    public var keys: Set<String>? = nil

    public init() {}

    public static let minimumRuns = 500
}

/// Why `efbench` cannot time models on this system.
public let coreMLUnavailable = "timing CoreML models needs macOS or iOS: CoreML is not available on this system "
    + "(here efbench can only turn recorded timings into a LUT, with --timings RAW)"

#if canImport(CoreML)
extension ComputeUnits {
    var coreML: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpuOnly: return .cpuOnly
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .cpuAndGPU: return .cpuAndGPU
        }
    }
}

/// One loaded micro-model with a random input ready to predict on.
final class LoadedModel {
    let model: MLModel
    let input: MLFeatureProvider

    init(url: URL, entry: ManifestEntry, computeUnits: ComputeUnits) throws {
        // .mlpackage / .mlmodel must be compiled first; a shipped .mlmodelc loads directly.
        let compiled = url.pathExtension == "mlmodelc" ? url : try MLModel.compileModel(at: url)
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits.coreML
        model = try MLModel(contentsOf: compiled, configuration: configuration)
        let inputs = model.modelDescription.inputDescriptionsByName
        guard inputs.count == 1, let first = inputs.first, let constraint = first.value.multiArrayConstraint else {
            throw BenchError("\(entry.key): expected one multi-array input; re-export with deploy.to_coreml")
        }
        let name = first.key
        let shape = constraint.shape.isEmpty ? entry.input_shape.map { NSNumber(value: $0) } : constraint.shape
        let array = try MLMultiArray(shape: shape, dataType: constraint.dataType)
        var generator = SystemRandomNumberGenerator()
        for i in 0..<array.count {
            array[i] = NSNumber(value: Float.random(in: -1...1, using: &generator))
        }
        input = try MLDictionaryFeatureProvider(dictionary: [name: MLFeatureValue(multiArray: array)])
    }

    /// One synchronous prediction: the workload the timing loop times.
    func predict() throws {
        _ = try model.prediction(from: input)
    }
}

extension SessionHeader {
    /// The provenance of a CoreML session on this device.
    static func coreML(manifest: Manifest, settings: BenchmarkSettings, command: String) -> SessionHeader {
        let device = DeviceInfo.current()
        return SessionHeader(
            device: ["name": .string(device.name), "model": .string(device.model), "os": .string(device.os),
                     "arch": .string(device.arch)],
            runtime: ["name": .string("coreml"), "version": .string(device.os), "delegate": .null,
                      "compute_units": .string(settings.computeUnits.rawValue), "threads": .null,
                      "precision": .string(manifest.precision)],
            measurement: ["tool": .string("android_ios_bench/ios efbench"), "tool_version": .string(efbenchVersion),
                          "date": .string(isoNow()), "warmup": .int(settings.warmup), "runs": .int(settings.runs),
                          "order": .string("interleaved: each round times every loaded model once, in a new "
                              + "random order; groups of \(settings.groupSize)"),
                          "command": .string(command)],
            searchSpace: manifest.search_space)
    }
}

/// Times `wanted` (`Manifest.coreMLEntries`: entries whose CoreML models exist) that the
/// LUT at `lutURL` does not hold yet, units and reference models alike, and writes the LUT (and
/// the raw per-call timings to `rawURL`) atomically after every group, so an interrupted run
/// keeps what it measured and a re-run resumes. `progress(done, total, key, stats)`.
public func measureManifest(_ manifest: Manifest, wanted: [ManifestEntry], lutURL: URL, rawURL: URL?,
                            settings: BenchmarkSettings, command: String,
                            progress: (Int, Int, String, TimingStats) -> Void) throws -> LUTDocument {
    guard settings.runs >= 1, settings.warmup >= 0, settings.groupSize >= 1 else {
        throw BenchError("need runs >= 1, warmup >= 0, group size >= 1")
    }
    // A resumed file keeps its own provenance (same device, runtime and space: checked).
    let header = SessionHeader.coreML(manifest: manifest, settings: settings, command: command)
    var lut = LUTDocument(header: header)
    if FileManager.default.fileExists(atPath: lutURL.path) {
        lut = try LUTDocument.load(lutURL)
        try header.checkSameTable(as: lut.header, url: lutURL, flag: "--lut-out")
    }
    var raw = RawTimings(header: header)
    if let rawURL, FileManager.default.fileExists(atPath: rawURL.path) {
        raw = try RawTimings.load(rawURL)
        try header.checkSameTable(as: raw.header, url: rawURL, flag: "--raw-out")
    }
    let todo = wanted.filter { !lut.contains($0) }.shuffled()
    var done = wanted.count - todo.count
    for start in stride(from: 0, to: todo.count, by: settings.groupSize) {
        let group = Array(todo[start..<min(start + settings.groupSize, todo.count)])
        let models = try group.map { entry -> LoadedModel in
            do {
                return try LoadedModel(url: manifest.coreMLURL(entry)!, entry: entry,
                                       computeUnits: settings.computeUnits)
            } catch let error as BenchError {
                throw error
            } catch {
                throw BenchError("\(entry.key): CoreML could not load it (\(oneLine(error.localizedDescription)))")
            }
        }
        let times = try timeInterleaved(models.map { model in { try model.predict() } }, runs: settings.runs,
                                        warmup: settings.warmup)
        for (entry, samples) in zip(group, times.samples) {
            let stats = TimingStats(milliseconds: samples)
            try lut.record(entry, stats: stats)
            raw.timings[entry.key] = samples
            done += 1
            progress(done, wanted.count, entry.key, stats)
        }
        lut.header.measurement["date"] = .string(isoNow())
        raw.header.measurement["date"] = lut.header.measurement["date"]
        try lut.write(to: lutURL)
        if let rawURL { try raw.write(to: rawURL) }
    }
    return lut
}

/// Now, as the Python side writes dates (`lut.now_iso`): UTC, seconds, "Z".
func isoNow() -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: Date())
}
#endif

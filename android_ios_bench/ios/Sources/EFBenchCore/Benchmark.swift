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

    /// Milliseconds of one synchronous prediction.
    func timePrediction() throws -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try model.prediction(from: input)
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }
}

/// Times every manifest entry missing from the LUT at `lutURL` and writes the LUT after every
/// group, so an interrupted run keeps what it measured. `progress(done, total, key, stats)`.
public func measureManifest(_ manifest: Manifest, lutURL: URL, settings: BenchmarkSettings, command: String,
                            progress: (Int, Int, String, TimingStats) -> Void) throws -> LUTDocument {
    guard settings.runs >= 1, settings.warmup >= 0, settings.groupSize >= 1 else {
        throw BenchError("need runs >= 1, warmup >= 0, group size >= 1")
    }
    var lut = LUTDocument(device: DeviceInfo.current(), computeUnits: settings.computeUnits,
                          precision: manifest.precision, warmup: settings.warmup, runs: settings.runs,
                          command: command, searchSpace: manifest.search_space)
    lut.entries = try LUTDocument.existingEntries(at: lutURL, matching: lut)
    let wanted = manifest.entries.filter { $0.coreml != nil && (settings.keys?.contains($0.key) ?? true) }
    if wanted.isEmpty {
        throw BenchError("the manifest has no CoreML models\(settings.keys == nil ? "" : " with those keys"); "
            + "export with --coreml")
    }
    let todo = wanted.filter { lut.entries[$0.key] == nil }.shuffled()
    var done = wanted.count - todo.count
    for start in stride(from: 0, to: todo.count, by: settings.groupSize) {
        let group = Array(todo[start..<min(start + settings.groupSize, todo.count)])
        let models = try group.map { entry -> LoadedModel in
            do {
                return try LoadedModel(url: manifest.coreMLURL(entry), entry: entry,
                                       computeUnits: settings.computeUnits)
            } catch let error as BenchError {
                throw error
            } catch {
                throw BenchError("\(entry.key): CoreML could not load it (\(error.localizedDescription))")
            }
        }
        for model in models {
            for _ in 0..<settings.warmup { _ = try model.timePrediction() }
        }
        var samples = [[Double]](repeating: [], count: models.count)
        for _ in 0..<settings.runs {
            for i in Array(models.indices).shuffled() {
                samples[i].append(try models[i].timePrediction())
            }
        }
        for (i, entry) in group.enumerated() {
            let stats = TimingStats(milliseconds: samples[i])
            lut.entries[entry.key] = LUTDocument.entry(kind: entry.kind, unit: entry.unit, stats: stats)
            done += 1
            progress(done, wanted.count, entry.key, stats)
        }
        lut.measurement["date"] = .string(isoNow())
        try lut.write(to: lutURL)
    }
    try lut.write(to: lutURL)
    return lut
}
#endif

// efbench: time a manifest's CoreML micro-models on this Mac and write the latency LUT.
//
//   efbench --manifest DIR/manifest.json --lut-out lut.json
//           [--compute-units all|cpuOnly|cpuAndNeuralEngine|cpuAndGPU] [--warmup 50] [--runs 500]
//           [--group-size 8] [--keys k1,k2]
import EFBenchCore
import Foundation

let usage = """
    usage: efbench --manifest PATH --lut-out PATH [--compute-units all|cpuOnly|cpuAndNeuralEngine|cpuAndGPU]
                   [--warmup N] [--runs N (>= \(BenchmarkSettings.minimumRuns))] [--group-size N] [--keys k1,k2]
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write("error: \(message)\n".data(using: .utf8)!)
    exit(1)
}

func parseArguments(_ arguments: [String]) -> (manifest: String, lutOut: String, settings: BenchmarkSettings) {
    var options: [String: String] = [:]
    var index = 0
    while index < arguments.count {
        let flag = arguments[index]
        guard flag.hasPrefix("--"), index + 1 < arguments.count else { fail("unexpected argument \(flag)\n\(usage)") }
        options[String(flag.dropFirst(2))] = arguments[index + 1]
        index += 2
    }
    let known: Set = ["manifest", "lut-out", "compute-units", "warmup", "runs", "group-size", "keys"]
    if let unknown = options.keys.first(where: { !known.contains($0) }) { fail("unknown flag --\(unknown)\n\(usage)") }
    guard let manifest = options["manifest"], let lutOut = options["lut-out"] else { fail(usage) }
    var settings = BenchmarkSettings()
    if let units = options["compute-units"] {
        guard let value = ComputeUnits(rawValue: units) else {
            fail("--compute-units must be one of \(ComputeUnits.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        settings.computeUnits = value
    }
    func integer(_ name: String, _ fallback: Int) -> Int {
        guard let text = options[name] else { return fallback }
        guard let value = Int(text) else { fail("--\(name) needs an integer, got \(text)") }
        return value
    }
    settings.warmup = integer("warmup", settings.warmup)
    settings.runs = integer("runs", settings.runs)
    settings.groupSize = integer("group-size", settings.groupSize)
    if settings.runs < BenchmarkSettings.minimumRuns {
        fail("--runs \(settings.runs) is too few; the paper's protocol averages >= \(BenchmarkSettings.minimumRuns)")
    }
    settings.keys = options["keys"].map { Set($0.split(separator: ",").map(String.init)) }
    return (manifest, lutOut, settings)
}

#if canImport(CoreML)
let (manifestPath, lutOut, settings) = parseArguments(Array(CommandLine.arguments.dropFirst()))
do {
    let manifest = try Manifest.load(URL(fileURLWithPath: manifestPath))
    let lut = try measureManifest(manifest, lutURL: URL(fileURLWithPath: lutOut), settings: settings,
                                  command: CommandLine.arguments.joined(separator: " ")) { done, total, key, stats in
        let ms = { (value: Double) in String(format: "%.3f", value) }
        print("[\(done)/\(total)] \(key): median \(ms(stats.median)) ms (p10 \(ms(stats.p10)), p90 \(ms(stats.p90)))")
    }
    print("wrote \(lutOut): \(lut.entries.count) entries")
} catch {
    fail("\(error)")
}
#else
fail("CoreML is not available on this platform; run efbench on macOS")
#endif

import Foundation

/// What one `efbench` invocation does, parsed and checked before any work starts:
///
/// - `measure`: time a manifest's CoreML models on this Mac into a LUT (and optionally keep
///   every per-call time in a raw-timings file); needs CoreML, so macOS or iOS.
/// - `summarize`: turn a raw-timings file into a LUT with the same statistics; runs anywhere.
///
/// Every bad input is a one-line `BenchError` (the CLI prints it and exits 1).
public enum EFBenchCommand {
    case measure(manifest: URL, lutOut: URL, rawOut: URL?, settings: BenchmarkSettings)
    case summarize(manifest: URL, timings: URL, lutOut: URL)

    public static let usage = """
        usage: efbench --manifest PATH --lut-out PATH [--raw-out PATH]
                       [--compute-units \(ComputeUnits.allCases.map(\.rawValue).joined(separator: "|"))]
                       [--warmup N] [--runs N (>= \(BenchmarkSettings.minimumRuns))] [--group-size N] [--keys k1,k2]
               efbench --manifest PATH --timings RAW --lut-out PATH
        """

    static let measureFlags: Set = ["compute-units", "warmup", "runs", "group-size", "keys", "raw-out"]
    static let knownFlags: Set = measureFlags.union(["manifest", "lut-out", "timings"])

    /// Parses `--flag value` / `--flag=value` arguments (without the program name).
    public static func parse(_ arguments: [String]) throws -> EFBenchCommand {
        var options: [String: String] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.hasPrefix("--") else { throw BenchError("unexpected argument \(argument); see --help") }
            var name = String(argument.dropFirst(2))
            let value: String
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
                index += 1
            } else {
                guard index + 1 < arguments.count else { throw BenchError("--\(name) needs a value; see --help") }
                value = arguments[index + 1]
                index += 2
            }
            guard knownFlags.contains(name) else { throw BenchError("unknown flag --\(name); see --help") }
            guard options[name] == nil else { throw BenchError("--\(name) is given twice") }
            options[name] = value
        }
        guard let manifest = options["manifest"], let lutOut = options["lut-out"] else {
            throw BenchError("--manifest and --lut-out are required; see --help")
        }
        if let timings = options["timings"] {
            if let flag = measureFlags.intersection(options.keys).sorted().first {
                throw BenchError("--\(flag) sets how models are timed; --timings summarizes timings already recorded")
            }
            return .summarize(manifest: url(manifest), timings: url(timings), lutOut: url(lutOut))
        }
        var settings = BenchmarkSettings()
        if let units = options["compute-units"] {
            guard let value = ComputeUnits(rawValue: units) else {
                throw BenchError("--compute-units \(units) is unknown; use one of "
                    + ComputeUnits.allCases.map(\.rawValue).joined(separator: ", "))
            }
            settings.computeUnits = value
        }
        func integer(_ name: String, _ fallback: Int, atLeast minimum: Int, why: String) throws -> Int {
            guard let text = options[name] else { return fallback }
            guard let value = Int(text) else { throw BenchError("--\(name) needs an integer, got \(text)") }
            guard value >= minimum else { throw BenchError("--\(name) \(value) is too small: \(why)") }
            return value
        }
        settings.warmup = try integer("warmup", settings.warmup, atLeast: 0, why: "use 0 or more untimed predictions")
        settings.runs = try integer("runs", settings.runs, atLeast: BenchmarkSettings.minimumRuns,
                                    why: "the paper's protocol times >= \(BenchmarkSettings.minimumRuns) predictions")
        settings.groupSize = try integer("group-size", settings.groupSize, atLeast: 1,
                                         why: "at least one model per group")
        if let keys = options["keys"] {
            settings.keys = Set(keys.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        let rawOut = options["raw-out"].map(url)
        if let rawOut, rawOut.standardizedFileURL == url(lutOut).standardizedFileURL {
            throw BenchError("--raw-out and --lut-out are the same file; give the raw timings their own file")
        }
        return .measure(manifest: url(manifest), lutOut: url(lutOut), rawOut: rawOut, settings: settings)
    }

    /// Runs the command; `log` gets progress lines, the result is the final summary line.
    /// `commandLine` is recorded in the LUT's provenance.
    public func run(commandLine: String, log: (String) -> Void) throws -> String {
        switch self {
        case let .summarize(manifestURL, timingsURL, lutOut):
            let manifest = try Manifest.load(manifestURL)
            let raw = try RawTimings.load(timingsURL)
            try checkOutput(lutOut, flag: "--lut-out", resumable: false)
            let (lut, untimed) = try summarizeTimings(raw, manifest: manifest, source: timingsURL)
            if let first = untimed.first {
                log("note: \(untimed.count) manifest entries have no timings (e.g. \(first)); the LUT is partial")
            }
            try lut.write(to: lutOut)
            return "wrote \(lutOut.path): \(lut.entries.count) entries, \(lut.referenceModels.count) reference "
                + "models (from \(timingsURL.lastPathComponent))"
        case let .measure(manifestURL, lutOut, rawOut, settings):
            let manifest = try Manifest.load(manifestURL)
            let wanted = try manifest.coreMLEntries(keys: settings.keys)
            try checkOutput(lutOut, flag: "--lut-out", resumable: true)
            if let rawOut { try checkOutput(rawOut, flag: "--raw-out", resumable: true) }
            #if canImport(CoreML)
            let lut = try measureManifest(manifest, wanted: wanted, lutURL: lutOut, rawURL: rawOut,
                                          settings: settings, command: commandLine) { done, total, key, stats in
                let ms = { (value: Double) in String(format: "%.3f", value) }
                log("[\(done)/\(total)] \(key): median \(ms(stats.median)) ms (p10 \(ms(stats.p10)), "
                    + "p90 \(ms(stats.p90)))")
            }
            return "wrote \(lutOut.path): \(lut.entries.count) entries, \(lut.referenceModels.count) reference models"
            #else
            _ = commandLine
            throw BenchError(coreMLUnavailable)
            #endif
        }
    }
}

private func url(_ path: String) -> URL {
    URL(fileURLWithPath: path)
}

/// Checks, before any work, that `url` may be written as a JSON output: a `.json` name in an
/// existing, writable directory (probed with a real file: permission bits say yes to root), and
/// not a directory. An existing file is refused unless the command resumes into it.
public func checkOutput(_ url: URL, flag: String, resumable: Bool) throws {
    guard url.pathExtension == "json" else {
        throw BenchError("\(flag) \(url.path) does not end in .json; rename it, e.g. "
            + "\(url.deletingPathExtension().lastPathComponent).json")
    }
    let directory = url.deletingLastPathComponent()
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue
    else {
        throw BenchError("output directory \(directory.path) is not an existing directory; create it or choose "
            + "another \(flag)")
    }
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
        if isDirectory.boolValue { throw BenchError("\(url.path) is a directory; choose another \(flag)") }
        if !resumable {
            throw BenchError("\(url.path) already exists; choose another \(flag) (efbench replaces no file)")
        }
    }
    let probe = directory.appendingPathComponent(".\(url.lastPathComponent).probe-\(UUID().uuidString)")
    guard FileManager.default.createFile(atPath: probe.path, contents: Data()) else {
        throw BenchError("output directory \(directory.path) is not writable; choose another \(flag)")
    }
    try? FileManager.default.removeItem(at: probe)
}

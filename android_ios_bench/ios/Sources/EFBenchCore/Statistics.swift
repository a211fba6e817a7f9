import Foundation

/// Timing statistics of one micro-model, in milliseconds, as the LUT stores them.
///
/// The Swift twin of Python's `ef_keras.timing.summarize`: `percentile` interpolates linearly
/// between order statistics (numpy.percentile's default, Hyndman & Fan type 7) and `std` is the
/// population standard deviation, so a "p10" means the same in an iPhone LUT as in a host LUT.
/// Fixtures/statistics.json holds NumPy's numbers for shared samples; both test suites check them.
public struct TimingStats: Equatable {
    public let median: Double
    public let p10: Double
    public let p90: Double
    public let mean: Double
    public let min: Double
    public let max: Double
    public let std: Double
    public let runs: Int

    public init(milliseconds samples: [Double]) {
        precondition(!samples.isEmpty, "TimingStats needs at least one sample")
        let sorted = samples.sorted()
        median = TimingStats.percentile(sorted, 0.5)
        p10 = TimingStats.percentile(sorted, 0.1)
        p90 = TimingStats.percentile(sorted, 0.9)
        mean = samples.reduce(0, +) / Double(samples.count)
        min = sorted.first!
        max = sorted.last!
        let m = mean
        std = (samples.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(samples.count)).squareRoot()
        runs = samples.count
    }

    /// Linear interpolation at fraction `q` of an ascending array (numpy.percentile, "linear").
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        let position = Double(sorted.count - 1) * q
        let lower = Int(position.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }

    /// The statistics fields of a LUT entry (android_ios_bench/schema/lut.schema.json, $defs/entry).
    public var lutFields: [String: JSONValue] {
        [
            "median_ms": .double(median),
            "p10_ms": .double(p10),
            "p90_ms": .double(p90),
            "mean_ms": .double(mean),
            "min_ms": .double(min),
            "max_ms": .double(max),
            "std_ms": .double(std),
            "runs": .int(runs),
        ]
    }

    /// What a LUT's `reference_models` record keeps of a whole model (lut.schema.json; Python:
    /// `host.harness.store_reference`).
    public var referenceFields: [String: JSONValue] {
        lutFields.filter { TimingStats.referenceKeys.contains($0.key) }
    }

    static let referenceKeys: Set = ["median_ms", "p10_ms", "min_ms", "runs"]
}

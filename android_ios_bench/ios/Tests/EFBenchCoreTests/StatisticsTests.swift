import EFBenchCore
import Foundation
import XCTest

/// TimingStats against NumPy's numbers for the shared samples of Fixtures/statistics.json
/// (tests/fixtures/make_ios_fixtures.py computed them with numpy.percentile/mean/std).
final class StatisticsTests: XCTestCase {
    struct Case: Decodable {
        let name: String
        let samples_ms: [Double]
        let numpy: [String: Double]
    }

    struct Cases: Decodable {
        let cases: [Case]
    }

    /// Equal up to the last few bits: summation order (NumPy sums pairwise) and the
    /// interpolation formula may differ in rounding.
    func assertClose(_ swift: Double, _ numpy: Double?, _ what: String) {
        guard let numpy else { return XCTFail("fixture lacks \(what)") }
        XCTAssertEqual(swift, numpy, accuracy: 1e-12 * Swift.max(1, abs(numpy)), what)
    }

    func testStatisticsEqualNumpysOnTheSharedSamples() throws {
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: fixture("statistics.json"))).cases
        XCTAssertGreaterThanOrEqual(cases.count, 7)
        for item in cases {
            let stats = TimingStats(milliseconds: item.samples_ms)
            assertClose(stats.min, item.numpy["min_ms"], "\(item.name) min")
            assertClose(stats.p10, item.numpy["p10_ms"], "\(item.name) p10")
            assertClose(stats.median, item.numpy["median_ms"], "\(item.name) median")
            assertClose(stats.p90, item.numpy["p90_ms"], "\(item.name) p90")
            assertClose(stats.mean, item.numpy["mean_ms"], "\(item.name) mean")
            assertClose(stats.max, item.numpy["max_ms"], "\(item.name) max")
            assertClose(stats.std, item.numpy["std_ms"], "\(item.name) std")
            XCTAssertEqual(stats.runs, item.samples_ms.count)
        }
    }

    func testPercentilesOfAHandCheckedCase() {
        // sorted 1, 2, 3, 4, 10: p10 at position 0.4 -> 1.4, median 3, p90 at 3.6 -> 4 + 0.6 * 6 = 7.6
        let stats = TimingStats(milliseconds: [4, 1, 10, 3, 2])
        XCTAssertEqual(stats.p10, 1.4, accuracy: 1e-12)
        XCTAssertEqual(stats.median, 3.0, accuracy: 1e-12)
        XCTAssertEqual(stats.p90, 7.6, accuracy: 1e-12)
        XCTAssertEqual(stats.mean, 4.0, accuracy: 1e-12)
        XCTAssertEqual(stats.std, 3.1622776601683795, accuracy: 1e-12)  // sqrt(50 / 5): ddof = 0
    }

    func testLUTFieldsAreTheSchemaNames() {
        let stats = TimingStats(milliseconds: [1, 2, 3])
        XCTAssertEqual(Set(stats.lutFields.keys),
                       ["median_ms", "p10_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "runs"])
        XCTAssertEqual(Set(stats.referenceFields.keys), ["median_ms", "p10_ms", "min_ms", "runs"])
        XCTAssertEqual(stats.lutFields["median_ms"], .double(2))
        XCTAssertEqual(stats.lutFields["runs"], .int(3))
    }
}

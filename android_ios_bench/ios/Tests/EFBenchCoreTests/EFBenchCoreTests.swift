import EFBenchCore
import Foundation
import XCTest

final class EFBenchCoreTests: XCTestCase {
    func testPercentilesMatchNumpyLinear() {
        // numpy.percentile([1, 2, 3, 4, 10], [10, 50, 90]) == [1.4, 3.0, 7.6]
        let stats = TimingStats(milliseconds: [4, 1, 10, 3, 2])
        XCTAssertEqual(stats.p10, 1.4, accuracy: 1e-12)
        XCTAssertEqual(stats.median, 3.0, accuracy: 1e-12)
        XCTAssertEqual(stats.p90, 7.6, accuracy: 1e-12)
        XCTAssertEqual(stats.runs, 5)
    }

    func testEntryIsFlatKindUnitAndStats() throws {
        let entry = LUTDocument.entry(kind: "meta4d", unit: ["cin": .int(48), "cout": .int(48), "res": .int(56)],
                                      stats: TimingStats(milliseconds: [1, 2, 3]))
        let fields = try XCTUnwrap(entry.objectValue)
        XCTAssertEqual(fields["kind"], .string("meta4d"))
        XCTAssertEqual(fields["cin"], .int(48))
        XCTAssertEqual(fields["median_ms"], .double(2))
        XCTAssertEqual(fields["runs"], .int(3))
    }

    func testManifestDecodesThePythonFixture() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fixtures/manifest.json").standardized
        let manifest = try Manifest.load(url)
        XCTAssertFalse(manifest.entries.isEmpty)
        XCTAssertNotNil(manifest.entries.first?.coreml)
    }
}

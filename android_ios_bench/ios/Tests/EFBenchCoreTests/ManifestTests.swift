import EFBenchCore
import Foundation
import XCTest

/// Manifests as `python -m android_ios_bench.export` writes them (Fixtures/*/manifest.json are
/// real exports) and the one-line errors for bad ones.
final class ManifestTests: XCTestCase {
    func testDecodesTheExportedAnalysisManifest() throws {
        let manifest = try Manifest.load(fixture("analysis/manifest.json"))
        XCTAssertEqual(manifest.entries.count, 16)
        XCTAssertEqual(manifest.precision, "fp32")
        XCTAssertTrue(manifest.entries.allSatisfy { $0.coreml?.hasSuffix(".mlpackage") == true })
        let first = try XCTUnwrap(manifest.entries.first)
        XCTAssertEqual(first.kind, "analysis")
        XCTAssertEqual(first.input_shape, [1, 64, 64, 3])
        XCTAssertNotNil(first.unit["macs"]?.intValue)
        XCTAssertEqual(manifest.directory.standardized, fixture("analysis"))
    }

    func testDecodesTheExportedSearchSpaceWithItsReferenceModels() throws {
        let manifest = try Manifest.load(fixture("tiny_space/manifest.json"))
        let references = manifest.entries.filter(\.isReferenceModel)
        XCTAssertEqual(references.count, 6)
        for entry in references {
            XCTAssertEqual(entry.key, "model_" + (entry.unit["name"]?.stringValue ?? "?"))
            XCTAssertNotNil(entry.unit["config"]?.objectValue?["widths"]?.arrayValue)
        }
        XCTAssertEqual(Set(manifest.entries.map(\.kind)),
                       ["stem", "downsample", "meta4d", "flat", "meta3d", "head", "model"])
        XCTAssertEqual(manifest.search_space.objectValue?["input_size"], .int(64))
    }

    func testMissingAndMalformedManifestsAreOneLineErrors() throws {
        let directory = try temporaryDirectory(self)
        assertBenchError(try Manifest.load(directory.appendingPathComponent("nothing.json")),
                         contains: "manifest not found or unreadable")
        let text = try String(contentsOf: fixture("analysis/manifest.json"), encoding: .utf8)
        let cases = [
            ("truncated", String(text.prefix(200)), "not valid JSON"),
            ("no_precision", text.replacingOccurrences(of: "\"precision\"", with: "\"precisionX\""),
             "precision is missing"),
            ("wrong_type", text.replacingOccurrences(of: "\"input_shape\": [\n        1,",
                                                     with: "\"input_shape\": [\n        \"1\","),
             "entries.0.input_shape.0 is not a Int"),
            ("other_format", text.replacingOccurrences(of: "ef-keras-latency-manifest", with: "something-else"),
             "expected ef-keras-latency-manifest v1"),
            ("duplicate", text.replacingOccurrences(of: "analysis-reduced.a.embed_7x7_s4\"",
                                                    with: "analysis-reduced.a.embed_16x16_s16\""),
             "appears twice"),
        ]
        for (name, body, fragment) in cases {
            XCTAssertNotEqual(body, text, name)
            let url = directory.appendingPathComponent("\(name).json")
            try write(body, to: url)
            assertBenchError(try Manifest.load(url), contains: fragment)
        }
    }

    func testCoreMLEntriesNeedTheirModelFiles() throws {
        let directory = try temporaryDirectory(self)
        let url = directory.appendingPathComponent("manifest.json")
        try FileManager.default.copyItem(at: fixture("analysis/manifest.json"), to: url)
        let manifest = try Manifest.load(url)
        assertBenchError(try manifest.coreMLEntries(keys: nil),
                         contains: "16 of 16 CoreML models of the manifest are missing (e.g. coreml/analysis-reduced")
        // with the files in place (an .mlpackage is a directory), the entries are the run's
        for entry in manifest.entries.prefix(15) {
            try FileManager.default.createDirectory(at: try XCTUnwrap(manifest.coreMLURL(entry)),
                                                    withIntermediateDirectories: true)
        }
        assertBenchError(try manifest.coreMLEntries(keys: nil), contains: "1 of 16 CoreML models")
        let two: Set = [manifest.entries[0].key, manifest.entries[1].key]
        XCTAssertEqual(Set(try manifest.coreMLEntries(keys: two).map(\.key)), two)
        assertBenchError(try manifest.coreMLEntries(keys: ["nope"]), contains: "--keys names 1 key(s)")
    }

    func testAManifestWithoutCoreMLModelsIsRefused() throws {
        let directory = try temporaryDirectory(self)
        let url = directory.appendingPathComponent("manifest.json")
        let text = try String(contentsOf: fixture("analysis/manifest.json"), encoding: .utf8)
        let pattern = try NSRegularExpression(pattern: "\"coreml\": \"[^\"]*\"")
        let range = NSRange(text.startIndex..., in: text)
        try write(pattern.stringByReplacingMatches(in: text, range: range, withTemplate: "\"coreml\": null"), to: url)
        assertBenchError(try Manifest.load(url).coreMLEntries(keys: nil), contains: "re-export it with --coreml")
    }
}

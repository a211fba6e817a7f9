@testable import EFBenchCore
import Foundation
import XCTest

/// Raw per-call timings -> the LUT (entries, reference models, provenance), its atomic writing,
/// and the checks that keep two sessions' timings out of one table.
final class LUTTests: XCTestCase {
    let manifestURL = fixture("tiny_space/manifest.json")
    let rawURL = fixture("tiny_space/raw_timings.json")

    func testSummarizedEntriesAreEachUnitsStatistics() throws {
        let manifest = try Manifest.load(manifestURL)
        let raw = try RawTimings.load(rawURL)
        let (lut, untimed) = try summarizeTimings(raw, manifest: manifest, source: rawURL)
        XCTAssertEqual(untimed, [])
        let units = manifest.entries.filter { !$0.isReferenceModel }
        XCTAssertEqual(Set(lut.entries.keys), Set(units.map(\.key)))
        for entry in units {
            let stats = TimingStats(milliseconds: try XCTUnwrap(raw.timings[entry.key]))
            XCTAssertEqual(lut.entries[entry.key], LUTDocument.entry(kind: entry.kind, unit: entry.unit, stats: stats))
        }
        let references = try XCTUnwrap(lut.json.objectValue?["reference_models"]?.arrayValue)
        let names = references.compactMap { $0.objectValue?["name"]?.stringValue }
        XCTAssertEqual(names, ["ref0", "ref1", "ref2", "ref3", "ref4", "ref5"])
        for record in references {
            let fields = try XCTUnwrap(record.objectValue)
            let name = try XCTUnwrap(fields["name"]?.stringValue)
            let entry = try XCTUnwrap(manifest.entries.first { $0.key == "model_\(name)" })
            XCTAssertEqual(fields["config"], entry.unit["config"])
            let stats = TimingStats(milliseconds: try XCTUnwrap(raw.timings[entry.key]))
            XCTAssertEqual(fields["median_ms"], .double(stats.median))
            XCTAssertEqual(fields["min_ms"], .double(stats.min))
            XCTAssertEqual(Set(fields.keys), ["name", "config", "median_ms", "p10_ms", "min_ms", "runs"])
        }
        // provenance: the session that measured, plus how the statistics were made
        XCTAssertEqual(lut.header.device, raw.header.device)
        XCTAssertEqual(lut.header.runtime, raw.header.runtime)
        XCTAssertEqual(lut.header.measurement["date"], raw.header.measurement["date"])
        XCTAssertTrue(lut.header.measurement["notes"]?.stringValue?.contains("efbench") == true)
    }

    func testTheCommittedLUTIsWhatSummarizingWrites() throws {
        // Fixtures/*/lut.json were written by `efbench --timings`; the Python tests read them
        for name in ["tiny_space", "analysis"] {
            let raw = try RawTimings.load(fixture("\(name)/raw_timings.json"))
            let manifest = try Manifest.load(fixture("\(name)/manifest.json"))
            let (lut, _) = try summarizeTimings(raw, manifest: manifest, source: fixture("\(name)/raw_timings.json"))
            let committed = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: fixture("\(name)/lut.json")))
            XCTAssertEqual(lut.json, committed, "\(name)/lut.json is stale: run make_ios_fixtures.py --luts-only")
        }
    }

    func testWriteThenLoadRoundTripsAndLeavesNoTempFile() throws {
        let directory = try temporaryDirectory(self)
        let url = directory.appendingPathComponent("lut.json")
        let (lut, _) = try summarizeTimings(try RawTimings.load(rawURL), manifest: try Manifest.load(manifestURL),
                                            source: rawURL)
        try lut.write(to: url)
        let back = try LUTDocument.load(url)
        XCTAssertEqual(back.json, lut.json)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["lut.json"])
        assertBenchError(try lut.write(to: directory.appendingPathComponent("missing/lut.json")),
                         contains: "cannot write")
    }

    func testRawTimingsOfAnotherManifestAreRefused() throws {
        let manifest = try Manifest.load(fixture("analysis/manifest.json"))
        let raw = try RawTimings.load(rawURL)  // the tiny space's: another search space
        assertBenchError(try summarizeTimings(raw, manifest: manifest, source: rawURL), contains: "another search space")
        var other = raw
        other.timings["not_in_the_manifest"] = [1, 2]
        assertBenchError(try summarizeTimings(other, manifest: try Manifest.load(manifestURL), source: rawURL),
                         contains: "timings of 1 key(s) the manifest lacks (e.g. not_in_the_manifest)")
        other = raw
        other.header.runtime["precision"] = .string("fp16")
        assertBenchError(try summarizeTimings(other, manifest: try Manifest.load(manifestURL), source: rawURL),
                         contains: "runtime.precision \"fp16\"")
    }

    func testAPartialRecordGivesAPartialLUT() throws {
        var raw = try RawTimings.load(rawURL)
        raw.timings.removeValue(forKey: "model_ref3")
        let (lut, untimed) = try summarizeTimings(raw, manifest: try Manifest.load(manifestURL), source: rawURL)
        XCTAssertEqual(untimed, ["model_ref3"])
        XCTAssertNil(lut.referenceModels["ref3"])
        XCTAssertEqual(lut.referenceModels.count, 5)
    }

    func testBadRawTimingsAreOneLineErrors() throws {
        let directory = try temporaryDirectory(self)
        let document = try readJSONObject(rawURL)
        let timings = try XCTUnwrap(document["timings_ms"]?.objectValue)
        let key = try XCTUnwrap(timings.keys.sorted().first)
        let cases: [(String, [JSONValue], String)] = [
            ("empty", [], "timings_ms.\(key) must be a non-empty list of positive milliseconds"),
            ("negative", [.double(1), .double(-1)], "positive milliseconds"),
            ("text", [.string("1")], "positive milliseconds"),
        ]
        for (name, samples, fragment) in cases {
            var changed = document
            changed["timings_ms"] = .object(timings.merging([key: .array(samples)]) { $1 })
            let url = directory.appendingPathComponent("\(name).json")
            try JSONValue.object(changed).write(to: url)
            assertBenchError(try RawTimings.load(url), contains: fragment)
        }
        var lut = document
        lut["format"] = .string("ef-keras-latency-lut")
        try JSONValue.object(lut).write(to: directory.appendingPathComponent("lut_format.json"))
        assertBenchError(try RawTimings.load(directory.appendingPathComponent("lut_format.json")),
                         contains: "is not a ef-keras-raw-timings v1 document")
        assertBenchError(try RawTimings.load(directory.appendingPathComponent("none.json")),
                         contains: "raw-timings file not found")
    }

    func testAResumedFileMustBeTheSameTable() throws {
        let url = fixture("tiny_space/lut.json")
        let lut = try LUTDocument.load(url)
        XCTAssertNoThrow(try lut.header.checkSameTable(as: lut.header, url: url, flag: "--lut-out"))
        var other = lut.header
        other.measurement["date"] = .string("2030-01-01T00:00:00Z")  // provenance, not identity
        XCTAssertNoThrow(try lut.header.checkSameTable(as: other, url: url, flag: "--lut-out"))
        for (section, field) in [("device", "name"), ("runtime", "compute_units"), ("runtime", "threads"),
                                 ("runtime", "precision"), ("runtime", "delegate"), ("runtime", "name")] {
            other = lut.header
            if section == "device" { other.device[field] = .string("iphone13_2") } else { other.runtime[field] = .string("x") }
            assertBenchError(try lut.header.checkSameTable(as: other, url: url, flag: "--lut-out"),
                             contains: "was measured with \(section).\(field) = ")
        }
        other = lut.header
        other.searchSpace = .object([:])
        assertBenchError(try lut.header.checkSameTable(as: other, url: url, flag: "--lut-out"),
                         contains: "another search space")
    }
}

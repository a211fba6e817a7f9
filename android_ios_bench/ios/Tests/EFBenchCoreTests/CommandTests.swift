import EFBenchCore
import Foundation
import XCTest

/// `efbench`'s arguments and the one-line errors it gives before any work starts.
/// (tests/test_ios_swift.py runs the built binary on the same inputs and checks its exit code.)
final class CommandTests: XCTestCase {
    let manifest = fixture("tiny_space/manifest.json").path
    let timings = fixture("tiny_space/raw_timings.json").path

    func run(_ arguments: [String]) throws -> String {
        try EFBenchCommand.parse(arguments).run(commandLine: "efbench test") { _ in }
    }

    func testBadArgumentsAreOneLineErrors() {
        let cases: [([String], String)] = [
            (["--manifest", manifest, "--lut-out", "l.json", "--runs", "0"], "--runs 0 is too small"),
            (["--manifest", manifest, "--lut-out", "l.json", "--runs", "many"], "--runs needs an integer, got many"),
            (["--manifest", manifest, "--lut-out", "l.json", "--warmup", "-1"], "--warmup -1 is too small"),
            (["--manifest", manifest, "--lut-out", "l.json", "--group-size", "0"], "--group-size 0 is too small"),
            (["--manifest", manifest, "--lut-out", "l.json", "--compute-units", "npu"],
             "--compute-units npu is unknown; use one of all, cpuOnly, cpuAndNeuralEngine, cpuAndGPU"),
            (["--manifest", manifest, "--lut-out", "l.json", "--threads", "2"], "unknown flag --threads"),
            (["--manifest", manifest, "--lut-out"], "--lut-out needs a value"),
            (["--manifest", manifest], "--manifest and --lut-out are required"),
            (["--manifest", manifest, "--manifest", manifest, "--lut-out", "l.json"], "--manifest is given twice"),
            (["--manifest", manifest, "--lut-out", "l.json", "stray"], "unexpected argument stray"),
            (["--manifest", manifest, "--lut-out", "l.json", "--timings", timings, "--runs", "500"],
             "--runs sets how models are timed"),
            (["--manifest", manifest, "--lut-out", "l.json", "--raw-out", "./l.json"], "are the same file"),
        ]
        for (arguments, fragment) in cases {
            assertBenchError(try EFBenchCommand.parse(arguments), contains: fragment)
        }
    }

    func testParsesBothModes() throws {
        guard case let .measure(_, lutOut, rawOut, settings) = try EFBenchCommand.parse(
            ["--manifest", manifest, "--lut-out=a.json", "--raw-out", "b.json", "--compute-units", "cpuAndGPU",
             "--runs", "600", "--warmup=0", "--group-size", "3", "--keys", "k1,k2"]) else {
            return XCTFail("not a measure command")
        }
        XCTAssertEqual(lutOut.lastPathComponent, "a.json")
        XCTAssertEqual(rawOut?.lastPathComponent, "b.json")
        XCTAssertEqual(settings.computeUnits, .cpuAndGPU)
        XCTAssertEqual([settings.runs, settings.warmup, settings.groupSize], [600, 0, 3])
        XCTAssertEqual(settings.keys, ["k1", "k2"])
        guard case .summarize = try EFBenchCommand.parse(["--manifest", manifest, "--timings", timings,
                                                         "--lut-out", "a.json"]) else {
            return XCTFail("not a summarize command")
        }
    }

    func testSummarizeWritesTheLUTAndNeverReplacesAFile() throws {
        let directory = try temporaryDirectory(self)
        let out = directory.appendingPathComponent("lut.json")
        let summary = try run(["--manifest", manifest, "--timings", timings, "--lut-out", out.path])
        XCTAssertTrue(summary.hasPrefix("wrote \(out.path): 70 entries, 6 reference models"), summary)
        XCTAssertEqual(try LUTDocument.load(out).json,
                       try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: fixture("tiny_space/lut.json"))))
        let before = try Data(contentsOf: out)
        assertBenchError(try run(["--manifest", manifest, "--timings", timings, "--lut-out", out.path]),
                         contains: "already exists; choose another --lut-out")
        XCTAssertEqual(try Data(contentsOf: out), before)
    }

    func testUnwritableOrMisnamedOutputsAreRefusedBeforeAnyWork() throws {
        let directory = try temporaryDirectory(self)
        let file = directory.appendingPathComponent("a_file.json")
        try write("{}", to: file)
        let cases: [(String, String)] = [
            (directory.appendingPathComponent("missing/lut.json").path, "output directory"),
            (file.appendingPathComponent("lut.json").path, "is not an existing directory; create it or choose"),
            (directory.appendingPathComponent("lut.txt").path, "does not end in .json; rename it, e.g. lut.json"),
            (directory.path + "/", "does not end in .json"),
        ]
        for (path, fragment) in cases {
            assertBenchError(try run(["--manifest", manifest, "--timings", timings, "--lut-out", path]),
                             contains: fragment)
        }
        let folder = directory.appendingPathComponent("folder.json")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false)
        assertBenchError(try run(["--manifest", manifest, "--timings", timings, "--lut-out", folder.path]),
                         contains: "is a directory; choose another --lut-out")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(),
                       ["a_file.json", "folder.json"])
    }

    func testMeasureChecksItsInputsFirst() throws {
        let directory = try temporaryDirectory(self)
        let out = directory.appendingPathComponent("lut.json").path
        assertBenchError(try run(["--manifest", directory.appendingPathComponent("none.json").path,
                                  "--lut-out", out]), contains: "manifest not found or unreadable")
        assertBenchError(try run(["--manifest", manifest, "--lut-out", out]),
                         contains: "76 of 76 CoreML models of the manifest are missing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    #if !canImport(CoreML)
    func testMeasureSaysCoreMLNeedsAnAppleSystem() throws {
        // a copy of the manifest with its model files present (.mlpackage directories)
        let directory = try temporaryDirectory(self)
        let copy = directory.appendingPathComponent("manifest.json")
        try FileManager.default.copyItem(at: fixture("tiny_space/manifest.json"), to: copy)
        let loaded = try Manifest.load(copy)
        for entry in loaded.entries {
            try FileManager.default.createDirectory(at: try XCTUnwrap(loaded.coreMLURL(entry)),
                                                    withIntermediateDirectories: true)
        }
        let out = directory.appendingPathComponent("lut.json")
        assertBenchError(try run(["--manifest", copy.path, "--lut-out", out.path]),
                         contains: "timing CoreML models needs macOS or iOS")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }
    #endif
}

import EFBenchCore
import Foundation
import XCTest

/// A file of the shared fixtures (android_ios_bench/ios/Fixtures, also read by the Python tests).
func fixture(_ path: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fixtures/\(path)").standardized
}

/// A fresh temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("efbench-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// `expression` throws a one-line BenchError whose message contains `fragment`.
func assertBenchError<T>(_ expression: @autoclosure () throws -> T, contains fragment: String,
                         file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try expression(), file: file, line: line) { error in
        guard let error = error as? BenchError else {
            return XCTFail("expected a BenchError, got \(error)", file: file, line: line)
        }
        XCTAssertTrue(error.description.contains(fragment), "\"\(error)\" lacks \"\(fragment)\"", file: file, line: line)
        XCTAssertFalse(error.description.contains("\n"), "not one line: \(error)", file: file, line: line)
    }
}

/// A JSON file written as it is (for malformed inputs).
func write(_ text: String, to url: URL) throws {
    try Data(text.utf8).write(to: url)
}

func readJSONObject(_ url: URL) throws -> [String: JSONValue] {
    try XCTUnwrap(try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url)).objectValue)
}

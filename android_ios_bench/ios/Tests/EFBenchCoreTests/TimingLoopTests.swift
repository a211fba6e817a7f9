import EFBenchCore
import Foundation
import XCTest

/// The timing loop driven by real CPU-bound workloads: its bookkeeping (warm-up, rounds,
/// order, no lost or misattributed samples) and its unit (milliseconds).
final class TimingLoopTests: XCTestCase {
    /// Records which workload ran, in order, and keeps the arithmetic alive.
    final class Recorder {
        var calls: [Int] = []
        var sink = 0.0
    }

    /// `iterations` square roots: work proportional to `iterations`.
    static func spin(_ iterations: Int) -> Double {
        var total = 0.0
        for i in 0..<iterations { total += (Double(i) + 0.5).squareRoot() }
        return total
    }

    func workloads(_ iterations: [Int], _ recorder: Recorder) -> [() throws -> Void] {
        iterations.enumerated().map { index, n in
            { recorder.calls.append(index); recorder.sink += TimingLoopTests.spin(n) }
        }
    }

    func testWarmupThenShuffledRoundsWithEverySampleKept() throws {
        let recorder = Recorder()
        let iterations = [500, 50_000, 500_000, 5_000]  // 10x steps of work: w0 < w3 < w1 < w2
        let (warmup, runs) = (3, 40)
        var progress: [Int] = []
        let times = try timeInterleaved(workloads(iterations, recorder), runs: runs, warmup: warmup) { done, total in
            XCTAssertEqual(total, runs)
            progress.append(done)
        }
        XCTAssertEqual(progress, Array(1...runs))
        // warm-up: each workload `warmup` times, in order; then one call per workload per round
        XCTAssertEqual(Array(recorder.calls.prefix(warmup * 4)), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
        XCTAssertEqual(recorder.calls.count, (warmup + runs) * 4)
        XCTAssertEqual(times.orders.count, runs)
        XCTAssertEqual(Array(recorder.calls.dropFirst(warmup * 4)), times.orders.flatMap { $0 })
        for order in times.orders { XCTAssertEqual(order.sorted(), [0, 1, 2, 3]) }
        XCTAssertGreaterThan(Set(times.orders).count, 1, "40 rounds in one order: not shuffled")
        // no lost samples, each where its workload is: medians rank as the work does
        XCTAssertEqual(times.samples.map(\.count), [runs, runs, runs, runs])
        XCTAssertTrue(times.samples.joined().allSatisfy { $0 > 0 })
        let stats = times.samples.map { TimingStats(milliseconds: $0) }
        XCTAssertEqual(stats.map(\.runs), [runs, runs, runs, runs])
        XCTAssertLessThan(stats[0].median, stats[3].median)
        XCTAssertLessThan(stats[3].median, stats[1].median)
        XCTAssertLessThan(stats[1].median, stats[2].median)
        XCTAssertNotEqual(recorder.sink, 0)
    }

    func testUnshuffledRoundsRunInOrder() throws {
        let recorder = Recorder()
        let times = try timeInterleaved(workloads([10, 10, 10], recorder), runs: 5, warmup: 0, shuffle: false)
        XCTAssertEqual(times.orders, Array(repeating: [0, 1, 2], count: 5))
        XCTAssertEqual(recorder.calls, Array(repeating: [0, 1, 2], count: 5).flatMap { $0 })
    }

    func testSamplesAreMilliseconds() throws {
        // a 3 ms sleep lasts at least 3 ms, and far less than a second
        let times = try timeInterleaved([{ usleep(3_000) }], runs: 3, warmup: 0)
        for sample in times.samples[0] {
            XCTAssertGreaterThanOrEqual(sample, 3.0)
            XCTAssertLessThan(sample, 1_000.0)
        }
    }

    func testAFailingWorkloadStopsTheLoop() {
        struct Failure: Error {}
        var calls = 0
        XCTAssertThrowsError(try timeInterleaved([{ calls += 1; if calls == 4 { throw Failure() } }],
                                                 runs: 10, warmup: 2)) { XCTAssertTrue($0 is Failure) }
        XCTAssertEqual(calls, 4)
    }

    func testBadCountsAreRefused() {
        assertBenchError(try timeInterleaved([{}], runs: 0, warmup: 0), contains: "runs >= 1")
        assertBenchError(try timeInterleaved([{}], runs: 1, warmup: -1), contains: "warmup >= 0")
    }
}

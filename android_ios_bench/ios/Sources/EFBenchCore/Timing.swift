/// The harness' timing loop, the Swift twin of Python's `ef_keras.timing.time_interleaved`:
/// every workload is called `warmup` times untimed, then `runs` rounds follow in which each
/// workload is called and timed once, in a new random order per round. On a busy or
/// throttling device, slow drift then spreads over all workloads alike instead of biasing
/// whichever ran last, and no workload always follows the same neighbour.
///
/// The workloads are closures, so the loop is the same for CoreML predictions (on Apple's
/// systems) and for the CPU-bound workloads its tests run anywhere.
public struct InterleavedTimes {
    /// Per-call milliseconds, `samples[w][r]` = workload `w` in round `r`.
    public let samples: [[Double]]
    /// The order the workloads ran in each round (a permutation of their indices).
    public let orders: [[Int]]
}

/// Times `workloads` interleaved (see `InterleavedTimes`); only the call itself is timed, with
/// the monotonic `ContinuousClock`. `progress(done, runs)` is called after every round.
public func timeInterleaved(
    _ workloads: [() throws -> Void], runs: Int, warmup: Int, shuffle: Bool = true,
    progress: ((Int, Int) -> Void)? = nil
) throws -> InterleavedTimes {
    guard runs >= 1, warmup >= 0 else {
        throw BenchError("need runs >= 1 and warmup >= 0, got runs \(runs), warmup \(warmup)")
    }
    for workload in workloads {
        for _ in 0..<warmup { try workload() }
    }
    let clock = ContinuousClock()
    var samples = [[Double]](repeating: [], count: workloads.count)
    var orders: [[Int]] = []
    for index in samples.indices { samples[index].reserveCapacity(runs) }
    for round in 1...runs {
        let order = shuffle ? Array(workloads.indices).shuffled() : Array(workloads.indices)
        for index in order {
            let elapsed = try clock.measure { try workloads[index]() }
            samples[index].append(milliseconds(elapsed))
        }
        orders.append(order)
        progress?(round, runs)
    }
    return InterleavedTimes(samples: samples, orders: orders)
}

func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e3 + Double(attoseconds) * 1e-15
}

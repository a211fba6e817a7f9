"""The one timing loop and the one set of timing statistics of the project.

    from ef_keras.timing import summarize, time_interleaved
    times = time_interleaved({"a": run_a, "b": run_b}, runs=100, warmup=5)
    summarize(times["a"])   # {"median_ms": ..., "p10_ms": ..., ...}

Every latency figure in the repository (the LUT harnesses, `deploy`'s reports, the benchmark
scripts, the iOS harness' Swift twin) is computed from raw per-call timings with `summarize`,
so a "p10" means the same thing everywhere: NumPy's default percentile (linear interpolation
between closest ranks, Hyndman & Fan type 7), on the milliseconds of each call.

Why interleaved and shuffled: on a shared machine background load comes and goes. Running
model A, then B, then C, then A again (in a fresh random order every round) spreads that
load over all models alike, so ratios between models of one run are fairer than their
absolute milliseconds, and no model always runs right after the same neighbour.

This module imports NumPy only, so a harness that needs no TensorFlow can use it.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np

#: The percentiles every summary reports (the `p10_ms`, `median_ms` and `p90_ms` keys).
PERCENTILES = (10, 50, 90)
#: The statistic definitions, as stated in result files and the README.
DEFINITIONS = {
    "percentile": "numpy.percentile, default method 'linear' (Hyndman & Fan type 7), of the per-call ms",
    "median_ms": "50th percentile", "p10_ms": "10th percentile", "p90_ms": "90th percentile",
    "mean_ms": "arithmetic mean", "std_ms": "population standard deviation (ddof=0)",
    "min_ms": "smallest call", "max_ms": "largest call",
}


def percentile(values_ms: Sequence[float], q) -> float | np.ndarray:
    """The project's percentile (NumPy's default, linear) of per-call timings."""
    return np.percentile(np.asarray(values_ms, dtype=np.float64), q)


def summarize(times_ms: Sequence[float]) -> dict:
    """Median, p10, p90, mean, std, min, max (ms) and the number of timed calls, unrounded."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"summarize needs a non-empty 1-D list of timings, got shape {t.shape}")
    p10, median, p90 = percentile(t, PERCENTILES)
    return {"median_ms": float(median), "p10_ms": float(p10), "p90_ms": float(p90), "mean_ms": float(t.mean()),
            "std_ms": float(t.std()), "min_ms": float(t.min()), "max_ms": float(t.max()), "runs": int(t.size)}


def print_every(rounds: int) -> Callable[[int, int], None]:
    """A `progress` callback for `time_interleaved` that prints "round i/n" every `rounds` rounds."""
    return lambda done, total: done % rounds == 0 and print(f"round {done}/{total}", flush=True)


def time_interleaved(runners: Mapping[str, Callable[[], object]], runs: int, warmup: int = 5, *,
                     shuffle: bool = True, seed: int = 0,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """{label: per-call ms (runs,)}: `warmup` untimed calls of each runner, then `runs` rounds.

    Each round calls every runner once, in a new random order (`shuffle`, seeded) or in the
    mapping's order. Only the call itself is timed (`time.perf_counter_ns`). `progress(done,
    runs)` is called after each round.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    labels = list(runners)
    calls = [runners[label] for label in labels]
    for fn in calls:
        for _ in range(warmup):
            fn()
    rng = np.random.default_rng(seed)
    times = np.zeros((len(calls), runs))
    for r in range(runs):
        order = rng.permutation(len(calls)) if shuffle else range(len(calls))
        for i in order:
            start = time.perf_counter_ns()
            calls[i]()
            times[i, r] = (time.perf_counter_ns() - start) / 1e6
        if progress is not None:
            progress(r + 1, runs)
    return {label: times[i] for i, label in enumerate(labels)}

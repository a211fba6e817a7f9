"""The one timing loop of the latency benchmarks: every model once per round, all rounds interleaved.

On this shared machine background load comes and goes; running model A, then B, then C,
then A again ... spreads it over all models alike, so ratios between models of one run
are fairer than their absolute milliseconds. Used by deploy_latency.py, int8_latency.py
and model_latency.py (which interleaves Keras and timm calls the same way).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def time_interleaved(runners: dict[str, Callable[[], object]], runs: int, warmup: int,
                     progress_every: int = 0) -> dict[str, list[float]]:
    """{label: [ms, ...]}: `warmup` untimed calls of each runner, then `runs` rounds that call every runner once."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in runners}
    for r in range(runs):
        for label, fn in runners.items():
            start = time.perf_counter()
            fn()
            times[label].append((time.perf_counter() - start) * 1e3)
        if progress_every and (r + 1) % progress_every == 0:
            print(f"round {r + 1}/{runs}", flush=True)
    return times


def stats(ms: list[float]) -> dict[str, float]:
    """median, p10 (a less load-sensitive figure), min and p90 of one model's timings, in ms."""
    t = sorted(ms)
    return {"median_ms": round(statistics.median(t), 2), "p10_ms": round(t[len(t) // 10], 2),
            "min_ms": round(t[0], 2), "p90_ms": round(t[int(0.9 * (len(t) - 1))], 2), "runs": len(t)}

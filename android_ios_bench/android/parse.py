"""Parser for the console output of TensorFlow Lite's `benchmark_model` tool.

`benchmark_model` (tensorflow/lite/tools/benchmark) prints, per run:

    Running benchmark for at least 10 iterations and at least 0.5 seconds ...
    count=193 first=4873 curr=2557 min=2491 max=4873 avg=2593.9 std=178 p5=2503 median=2571 p95=2702
    Running benchmark for at least 100 iterations and at least 1 seconds ...
    count=391 first=2566 curr=2549 min=2487 max=3318 avg=2560.14 std=61 p5=2499 median=2548 p95=2641
    Inference timings in us: Init: 11482, First inference: 4873, Warmup (avg): 2593.9, Inference (avg): 2560.14

The first `count=` line summarises the warm-up runs, the second the timed runs (values in
microseconds; `Stat<int64_t>::OutputToStream`). The format changed over the years and this
parser accepts every variant found in the tool's history:

- the summary line: "Inference timings in us: Init: …, First inference: …, Warmup (avg): …,
  Inference (avg): …" (TF 2.2 on), "Average inference timings in us: Warmup: …, Init: …,
  Inference: …" (TF 2.0/2.1) and "…, no stats: …" (TF 1.x);
- stat lines with or without " p5=… median=… p95=…" (StatWithPercentiles, recent versions),
  the single-run form "count=1 curr=…" and "count=N curr=…(all same)";
- an "INFO: " prefix (tools/logging.h) or none (the older tools/benchmark/logging.h), CRLF
  line ends from `adb shell`, averages in scientific notation ("1.02073e+06").

Anything else is refused with a `BenchmarkOutputError` whose message is one line.
"""

from __future__ import annotations

import dataclasses
import re

from ef_keras.errors import EfKerasError

__all__ = ["BenchmarkOutputError", "RunStats", "BenchmarkModelResult", "parse_benchmark_output",
           "parse_stat_line"]

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_STAT_FULL = re.compile(
    rf"count=(\d+) first={_NUM} curr={_NUM} min={_NUM} max={_NUM} avg={_NUM} std={_NUM}")
_STAT_SAME = re.compile(rf"count=(\d+) curr={_NUM}(\(all same\))?")
_STAT_EMPTY = re.compile(r"count=0\s*$")
_PERCENTILES = re.compile(rf"p5={_NUM} median={_NUM} p95={_NUM}")
_RUNNING = re.compile(r"Running benchmark for (?:at least )?(\d+) iterations")
_SUMMARY_NEW = re.compile(
    rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, Warmup \(avg\): {_NUM}, "
    rf"Inference \(avg\): {_NUM}")
_SUMMARY_OLD = re.compile(
    rf"Average inference timings in us: Warmup: {_NUM}, Init: {_NUM}, (Inference|no stats): {_NUM}")
_GRAPH = re.compile(r"Graph: \[(.*)\]")
_THREADS = re.compile(r"(?:#threads used for CPU inference|Num threads): \[(-?\d+)\]")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): {_NUM}")
_APPLIED = re.compile(
    r"Explicitly applied (\S+) delegate, and the model graph will be (completely|partially) executed "
    r"by the delegate(?: w/ (\d+) delegate kernels)?")
_APPLIED_OLD = re.compile(r"Applied (\S+) delegate, and the model graph will be (completely|partially) executed")
_NOT_APPLIED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_XNNPACK_DEFAULT = re.compile(r"Created TensorFlow Lite XNNPACK delegate for CPU")
_LOG_PREFIX = re.compile(r"^(?:INFO|WARN): ")
_ERROR = re.compile(r"^(?:ERROR|FATAL): (.*)$")
# The averages in the summary and the stat line are both printed with 6 significant digits.
_AVG_RTOL = 1e-4


class BenchmarkOutputError(EfKerasError):
    """`benchmark_model` output that is an error report or not recognisable (one-line message)."""


@dataclasses.dataclass(frozen=True)
class RunStats:
    """One `count=…` line: statistics over a sequence of runs, in microseconds.

    `p5_us`/`median_us`/`p95_us` are only printed by recent versions of the tool; older ones
    give `avg_us`/`std_us` only. For a single run (or all runs equal) every field is `curr`.
    """

    count: int
    first_us: float
    curr_us: float
    min_us: float
    max_us: float
    avg_us: float
    std_us: float
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None

    @property
    def has_percentiles(self) -> bool:
        return self.median_us is not None


@dataclasses.dataclass(frozen=True)
class BenchmarkModelResult:
    """Everything the harness keeps from one `benchmark_model` invocation."""

    format: str  # "timings" (TF 2.2 on), "average" (TF 2.0/2.1) or "nostats" (TF 1.x)
    init_us: float
    first_inference_us: float | None
    warmup: RunStats
    inference: RunStats
    graph: str | None = None
    num_threads: int | None = None
    model_size_mb: float | None = None
    xnnpack_default: bool = False
    # delegate name -> "complete", "partial:<kernels>" or "none" as reported by the tool
    delegation: tuple[tuple[str, str], ...] = ()

    @property
    def fully_delegated(self) -> bool:
        """True when at least one delegate was applied and it runs the whole graph."""
        return any(state == "complete" for _, state in self.delegation)


def _f(text: str) -> float:
    return float(text)


def parse_stat_line(line: str) -> RunStats | None:
    """Parses one `Stat::OutputToStream` line; None when the line holds no statistics."""
    m = _STAT_FULL.search(line)
    if m:
        count = int(m.group(1))
        first, curr, lo, hi, avg, std = (_f(g) for g in m.groups()[1:])
    else:
        m = _STAT_SAME.search(line)
        if not m:
            if _STAT_EMPTY.search(line):
                return RunStats(0, *([float("nan")] * 6))
            return None
        count, curr = int(m.group(1)), _f(m.group(2))
        first = lo = hi = avg = curr
        std = 0.0
    p = _PERCENTILES.search(line, m.end())
    p5, median, p95 = (_f(g) for g in p.groups()) if p else (None, None, None)
    return RunStats(count, first, curr, lo, hi, avg, std, p5, median, p95)


def _error_summary(lines: list[str]) -> str | None:
    errors = [m.group(1).strip() for m in (_ERROR.match(line) for line in lines) if m]
    errors = [e for e in errors if e != "Benchmarking failed."] or errors
    return "; ".join(errors[:2]) if errors else None


def _first_text(lines: list[str]) -> str:
    for line in lines:
        if line.strip():
            text = line.strip()
            return text if len(text) <= 120 else text[:117] + "..."
    return "<empty>"


def parse_benchmark_output(text: str, *, source: str = "benchmark_model output") -> BenchmarkModelResult:
    """Parses the full stdout+stderr of one `benchmark_model` run.

    Args:
      text: the captured console output.
      source: a name for the output in error messages (e.g. the model file).

    Raises:
      BenchmarkOutputError: the tool reported an error, or the output is not recognisable.
    """
    lines = [_LOG_PREFIX.sub("", line.strip()) for line in text.splitlines()]
    summary = None
    stats: list[RunStats] = []
    expect_stat = False
    for line in lines:
        if _RUNNING.search(line):
            expect_stat = True
            continue
        if expect_stat:
            stat = parse_stat_line(line)
            if stat is not None:
                stats.append(stat)
                expect_stat = False
                continue
        m_new, m_old = _SUMMARY_NEW.search(line), _SUMMARY_OLD.search(line)
        if m_new or m_old:
            summary = (m_new, m_old)

    if summary is None:
        reason = _error_summary(lines)
        if reason:
            raise BenchmarkOutputError(f"benchmark_model failed on {source}: {reason}")
        raise BenchmarkOutputError(
            f"unrecognised {source}: no 'Inference timings in us' line (first line: {_first_text(lines)!r}); "
            "check that the binary is TensorFlow Lite's benchmark_model and that it ran to the end")
    if len(stats) != 2:
        raise BenchmarkOutputError(
            f"unrecognised {source}: expected a warm-up and a timed 'count=' line after the "
            f"'Running benchmark' lines, found {len(stats)}")

    m_new, m_old = summary
    if m_new:
        init_us, first_us, warm_avg, inf_avg = (_f(g) for g in m_new.groups())
        fmt = "timings"
    else:
        warm_avg, init_us, inf_avg = _f(m_old.group(1)), _f(m_old.group(2)), _f(m_old.group(4))
        first_us = stats[0].first_us
        fmt = "average" if m_old.group(3) == "Inference" else "nostats"
    warmup, inference = stats
    if inference.count == 0:
        raise BenchmarkOutputError(f"{source} has no timed runs (count=0; was --dry_run or --num_runs=0 given?)")
    for name, summary_avg, stat in (("Warmup", warm_avg, warmup), ("Inference", inf_avg, inference)):
        if abs(summary_avg - stat.avg_us) > _AVG_RTOL * max(abs(stat.avg_us), 1.0):
            raise BenchmarkOutputError(
                f"inconsistent {source}: {name} average {summary_avg:g} us in the summary line but "
                f"{stat.avg_us:g} us in its 'count=' line")

    graph = next((m.group(1) for m in map(_GRAPH.search, lines) if m), None)
    threads = next((int(m.group(1)) for m in map(_THREADS.search, lines) if m), None)
    size = next((_f(m.group(1)) for m in map(_MODEL_SIZE.search, lines) if m), None)
    delegation = []
    for line in lines:
        m = _APPLIED.search(line) or _APPLIED_OLD.search(line)
        if m:
            kernels = m.group(3) if m.re is _APPLIED else None
            state = "complete" if m.group(2) == "completely" else f"partial:{kernels or '?'}"
            delegation.append((m.group(1), state))
        elif (m := _NOT_APPLIED.search(line)):
            delegation.append((m.group(1), "none"))
    return BenchmarkModelResult(
        format=fmt, init_us=init_us, first_inference_us=first_us, warmup=warmup, inference=inference,
        graph=graph, num_threads=threads, model_size_mb=size,
        xnnpack_default=any(_XNNPACK_DEFAULT.search(line) for line in lines),
        delegation=tuple(delegation))

"""Which benchmarks exist, how `run_all` runs them, and which README regions their result files fill.

To add a benchmark: give its script `define_flags()` (with a `--results-dir` flag), a
`main(argv)` that records with `ef_keras.provenance` and a `render(result) -> str`; then add
one `Benchmark` (its full and quick arguments, the files it writes) and one `Region` per README
table below, and put `<!-- results:NAME begin -->` / `<!-- results:NAME end -->` where the
table goes in README.md. `python -m benchmarks.report` fills the region; the test
`tests/test_results_report.py` fails while README.md and the committed files disagree.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from benchmarks import (backend_latency, build_time, dense_latency, dense_task, deploy_latency, digits_training,
                        import_cost, install_time, int8_agreement, int8_latency, lut_validation, main_job, model_latency,
                        op_profile, run_all, search_quality, searched_latency, supernet_modes, train_throughput,
                        worker_throughput)
from ef_keras import timing
from ef_keras.errors import EfKerasError


class RegistryError(EfKerasError):
    """The registry contradicts itself (a name registered twice, a region no benchmark feeds)."""


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark script and the arguments `run_all` gives it (besides `--results-dir`)."""

    module: str                  # run as `python -m MODULE`
    full: tuple[str, ...]        # the run the committed result comes from (the README's command)
    quick: tuple[str, ...] | None  # the reduced run of `run_all --quick`; None: no reduced size exists
    results: tuple[str, ...]     # files it writes into the results directory


@dataclasses.dataclass(frozen=True)
class Region:
    """A README region (`<!-- results:NAME begin/end -->`) rendered from one result file."""

    name: str
    result: str | None           # file in the results directory; None: rendered from code alone
    render: Callable[[object], str]


def render_statistics(_=None) -> str:
    """The statistic definitions of every timing in the project (`ef_keras.timing.DEFINITIONS`)."""
    d = timing.DEFINITIONS
    others = ", ".join(f"`{key}` {text}" for key, text in d.items() if key != "percentile")
    return (f"Every percentile in these results is {d['percentile']}: {others} "
            "(`ef_keras.timing.DEFINITIONS`, stated in every result file's header).")


BENCHMARKS = (
    Benchmark("benchmarks.build_time", full=("--rounds", "5"), quick=("--rounds", "1", "--models", "l1"),
              results=(build_time.RESULT,)),
    Benchmark("benchmarks.model_latency", full=("--runs", "30"), quick=("--runs", "10", "--warmup", "2", "--rss-models", "l7"),
              results=(model_latency.RESULT, "model_latency.png")),
    Benchmark("benchmarks.dense_latency", full=(), quick=("--size", "256", "--runs", "5", "--warmup", "1"),
              results=(dense_latency.RESULT,)),
    Benchmark("benchmarks.deploy_latency", full=(),
              quick=("--variants", "l1", "--precisions", "fp32,int8", "--onnx-variants", "l1", "--mobilenet-alphas",
                     "1.4", "--runs", "10", "--warmup", "2"),
              results=(deploy_latency.RESULT, deploy_latency.PLOT)),
    Benchmark("benchmarks.int8_latency", full=(),
              quick=("--variants", "l1,s0", "--mobilenet-alphas", "1.0", "--mobilenet-v3=", "--runs", "10",
                     "--warmup", "2"),
              results=(int8_latency.RESULT, int8_latency.PLOT)),
    Benchmark("benchmarks.op_profile", full=(), quick=("--variants", "l1", "--precisions", "fp32", "--runs", "5",
                                                       "--warmup", "1"),
              results=(op_profile.RESULT, op_profile.PLOT)),
    Benchmark("benchmarks.train_throughput", full=(),
              quick=("--batch-size", "8", "--image-size", "96", "--rounds", "2", "--warmup", "1",
                     "--pipeline-batches", "2"),
              results=(train_throughput.RESULT,)),
    Benchmark("benchmarks.digits_training", full=(), quick=("--epochs", "3"), results=(digits_training.RESULT,)),
    Benchmark("benchmarks.dense_task", full=("--tasks", "seg"),
              quick=("--tasks", "seg", "--seconds", "20", "--train", "256", "--val", "32"),
              results=(dense_task.RESULT,)),
    Benchmark("benchmarks.import_cost", full=("--runs", "15"), quick=("--runs", "3"), results=(import_cost.RESULT,)),
    # Five fresh venvs with empty pip caches (~25 min at load 10): no reduced size.
    Benchmark("benchmarks.install_time", full=(), quick=None, results=(install_time.RESULT,)),
    # The search's benchmarks train supernets and networks: tens of minutes to hours, no reduced size that
    # would still answer their question, so `run_all --quick` leaves them out.
    Benchmark("benchmarks.supernet_modes", full=("--work-dir", "runs/supernet_modes"), quick=None,
              results=(supernet_modes.RESULT,)),
    Benchmark("benchmarks.main_job", full=(), quick=None, results=(main_job.RESULT,)),
    # Times the main job's answer beside the LUT's 37 reference models (exported once into ~/.cache, tens of
    # minutes on this host); it is re-run after the main job, not by `run_all --quick`.
    Benchmark("benchmarks.searched_latency", full=(), quick=None, results=(searched_latency.RESULT,)),
    # Agreement needs a trained model: the README's first command trains it (`ef_keras.train`, minutes), and an
    # untrained or barely trained model's agreement says nothing, so there is no quick size.
    Benchmark("benchmarks.int8_agreement",
              full=("--model", "runs/fm/model.keras", "--data", "embedded", "--images", "5000",
                    "--gelu-forms", "tanh,sigmoid"),
              quick=None, results=(int8_agreement.RESULT,)),
    Benchmark("benchmarks.search_quality", full=("--supernet", "runs/main_job/supernet"), quick=None,
              results=(search_quality.RESULT, search_quality.PLOT)),
    # The latency-table session times 700 models and 18 Δ pairs (about 40 min once the models are exported)
    # and has no reduced size that would still answer its question; the README's ceiling and instruction
    # counts come from the later `--retest`, `--other-session` and `--callgrind` runs of the same session.
    Benchmark("benchmarks.lut_validation", full=("--write-lut", "android_ios_bench/luts/host_x86_2core_fp32.json"),
              quick=None, results=(lut_validation.RESULT, lut_validation.PLOT)),
    # Its JAX worker needs a Python with jax (the script's own, or --python).
    Benchmark("benchmarks.backend_latency", full=("--runs", "30"), quick=("--runs", "5", "--warmup", "1"),
              results=(backend_latency.RESULT, backend_latency.PLOT)),
    # Fresh training processes per run, a two-worker run several minutes on this machine.
    Benchmark("benchmarks.worker_throughput", full=("--steps", "10", "--rounds", "2"),
              quick=("--steps", "5", "--rounds", "1"), results=(worker_throughput.RESULT, worker_throughput.PLOT)),
)

_REGIONS = (
    Region("statistics", None, render_statistics),
    Region("quick_run", run_all.result_file(quick=True), run_all.render),
    Region("model_latency", model_latency.RESULT, model_latency.render),
    Region("deploy_latency", deploy_latency.RESULT, deploy_latency.render),
    Region("op_profile", op_profile.RESULT, op_profile.render),
    Region("int8_agreement", int8_agreement.RESULT, int8_agreement.render),
    Region("int8_latency", int8_latency.RESULT, int8_latency.render),
    Region("searched_latency", searched_latency.RESULT, searched_latency.render),
    Region("train_throughput", train_throughput.RESULT, train_throughput.render),
    Region("digits_training", digits_training.RESULT, digits_training.render),
    Region("import_cost", import_cost.RESULT, import_cost.render),
    Region("install_time", install_time.RESULT, install_time.render),
    Region("build_time", build_time.RESULT, build_time.render),
    Region("dense_task", dense_task.RESULT, dense_task.render),
    Region("dense_latency", dense_latency.RESULT, dense_latency.render),
    Region("supernet_modes", supernet_modes.RESULT, supernet_modes.render),
    Region("main_job", main_job.RESULT, main_job.render),
    Region("search_quality", search_quality.RESULT, search_quality.render),
    Region("lut_validation", lut_validation.RESULT, lut_validation.render),
    Region("backend_latency", backend_latency.RESULT, backend_latency.render),
    Region("worker_throughput", worker_throughput.RESULT, worker_throughput.render),
)


def _index(items, key, what):
    index = {}
    for item in items:
        if key(item) in index:
            raise RegistryError(f"{what} {key(item)!r} is registered twice in benchmarks/registry.py; keep one")
        index[key(item)] = item
    return index


def check(benchmarks=BENCHMARKS, regions=_REGIONS) -> dict[str, Region]:
    """The regions by name, after checking that names are unique and every region's file has a benchmark."""
    _index(benchmarks, lambda b: b.module, "benchmark")
    by_name = _index(regions, lambda r: r.name, "region")
    written = {f for b in benchmarks for f in b.results} | {run_all.result_file(q) for q in (True, False)}
    for region in regions:
        if region.result is not None and region.result not in written:
            raise RegistryError(f"region {region.name!r} reads {region.result}, which no registered benchmark writes")
    return by_name


REGIONS = check()


def producer(result_file: str) -> str:
    """The command that writes `result_file`."""
    maker = next((b for b in BENCHMARKS if result_file in b.results), None)
    return f"python -m {maker.module}" if maker else "python -m benchmarks.run_all --quick"

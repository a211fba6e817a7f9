"""`python -m android_ios_bench.host`: export (if needed) + measure, as one library call `build_lut`."""

from __future__ import annotations

import os
import sys
import time

from android_ios_bench.lut import LUTError
from android_ios_bench.units import SearchSpace

MIN_RUNS = 50


def default_models_dir(space: SearchSpace, precision: str) -> str:
    """Where exported micro-models are cached between runs (one directory per space/precision)."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    widths = "-".join(str(w) for w in space.max_widths)
    return os.path.join(cache, "ef_keras", "lut_models",
                        f"s{space.input_size}_w{widths}_g{space.downsample_points}_{precision}")


def build_lut(lut_out: str, *, manifest: str | None = None, space: SearchSpace = SearchSpace(),
              models_dir: str | None = None, threads: int = 2, precision: str = "fp32", warmup: int = 5,
              runs: int = MIN_RUNS, group_size: int = 12, command: str | None = None, log=None) -> dict:
    """Exports the search space's micro-models unless `manifest` is given, then measures them into `lut_out`."""
    from android_ios_bench.export import MANIFEST_NAME, export_search_space
    from android_ios_bench.host.harness import measure_manifest

    log = log or (lambda msg: None)
    if manifest is None:
        models_dir = models_dir or default_models_dir(space, precision)
        log(f"exporting micro-models into {models_dir} (resumable)")
        export_search_space(models_dir, space, precision=precision,
                            progress=lambda d, n, k, s: (d == n or d % 25 == 0) and log(f"[export {d}/{n}] {k}"))
        manifest = os.path.join(models_dir, MANIFEST_NAME)
    start = time.time()

    def progress(done, total, key, stats):
        if done == total or done % 10 == 0:
            log(f"[measure {done}/{total}] {key}: median {stats['median_ms']:.3f} ms "
                f"(p10 {stats['p10_ms']:.3f}, p90 {stats['p90_ms']:.3f}) {time.time() - start:.0f}s")
    return measure_manifest(manifest, lut_out, threads=threads, precision=precision, warmup=warmup, runs=runs,
                            group_size=group_size, command=command, progress=progress)


def main():
    from absl import flags

    from ef_keras.checks import parse_int_list
    from ef_keras.errors import InputError, run as run_cli
    flags.DEFINE_string("lut-out", None, "LUT JSON to write (resumed if it exists)", required=True)
    flags.DEFINE_string("manifest", None, "manifest.json from android_ios_bench.export (default: export the "
                                          "search space into --models-dir first)")
    flags.DEFINE_string("models-dir", None, "where to export micro-models (default ~/.cache/ef_keras/lut_models/...)")
    flags.DEFINE_integer("threads", 2, "LiteRT CPU threads", lower_bound=1)
    flags.DEFINE_enum("precision", "fp32", ["fp32", "fp16", "int8"], "precision of the micro-models")
    flags.DEFINE_integer("warmup", 5, "untimed invocations per model", lower_bound=0)
    flags.DEFINE_integer("runs", MIN_RUNS, f"timed invocations per model (>= {MIN_RUNS})")
    flags.DEFINE_integer("group-size", 12, "models loaded and interleaved at once", lower_bound=1)
    flags.DEFINE_integer("input-size", 224, "search-space input size (without --manifest)", lower_bound=32)
    flags.DEFINE_list("max-widths", [str(w) for w in SearchSpace().max_widths],
                      "search-space max width per stage (without --manifest)")
    flags.DEFINE_integer("downsample-points", SearchSpace().downsample_points,
                         "measured widths per axis of each downsample grid (without --manifest)", lower_bound=1)
    F = flags.FLAGS

    def measure(argv):
        del argv
        if F.runs < MIN_RUNS:
            raise InputError(f"--runs must be >= {MIN_RUNS} (got {F.runs})")
        space = SearchSpace(input_size=F["input-size"].value,
                            max_widths=parse_int_list("--max-widths", F["max-widths"].value),
                            downsample_points=F["downsample-points"].value)
        out = F["lut-out"].value
        doc = build_lut(out, manifest=F.manifest, space=space, models_dir=F["models-dir"].value,
                        threads=F.threads, precision=F.precision, warmup=F.warmup, runs=F.runs,
                        group_size=F["group-size"].value, command=" ".join(["python -m android_ios_bench.host"]
                                                                          + sys.argv[1:]),
                        log=lambda m: print(m, file=sys.stderr, flush=True))
        print(f"wrote {out} ({len(doc['entries'])} entries)")
    run_cli(measure, user_errors=(LUTError,))

"""The latency-analysis CLI (`ef-analysis`, `python -m android_ios_bench.analysis`): flags -> `run_analysis` /
`export_analysis`."""

from __future__ import annotations

import os
import shlex
import sys

from absl import flags

MIN_RUNS = 50


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv):
    del argv
    F = flags.FLAGS
    from ef_keras.errors import InputError

    if F.runs < MIN_RUNS:
        raise InputError(f"--runs {F.runs} is too few for a median; use >= {MIN_RUNS}")
    from android_ios_bench.analysis import default_models_dir, export_analysis, run_analysis

    if F["export-only"].value:
        models_dir = F["models-dir"].value or default_models_dir(F.reduced, "fp32")
        path = export_analysis(models_dir, reduced=F.reduced, coreml=F.coreml, log=_log)
        print(f"wrote {path}: measure it with android_ios_bench.android / the iOS efbench tool / "
              "android_ios_bench.host, then run this tool with --lut-from")
        return
    if not F.out:
        raise InputError("--out DIR is required (where the table, chart and verdicts go)")
    result = run_analysis(F.out, lut_from=F["lut-from"].value, backend=F.backend, reduced=F.reduced,
                          models_dir=F["models-dir"].value, threads=F.threads, warmup=F.warmup, runs=F.runs,
                          command="python -m android_ios_bench.analysis " + shlex.join(sys.argv[1:]), log=_log)
    print(open(result["paths"]["md"]).read())
    print("wrote " + ", ".join(os.path.relpath(p) for p in result["paths"].values()))


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    flags.DEFINE_string("out", None, "output directory for latency_analysis.{csv,md,png,json} (and the host LUT)")
    flags.DEFINE_enum("backend", "tflite-host", ["tflite-host"], "where to measure when no --lut-from is given")
    flags.DEFINE_string("lut-from", None, "report a LUT measured by the host/Android/iOS harness on the analysis "
                                          "manifest instead of measuring here")
    flags.DEFINE_bool("export-only", False, "only export the micro-models + manifest into --models-dir (for a "
                                            "device harness)")
    flags.DEFINE_string("models-dir", None,
                        "where exported micro-models live (default ~/.cache/ef_keras/analysis_models)")
    flags.DEFINE_bool("coreml", False, "with --export-only: also export .mlpackage files for the iOS harness")
    flags.DEFINE_bool("reduced", False, "tiny shapes (a fast smoke run; stored under their own keys)")
    flags.DEFINE_integer("threads", 2, "LiteRT CPU threads", lower_bound=1)
    flags.DEFINE_integer("warmup", 20, "untimed invocations per micro-model", lower_bound=0)
    flags.DEFINE_integer("runs", 200, f"timed invocations per micro-model (>= {MIN_RUNS})")


def run():
    """Console entry point (`ef-analysis`, `python -m android_ios_bench.analysis`)."""
    from android_ios_bench.lut import LUTError
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main, user_errors=(LUTError,))

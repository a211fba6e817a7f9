"""`python -m android_ios_bench.android`: absl flags -> `measure_manifest_android`."""

from __future__ import annotations

import shlex
import sys

from absl import flags

MIN_RUNS = 50



def main(argv):
    del argv
    from android_ios_bench.android import AndroidSettings, measure_manifest_android
    from ef_keras.errors import InputError

    F = flags.FLAGS
    if F["num-runs"].value < MIN_RUNS:
        raise InputError(f"--num-runs {F['num-runs'].value} is too few for a median; use >= {MIN_RUNS}")
    settings = AndroidSettings(threads=F.threads, use_gpu=F["use-gpu"].value, use_nnapi=F["use-nnapi"].value,
                               warmup_runs=F["warmup-runs"].value, num_runs=F["num-runs"].value, rounds=F.rounds,
                               extra_args=tuple(F["benchmark-arg"].value))

    def progress(done, total, key, stats):
        print(f"[{done}/{total}] {key}: median {stats['median_ms']:.3f} ms ({stats['runs']} runs)",
              file=sys.stderr, flush=True)

    doc = measure_manifest_android(F.manifest, F["benchmark-binary"].value, F["lut-out"].value, settings=settings,
                                   serial=F.serial, adb=F.adb, keys=F.keys, progress=progress,
                                   command="python -m android_ios_bench.android " + shlex.join(sys.argv[1:]))
    print(f"wrote {F['lut-out'].value}: {len(doc['entries'])} entries ({doc['device']['name']})")


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    flags.DEFINE_string("manifest", None, "manifest.json from android_ios_bench.export (or the analysis --export-only)",
                        required=True)
    flags.DEFINE_string("benchmark-binary", None, "TensorFlow Lite benchmark_model built for the phone's ABI",
                        required=True)
    flags.DEFINE_string("lut-out", None, "LUT JSON to write (resumed if it exists; raw outputs in LUT.records/)",
                        required=True)
    flags.DEFINE_bool("use-gpu", False, "run with the GPU delegate (--use_gpu=true)")
    flags.DEFINE_bool("use-nnapi", False, "run with the NNAPI delegate (--use_nnapi=true)")
    flags.DEFINE_integer("threads", 4, "CPU threads (--num_threads)", lower_bound=1)
    flags.DEFINE_string("serial", None, "adb serial of the phone when several are attached")
    flags.DEFINE_string("adb", None, "adb executable (default: adb on PATH)")
    flags.DEFINE_integer("warmup-runs", 10, "benchmark_model --warmup_runs", lower_bound=0)
    flags.DEFINE_integer("num-runs", 100, f"benchmark_model --num_runs (>= {MIN_RUNS})")
    flags.DEFINE_integer("rounds", 1, "benchmark every model this many times, in shuffled rounds", lower_bound=1)
    flags.DEFINE_multi_string("benchmark-arg", [],
                              "extra benchmark_model flag, e.g. --benchmark-arg=--use_xnnpack=false")
    flags.DEFINE_list("keys", None, "measure only these manifest keys")


def run():
    """Entry point of `python -m android_ios_bench.android`."""
    from android_ios_bench.lut import LUTError
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main, user_errors=(LUTError,))


if __name__ == "__main__":
    run()

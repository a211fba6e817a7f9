"""Android harness: TensorFlow Lite's `benchmark_model` over adb, parsed into the LUT format.

    python -m android_ios_bench.android --manifest M/manifest.json --benchmark-binary benchmark_model \
        --lut-out pixel7_cpu4.json [--threads 4 | --use-gpu | --use-nnapi] [--serial S]

`parse` reads the tool's console output (every format version since TF 1.13), `adb` wraps the
adb command line, `harness` runs the manifest on the phone and writes the LUT (resumable).
"""

from android_ios_bench.android.adb import Adb, AndroidError, find_adb
from android_ios_bench.android.harness import (RUNTIME_NAME, AndroidSettings, benchmark_args,
                                               measure_manifest_android, stats_from_results)
from android_ios_bench.android.parse import (BenchmarkModelResult, BenchmarkOutputError, RunStats,
                                             parse_benchmark_output)

__all__ = ["Adb", "AndroidError", "find_adb", "RUNTIME_NAME", "AndroidSettings", "benchmark_args",
           "measure_manifest_android", "stats_from_results", "BenchmarkModelResult", "BenchmarkOutputError",
           "RunStats", "parse_benchmark_output"]

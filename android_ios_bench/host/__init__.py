"""Host harness: measure a manifest's .tflite micro-models with LiteRT (XNNPACK) into a LUT.

    python -m android_ios_bench.host --lut-out lut.json [--threads 2] [--precision fp32] [--manifest M]

Without --manifest the default search space is exported first (resumable) into --models-dir.
"""

from android_ios_bench.host.harness import (host_device, load_interpreter, measure_manifest, time_interleaved)
from android_ios_bench.host.cli import build_lut

__all__ = ["build_lut", "host_device", "load_interpreter", "measure_manifest", "time_interleaved"]

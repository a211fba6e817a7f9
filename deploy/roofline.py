"""How close a converted model runs to what this machine can do: a matmul probe timed beside it.

The probe is two 1x1 convolutions on a 56x56x256 map, 256 -> 1024 -> 256 (a matmul of
3,136 rows by 256 by 1024 and back: 3.29 GFLOP), the densest work XNNPACK does. It is
converted at the model's precision (fp32, fp16 weights, int8, int8-dynamic) and timed in
the same process, interleaved round by round with the model (`ef_keras.timing`), so both
see the same machine, threads and background load. The model's achieved rate is its
FLOPs (2 x the multiply-adds of its convolutions, depthwise convolutions, fully connected
layers and matmuls, counted on the converted graph: `deploy.tflite.flops`,
`deploy.onnx_export.flops`; element-wise ops are not counted) over its latency, and its
**roofline share** that rate over the probe's. Units: GFLOP/s for float, GOP/s for int8.

A share near 1 says the model is as dense as a matmul can be here; the rest of the
latency is element-wise work, layout ops, memory traffic and op overhead.
"""

from __future__ import annotations

import numpy as np

from deploy.common import InputSpec
from ef_keras import timing

#: The probe: (height, width, channels, expansion) of x -> Conv1x1(c -> e*c) -> Conv1x1(e*c -> c).
PROBE = (56, 56, 256, 4)
PROBE_FLOP = 2 * 2 * PROBE[0] * PROBE[1] * PROBE[2] * PROBE[2] * PROBE[3]  # 3.29e9
PROBE_DESCRIPTION = (f"two 1x1 convs {PROBE[0]}x{PROBE[1]}x{PROBE[2]} -> {PROBE[2] * PROBE[3]} -> {PROBE[2]}, "
                     f"{PROBE_FLOP / 1e9:.2f} GFLOP")


def unit(precision: str) -> str:
    """"GOP/s" for full-integer int8, "GFLOP/s" otherwise."""
    return "GOP/s" if precision == "int8" else "GFLOP/s"


def probe_model():
    """The probe as a Keras model with seeded random weights."""
    import keras

    h, w, c, e = PROBE
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((h, w, c)), keras.layers.Conv2D(c * e, 1), keras.layers.Conv2D(c, 1)],
                             name="roofline_probe")
    for var in model.weights:
        var.assign(rng.normal(0.0, 0.05, tuple(var.shape)).astype("float32"))
    return model


PROBE_SPEC = InputSpec("x", (1, *PROBE[:3]))


def share(model_flop: float, model_ms: float, probe_ms: float) -> float:
    """The model's FLOP rate over the probe's (both from timings of the same run)."""
    return (model_flop / model_ms) / (PROBE_FLOP / probe_ms)


def measure(run_model, model_flop: float, run_probe, precision: str, runs: int = 20, warmup: int = 3) -> dict:
    """Times `run_model()` and `run_probe()` interleaved; returns the report's `roofline` entry.

    Medians and p10s are `ef_keras.timing.summarize`'s; each share compares the model and
    the probe under the same statistic.
    """
    times = timing.time_interleaved({"model": run_model, "probe": run_probe}, runs, warmup)
    model, reference = timing.summarize(times["model"]), timing.summarize(times["probe"])
    result = {"probe": PROBE_DESCRIPTION, "unit": unit(precision), "model_gflop": model_flop / 1e9, "runs": runs}
    for stat in ("median", "p10"):
        m, p = model[f"{stat}_ms"], reference[f"{stat}_ms"]
        result.update({f"model_{stat}_ms": m, f"probe_{stat}_ms": p, f"achieved_{stat}": model_flop / m / 1e6,
                       f"probe_{stat}": PROBE_FLOP / p / 1e6, f"share_{stat}": share(model_flop, m, p)})
    return result


__all__ = ["PROBE", "PROBE_FLOP", "PROBE_DESCRIPTION", "PROBE_SPEC", "unit", "probe_model", "share", "measure"]

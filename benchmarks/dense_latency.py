r"""TFLite latency at 512x512: EfficientFormer-L1 vs MobileNetV3-Large as pyramid backbones, alone and with SemanticFPN.

    python -m benchmarks.dense_latency            # ~10 min on 2 cores (four conversions, then timing)

Models (random trained-like weights, `deploy.testing.randomize_weights`; speed does not
depend on the values): each backbone's P2-P5 pyramid (`segmentation.pack_pyramid`, one
output) and the same backbone + `SemanticFPN` (150 classes, ADE20K's head). Each is
converted with `deploy.to_tflite` (fp32, verified against Keras, batch 1) and all four are
timed in one loop that interleaves them run by run (LiteRT + XNNPACK, --threads), so
background load hits them alike. The table gives median and p10 and the L1 / MobileNetV3
ratios. Goals (`benchmarks/goals.json`): L1 backbone <= 2.5x MobileNetV3-Large
(`dense_l1_over_mnv3`), and the L7 backbone built at 640x640 with one prediction under 3 GB
resident (`l7_640_rss_mb`, a fresh process; `--nol7-640-rss` skips it).

Writes benchmarks/results/dense_latency.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import ROOT, define_results_dir_flag, finish, goals  # noqa: E402
from ef_keras import provenance, timing  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "dense_latency.json"

# A fresh process, so the peak (VmHWM) is this model's alone.
_L7_640_RSS = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import ef_keras
model = ef_keras.EfficientFormer("l7", include_top=False, input_shape=(640, 640, 3))
model.predict(np.zeros((1, 640, 640, 3), "float32"), verbose=0)
print([int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_integer("size", 512, "input height = width", lower_bound=32)
    flags.DEFINE_integer("runs", 20, "timed rounds (every model once per round)", lower_bound=1)
    flags.DEFINE_integer("warmup", 3, "untimed runs per model first", lower_bound=0)
    flags.DEFINE_integer("threads", 2, "LiteRT threads", lower_bound=1)
    flags.DEFINE_bool("l7-640-rss", True, "also measure the peak RSS of building the L7 backbone at 640x640 "
                      "and predicting one image (a fresh process)")
    flags.DEFINE_string("work-dir", None, "where the .tflite files go (default: a temp dir)")
    define_results_dir_flag()


def specs(size):
    import ef_keras
    from ef_keras.tasks.segmentation import SemanticFPN, mobilenet_v3_large_pyramid, pack_pyramid

    shape = (size, size, 3)
    l1 = lambda: ef_keras.EfficientFormer("l1", include_top=False, input_shape=shape)  # noqa: E731
    mnv3 = lambda: mobilenet_v3_large_pyramid(shape)  # noqa: E731
    return [("EfficientFormer-L1 pyramid", lambda: pack_pyramid(l1())[0]),
            ("MobileNetV3-Large pyramid", lambda: pack_pyramid(mnv3())[0]),
            ("EfficientFormer-L1 + SemanticFPN", lambda: SemanticFPN(l1(), 150)),
            ("MobileNetV3-Large + SemanticFPN", lambda: SemanticFPN(mnv3(), 150))]


def l7_640_peak_rss_mb() -> float:
    """Peak RSS (MB) of a fresh Python that builds the L7 backbone at 640x640 and predicts one image."""
    out = subprocess.run([sys.executable, "-c", _L7_640_RSS], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def _path(work: str, name: str) -> str:
    return os.path.join(work, name.replace(" ", "_").replace("+", "") + ".tflite")


def render(result: dict) -> str:
    """The README table and verdicts of a dense_latency result."""
    size, by = result["size"], {e["model"]: e for e in result["entries"]}
    lines = [f"| model ({size}×{size}, TFLite fp32, {result['threads']} threads, {result['runs']} rounds) | params "
             "| XNNPACK partitions "
             "| max abs diff vs Keras | median ms | p10 ms |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {e['model']} | {e['params'] / 1e6:.2f} M | {e['partitions']} | {e['max_abs_diff']:.1e} "
              f"| {e['median_ms']:.1f} | {e['p10_ms']:.1f} |" for e in result["entries"]]
    ratio = {kind: {stat: by[f"EfficientFormer-L1 {kind}"][stat] / by[f"MobileNetV3-Large {kind}"][stat]
                    for stat in ("median_ms", "p10_ms")} for kind in ("pyramid", "+ SemanticFPN")}
    speed = goals.goal("dense_l1_over_mnv3")
    backbone = ratio["pyramid"]["median_ms"]
    text = "\n".join(lines) + (
        f"\n\nL1 / MobileNetV3-Large: backbone {backbone:.2f}× median ({ratio['pyramid']['p10_ms']:.2f}× p10), "
        f"with SemanticFPN {ratio['+ SemanticFPN']['median_ms']:.2f}× ({ratio['+ SemanticFPN']['p10_ms']:.2f}×). "
        f"Goal (backbone {speed.bound}"
        + (f", at {size}×{size}): " if size == 512 else f"; this run is at {size}×{size}, the goal's size is 512): ")
        + speed.verdict(backbone, f"{backbone:.2f}×") + ".")
    if result.get("l7_640_peak_rss_mb") is not None:
        mb = result["l7_640_peak_rss_mb"]
        memory = goals.goal("l7_640_rss_mb")
        text += f" Goal ({memory.what} {memory.bound}): {memory.verdict(mb, f'{mb:.0f} MB')}."
    return text


def main(argv):
    del argv
    run = provenance.start()
    import keras

    import deploy
    from android_ios_bench.host.harness import load_interpreter
    from deploy.testing import randomize_weights

    work = FLAGS["work-dir"].value or tempfile.mkdtemp(prefix="dense_latency_")
    entries = []
    for name, build in specs(FLAGS.size):
        path = _path(work, name)
        model = randomize_weights(build())
        start = time.time()
        report = deploy.to_tflite(model, path, precision="fp32", overwrite=True)
        entries.append({"model": name, "params": model.count_params(), "partitions": report["xnnpack"]["partitions"],
                        "max_abs_diff": report["verification"]["max_abs_diff"]})
        print(f"converted {name} in {time.time() - start:.0f} s: {entries[-1]}", flush=True)
        keras.backend.clear_session()
    invoke = {e["model"]: load_interpreter(_path(work, e["model"]), FLAGS.threads).invoke for e in entries}
    times = timing.time_interleaved(invoke, FLAGS.runs, FLAGS.warmup, progress=timing.print_every(5))
    for e in entries:
        e.update(timing.summarize(times[e["model"]]))
    result = {"size": FLAGS.size, "runs": FLAGS.runs, "warmup": FLAGS.warmup, "threads": FLAGS.threads,
              "entries": entries,
              "l7_640_peak_rss_mb": l7_640_peak_rss_mb() if FLAGS["l7-640-rss"].value else None}
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

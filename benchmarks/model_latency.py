"""Single-image CPU latency: our Keras models under tf.function next to timm's PyTorch (eager).

    python benchmarks/model_latency.py [--models l1,l3,l7] [--runs 30] [--threads 2]

Both frameworks run in this one process, interleaved round by round (one Keras call, one
torch call, ...) so that load on this shared machine hits both alike; the table shows
medians and the Keras/torch ratio. timm is optional (torch + timm installed; see
tests/fixtures/README.md). Also prints the peak resident memory of building each model in a
fresh subprocess (goal: L7 < 2 GB). Results go to benchmarks/results/model_latency.{json,md}.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["l1", "l3", "l7"], "Variants to time.")
flags.DEFINE_integer("runs", 30, "Timed rounds per model.")
flags.DEFINE_integer("warmup", 5, "Untimed rounds per model.")
flags.DEFINE_integer("threads", 2, "Intra-op threads for both frameworks.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results"), "Where results go.")

# VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a child started
# from this (TF + torch) process would report the parent's peak.
_BUILD_RSS = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import ef_keras
ef_keras.EfficientFormer({name!r})
print([int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def build_peak_rss_mb(name: str) -> float:
    """Peak RSS (MB) of a fresh Python that imports ef_keras and builds one model."""
    out = subprocess.run([sys.executable, "-c", _BUILD_RSS.format(name=name)], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return float(out.stdout.strip().splitlines()[-1])


def _timm_model(name):
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
        from timm_reference import import_timm
        timm = import_timm()
        import torch
    except ImportError as e:
        print(f"(timm side skipped: {e})")
        return None, None
    torch.set_num_threads(FLAGS.threads)
    model = timm.create_model(f"efficientformer_{name}", pretrained=False).eval()
    return model, torch


def _time(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main(argv):
    del argv
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import ef_keras

    rows = []
    for name in FLAGS.models:
        model = ef_keras.EfficientFormer(name)
        fn = tf.function(lambda x, m=model: m(x, training=False))
        x_tf = tf.random.normal((1, 224, 224, 3))
        ours = lambda: fn(x_tf).numpy()  # noqa: E731
        torch_model, torch = _timm_model(name)
        if torch_model is not None:
            x_pt = torch.randn(1, 3, 224, 224)

            def theirs():
                with torch.inference_mode():
                    torch_model(x_pt)
        for _ in range(FLAGS.warmup):
            ours()
            if torch_model is not None:
                theirs()
        t_ours, t_theirs = [], []
        for _ in range(FLAGS.runs):
            t_ours.append(_time(ours))
            if torch_model is not None:
                t_theirs.append(_time(theirs))
        row = {"model": name, "keras_tf_function_ms": float(np.median(t_ours)),
               "keras_min_ms": float(np.min(t_ours)),
               "timm_eager_ms": float(np.median(t_theirs)) if t_theirs else None,
               "timm_min_ms": float(np.min(t_theirs)) if t_theirs else None,
               "build_peak_rss_mb": build_peak_rss_mb(name)}
        row["ratio_keras_over_timm"] = (row["keras_tf_function_ms"] / row["timm_eager_ms"]
                                        if row["timm_eager_ms"] else None)
        rows.append(row)

    header = "| model | Keras tf.function median (min) ms | timm eager median (min) ms | Keras/timm | build peak RSS MB |"
    lines = [header, "|---|---|---|---|---|"]
    for r in rows:
        timm_cell = f"{r['timm_eager_ms']:.1f} ({r['timm_min_ms']:.1f})" if r["timm_eager_ms"] else "n/a"
        ratio = f"{r['ratio_keras_over_timm']:.2f}" if r["ratio_keras_over_timm"] else "n/a"
        lines.append(f"| {r['model']} | {r['keras_tf_function_ms']:.1f} ({r['keras_min_ms']:.1f}) | {timm_cell} | "
                     f"{ratio} | {r['build_peak_rss_mb']:.0f} |")
    table = "\n".join(lines)
    print(table)
    from ef_keras.output import write_json, write_text

    os.makedirs(FLAGS.out, exist_ok=True)
    meta = {"runs": FLAGS.runs, "threads": FLAGS.threads, "date": time.strftime("%Y-%m-%d"),
            "command": "python benchmarks/model_latency.py " + " ".join(sys.argv[1:])}
    write_json(os.path.join(FLAGS.out, "model_latency.json"), {"meta": meta, "rows": rows})
    write_text(os.path.join(FLAGS.out, "model_latency.md"),
               f"`{meta['command']}` ({meta['date']}, {FLAGS.threads} threads, {FLAGS.runs} interleaved runs)\n\n"
               + table + "\n")


if __name__ == "__main__":
    app.run(main)

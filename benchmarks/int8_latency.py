r"""Full-integer int8 vs fp32 on the host CPU: EfficientFormer next to MobileNetV2-1.4, one interleaved run.

    python benchmarks/int8_latency.py                          # L1 + MobileNetV2-1.4, ~5 min on 2 cores
    python benchmarks/int8_latency.py --variants l1,l3,benchmarks/results/searched_arch.json --runs 20

Every model is converted with `deploy.to_tflite` (verified against Keras) with trained-like
random weights (`deploy.testing.randomize_weights`), at fp32 and full-integer int8 (the
int8 export graph; float I/O), plus EfficientFormer's plain full-integer model from
before the export graph ("int8 plain", the converter's output with no float islands) for
contrast. int8 is calibrated on 16 crops of the photos bundled with scikit-learn; the
calibration data does not change the speed. All models are timed single-image in one loop
that interleaves them run by run (LiteRT + XNNPACK, `--threads` threads), so background
load hits every model alike; the table gives median and p10 (the 10th percentile, a less
load-sensitive figure) and the ratios the issue asks for.

Writes benchmarks/results/int8_latency.{json,md} and prints the same table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["l1"], "EfficientFormer variants (l1, l3, l7) or architecture JSON files")
flags.DEFINE_list("mobilenet_alphas", ["1.4"], "MobileNetV2 width multipliers")
flags.DEFINE_integer("runs", 30, "timed rounds (every model once per round)")
flags.DEFINE_integer("warmup", 5, "untimed runs per model first")
flags.DEFINE_integer("threads", 2, "LiteRT threads")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "where int8_latency.{json,md} go")


def convert_all(work_dir):
    """[(name, family, precision, path, partitions)] for every model and precision."""
    import keras

    import deploy
    import ef_keras
    from deploy import common, tflite, verify
    from deploy.testing import randomize_weights

    models = [(f"EfficientFormer-{v.upper() if not v.endswith('.json') else ef_keras.get_config(v).name}",
               lambda v=v: ef_keras.EfficientFormer(v)) for v in FLAGS.variants]
    models += [(f"MobileNetV2-{a}", lambda a=a: keras.applications.MobileNetV2(alpha=float(a), weights=None,
                                                                                input_shape=(224, 224, 3)))
               for a in FLAGS.mobilenet_alphas]
    entries = []
    for name, build in models:
        model = randomize_weights(build())
        spec = common.input_spec(model)
        calibration = verify.sample_inputs(spec, count=16, seed=1)
        for precision in ("fp32", "int8"):
            path = os.path.join(work_dir, f"{name}_{precision}.tflite")
            start = time.time()
            report = deploy.to_tflite(model, path, precision=precision, overwrite=True,
                                      calibration_data=calibration if precision == "int8" else None)
            print(f"converted {name} {precision} in {time.time() - start:.0f} s", flush=True)
            entries.append((name, precision, path, report["xnnpack"]["partitions"]))
        if name.startswith("EfficientFormer"):
            path = os.path.join(work_dir, f"{name}_int8_plain.tflite")
            with open(path, "wb") as f:
                f.write(tflite.convert(model, spec, "int8", calibration, float_ops=()))
            entries.append((name, "int8 plain", path, tflite.xnnpack_summary(path)["partitions"]))
        keras.backend.clear_session()
    return entries


def time_interleaved(entries):
    """{(name, precision): [ms]} from `FLAGS.runs` rounds that run every model once."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for name, precision, path, _ in entries:
        interpreter = Interpreter(model_path=path, num_threads=FLAGS.threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.random.default_rng(0).standard_normal(detail["shape"]).astype(
            detail["dtype"]))
        for _ in range(FLAGS.warmup):
            interpreter.invoke()
        runners[(name, precision)] = interpreter.invoke
    times = {key: [] for key in runners}
    for _ in range(FLAGS.runs):
        for key, invoke in runners.items():
            start = time.perf_counter()
            invoke()
            times[key].append((time.perf_counter() - start) * 1e3)
    return times


def summarize(entries, times):
    rows = []
    for name, precision, path, partitions in entries:
        t = sorted(times[(name, precision)])
        rows.append({"model": name, "precision": precision, "median_ms": round(statistics.median(t), 2),
                     "p10_ms": round(t[len(t) // 10], 2), "partitions": partitions,
                     "size_mb": round(os.path.getsize(path) / 1e6, 1)})
    by = {(r["model"], r["precision"]): r for r in rows}
    ratios = []
    mobilenets = [m for m in dict.fromkeys(r["model"] for r in rows) if m.startswith("MobileNetV2")]
    for model in dict.fromkeys(r["model"] for r in rows):
        if model.startswith("MobileNetV2"):
            continue
        for stat in ("median_ms", "p10_ms"):
            ratio = {"model": model, "stat": stat,
                     "int8 / fp32": by[(model, "int8")][stat] / by[(model, "fp32")][stat]}
            for mnv2 in mobilenets:
                ratio[f"fp32 / {mnv2} fp32"] = by[(model, "fp32")][stat] / by[(mnv2, "fp32")][stat]
                ratio[f"int8 / {mnv2} int8"] = by[(model, "int8")][stat] / by[(mnv2, "int8")][stat]
            ratios.append({k: round(v, 2) if isinstance(v, float) else v for k, v in ratio.items()})
    return rows, ratios


def markdown(rows, ratios, meta):
    table = ("| model | precision | median ms | p10 ms | XNNPACK partitions | size MB |\n|---|---|---|---|---|---|\n"
             + "".join(f"| {r['model']} | {r['precision']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | "
                       f"{r['partitions']} | {r['size_mb']:.1f} |\n" for r in rows))
    keys = [k for k in ratios[0] if k not in ("model", "stat")] if ratios else []
    ratio_table = ("| model | from | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 2) + "\n"
                   + "".join(f"| {r['model']} | {r['stat'].replace('_ms', '')} | "
                             + " | ".join(f"{r[k]:.2f}" for k in keys) + " |\n" for r in ratios))
    return (f"Command: `{meta['command']}`\n\nHost: {meta['host']}; {meta['threads']} threads, {meta['warmup']} "
            f"warm-up + {meta['runs']} timed runs per model, interleaved; batch 1, 224x224; int8 = full integer "
            "with float input/output.\n\n" + table + "\nRatios (same run):\n\n" + ratio_table)


def main(argv):
    del argv
    work_dir = tempfile.mkdtemp(prefix="int8_latency_")
    entries = convert_all(work_dir)
    load_before = os.getloadavg()[0]
    times = time_interleaved(entries)
    rows, ratios = summarize(entries, times)
    meta = {"command": "python " + " ".join(sys.argv), "host": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after timing",
            "threads": FLAGS.threads, "runs": FLAGS.runs, "warmup": FLAGS.warmup}
    table = markdown(rows, ratios, meta)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "int8_latency.json"), "w") as f:
        json.dump({"meta": meta, "results": rows, "ratios": ratios}, f, indent=2)
    with open(os.path.join(FLAGS.out_dir, "int8_latency.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    app.run(main)

r"""Host latency of the deployed models: EfficientFormer L1/L3/L7 TFLite + ONNX Runtime vs MobileNetV2.

    python benchmarks/deploy_latency.py                       # all variants, ~20 min on 2 cores
    python benchmarks/deploy_latency.py --variants l1 --runs 50

Every model is converted with `deploy` (so it is verified against Keras first) with
trained-like random weights (`deploy.testing.randomize_weights`: no zero bias gets folded
away, so the graphs are those of a trained model), then timed single-image in one loop
that interleaves all models run by run (so background load hits every model alike):
LiteRT interpreter with the default XNNPACK delegate and 2 threads, ONNX Runtime CPU with
2 intra-op threads; `--warmup` untimed runs first, medians of `--runs` timed runs.
int8 is full-integer (calibrated on crops of the photos bundled with scikit-learn);
int8-dynamic is int8 weights with float activations. MobileNetV2 (alpha 1.0 and 1.4) comes
from keras.applications with weights=None (no download).

Writes benchmarks/results/deploy_latency.{json,md,png} and prints the same table.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from ef_keras import timing  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["l1", "l3", "l7"], "registered model names (l1, l3, l7, s0, s1, s2, l)")
flags.DEFINE_list("precisions", ["fp32", "fp16", "int8", "int8-dynamic"], "TFLite precisions")
flags.DEFINE_list("onnx_variants", ["l1", "l3", "l7"], "variants also timed in ONNX Runtime (fp32); tf2onnx "
                  "needs ~4 GB RAM for L1 and much more for L7")
flags.DEFINE_list("mobilenet_alphas", ["1.0", "1.4"], "MobileNetV2 width multipliers (TFLite fp32)")
flags.DEFINE_integer("runs", 60, "timed runs per model (median reported; >= 50 for the issue's protocol)")
flags.DEFINE_integer("warmup", 10, "untimed runs per model first")
flags.DEFINE_integer("threads", 2, "TFLite / ORT threads")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "where deploy_latency.{json,md,png} go")
flags.DEFINE_string("name", "deploy_latency", "file stem of the results")
flags.DEFINE_string("work_dir", None, "where converted models go (default: a temporary directory)")


def _calibration_folder(root):
    """16 real photo crops (scikit-learn's bundled photos) as a calibration image folder."""
    from PIL import Image

    from deploy.verify import photo_pixels

    folder = os.path.join(root, "calibration")
    os.makedirs(folder, exist_ok=True)
    for i, pixels in enumerate(photo_pixels(256, 256, count=16)):
        Image.fromarray(pixels.astype("uint8")).save(os.path.join(folder, f"{i}.png"))
    return folder


def convert_all(work_dir):
    """Converts every model; returns [(label, kind, path, report)]."""
    import keras

    import deploy
    import ef_keras
    from deploy.testing import randomize_weights
    from ef_keras import registry

    calibration = _calibration_folder(work_dir)
    entries = []
    for variant in FLAGS.variants:
        model = randomize_weights(ef_keras.create_model(variant))
        family = "EfficientFormerV2" if registry.registered(variant).family == "v2" else "EfficientFormer"
        for precision in FLAGS.precisions:
            path = os.path.join(work_dir, f"{variant}_{precision}.tflite")
            start = time.time()
            report = deploy.to_tflite(model, path, precision=precision, overwrite=True,
                                      calibration_data=calibration if precision == "int8" else None)
            print(f"converted {variant} {precision} in {time.time() - start:.0f} s", flush=True)
            entries.append((f"{family}-{variant.upper()} TFLite {precision}", "tflite", path, report))
        if variant in FLAGS.onnx_variants:
            path = os.path.join(work_dir, f"{variant}.onnx")
            report = deploy.to_onnx(model, path, overwrite=True)
            entries.append((f"{family}-{variant.upper()} ONNX Runtime fp32", "onnx", path, report))
        keras.backend.clear_session()
    for alpha in FLAGS.mobilenet_alphas:
        model = randomize_weights(keras.applications.MobileNetV2(alpha=float(alpha), weights=None,
                                                                 input_shape=(224, 224, 3)))
        path = os.path.join(work_dir, f"mobilenetv2_{alpha}.tflite")
        report = deploy.to_tflite(model, path, overwrite=True)
        entries.append((f"MobileNetV2-{alpha} TFLite fp32", "tflite", path, report))
    return entries


PROBES = {"tflite": ("fp32", "int8", "int8-dynamic"), "onnx": ("fp32",)}


def _runner(kind, path):
    from deploy import onnx_export, tflite

    if kind == "tflite":
        with open(path, "rb") as f:
            return tflite.invoker(f.read(), FLAGS.threads)
    return onnx_export.invoker(onnx_export.open_session(path))


def _probe_runner(kind, precision):
    from deploy import onnx_export, roofline, tflite

    if kind == "tflite":
        return tflite.invoker(tflite.roofline_probe(precision), FLAGS.threads)
    return onnx_export.invoker(onnx_export.probe_session())


def time_interleaved(entries):
    """Runs every model and every roofline probe once per round, `FLAGS.runs` rounds after warm-up; {label: [ms]}."""
    runners = {label: _runner(kind, path) for label, kind, path, _ in entries}
    kinds = {kind for _, kind, _, _ in entries}
    runners.update({("probe", kind, p): _probe_runner(kind, p) for kind in kinds for p in PROBES[kind]})
    return timing.time_interleaved(runners, FLAGS.runs, FLAGS.warmup, progress=timing.print_every(10))


def summarize(entries, times):
    from deploy import roofline

    rows = []
    for label, kind, path, report in entries:
        s = timing.summarize(times[label])
        probe_precision = tflite.probe_precision(report["precision"]) if kind == "tflite" else "fp32"
        probe = timing.summarize(times[("probe", kind, probe_precision)])
        flop = report["roofline"]["model_gflop"] * 1e9
        layout = report["reshape_transpose_gather"]
        rows.append({
            "model": label, "runtime": "LiteRT + XNNPACK" if kind == "tflite" else "ONNX Runtime CPU",
            **{k: s[k] for k in ("median_ms", "p10_ms", "min_ms", "p90_ms", "runs")},
            "size_mb": round(report["size_bytes"] / 1e6, 2), "gflop": flop / 1e9,
            "share_median": roofline.share(flop, s["median_ms"], probe["median_ms"]),
            "share_p10": roofline.share(flop, s["p10_ms"], probe["p10_ms"]),
            "reshape_transpose": layout["reshape"] + layout["transpose"], "gather": layout["gather"],
            "xnnpack_partitions": report.get("xnnpack", {}).get("partitions"),
            "fully_delegated": report.get("xnnpack", {}).get("fully_delegated"),
            "verified_max_rel_diff": report["verification"].get("max_rel_diff"),
            "top1_agreement": report["verification"].get("top1_agreement"),
        })
    return rows


def markdown(rows, meta):
    from deploy.roofline import PROBE_DESCRIPTION

    head = ("| model | runtime | median ms | p10 ms | p90 ms | GFLOP | roofline share median / p10 | size MB "
            "| RESHAPE+TRANSPOSE | XNNPACK partitions | max rel diff vs Keras |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['model']} | {r['runtime']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['p90_ms']:.2f} | "
        f"{r['gflop']:.2f} | {r['share_median']:.0%} / {r['share_p10']:.0%} | "
        f"{r['size_mb']:.1f} | {r['reshape_transpose']} | "
        f"{'-' if r['xnnpack_partitions'] is None else r['xnnpack_partitions']}"
        f"{'' if r['fully_delegated'] in (None, True) else ' (not all ops)'} | "
        f"{r['verified_max_rel_diff']:.1e} |\n" for r in rows)
    return (f"Command: `{meta['command']}`\n\nHost: {meta['host']}; {meta['threads']} threads, {meta['warmup']} "
            f"warm-up + {meta['runs']} timed runs per model, interleaved; batch 1, 224x224. Roofline share: the "
            f"model's GFLOP/s (GOP/s for int8) over the probe's in the same runtime and precision, same run "
            f"({PROBE_DESCRIPTION}).\n\n" + head + body)


def goals(rows):
    """The issue's three goals, checked against this run's medians."""
    by_name = {r["model"]: r for r in rows}
    l1 = by_name.get("EfficientFormer-L1 TFLite fp32")
    mnv2 = by_name.get("MobileNetV2-1.4 TFLite fp32")
    lines = []
    if l1:
        lines.append(f"- L1 TFLite fp32 median {l1['median_ms']:.2f} ms (goal <= 13 ms): "
                     f"{'met' if l1['median_ms'] <= 13 else 'NOT met'}; min {l1['min_ms']:.2f} ms")
        lines.append(f"- L1 TFLite fp32 in one XNNPACK partition: "
                     f"{'yes' if l1['xnnpack_partitions'] == 1 and l1['fully_delegated'] else 'NO'}; "
                     f"RESHAPE+TRANSPOSE {l1['reshape_transpose']} (budget 8)")
    for precision in ("int8", "int8-dynamic"):
        q = by_name.get(f"EfficientFormer-L1 TFLite {precision}")
        if q and mnv2:
            verdict = "met" if q["median_ms"] <= mnv2["median_ms"] else "NOT met"
            lines.append(f"- L1 TFLite {precision} {q['median_ms']:.2f} ms vs MobileNetV2-1.4 fp32 "
                         f"{mnv2['median_ms']:.2f} ms (goal: no slower): {verdict}")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.2))
    labels = [r["model"] for r in rows][::-1]
    medians = [r["median_ms"] for r in rows][::-1]
    colors = ["tab:gray" if "MobileNet" in label else "tab:blue" if "TFLite" in label else "tab:orange"
              for label in labels]
    ax.barh(labels, medians, color=colors)
    ax.errorbar(medians, labels, xerr=[[m - r["min_ms"] for m, r in zip(medians, rows[::-1])],
                                       [r["p90_ms"] - m for m, r in zip(medians, rows[::-1])]],
                fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xlabel("single-image latency, ms (bar: median; whisker: min to p90)")
    ax.set_title("Host CPU latency, 2 threads (LiteRT+XNNPACK / ONNX Runtime)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="deploy_latency_")
    os.makedirs(work_dir, exist_ok=True)
    entries = convert_all(work_dir)
    load_before = os.getloadavg()[0]
    times = time_interleaved(entries)
    rows = summarize(entries, times)
    meta = {"command": "python " + " ".join(sys.argv), "host": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after timing",
            "threads": FLAGS.threads, "runs": FLAGS.runs, "warmup": FLAGS.warmup}
    from ef_keras.output import write_json, write_text

    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_json(os.path.join(FLAGS.out_dir, f"{FLAGS.name}.json"),
               {"meta": meta, "results": rows, "goals": goals(rows).splitlines()})
    table = markdown(rows, meta) + "\nGoals (issue 3):\n" + goals(rows) + "\n"
    write_text(os.path.join(FLAGS.out_dir, f"{FLAGS.name}.md"), table)
    plot(rows, os.path.join(FLAGS.out_dir, f"{FLAGS.name}.png"))
    print(table)


if __name__ == "__main__":
    app.run(main)

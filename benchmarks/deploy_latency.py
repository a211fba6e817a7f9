r"""Host latency of the deployed models: EfficientFormer TFLite (4 precisions) + ONNX Runtime vs MobileNetV2.

    python -m benchmarks.deploy_latency                                  # L1/L3/L7, ~30 min on 2 busy cores
    python -m benchmarks.deploy_latency --variants l1 --onnx-variants l1 --runs 60   # L1 only, ~5 min

Every model is converted with `deploy` (so it is verified against Keras first) with
trained-like random weights (`deploy.testing.randomize_weights`: no zero bias gets folded
away, so the graphs are those of a trained model), then timed single-image in one loop
that interleaves all models and the roofline probes round by round (`ef_keras.timing`, so
background load hits every model alike): LiteRT interpreter with the default XNNPACK
delegate, ONNX Runtime CPU, `--threads` threads each; medians and p10 of `--runs` rounds.
int8 is full-integer (the int8 export graph, calibrated on 16 crops of the photos bundled
with scikit-learn); int8-dynamic is int8 weights with float activations. ONNX Runtime runs
L1 and L3 by default (`--onnx-variants`): converting L7 to ONNX took over 17 GB of memory
here. With `--work-dir`, files converted by an earlier run are reused. MobileNetV2
(`--mobilenet-alphas`) comes from keras.applications with weights=None (no download).
Each row's roofline share is its GFLOP/s (GOP/s for int8) over the probe's in the same
runtime and precision, same run (`deploy.roofline`). Goals (`benchmarks/goals.json`, issue 3):
L1 TFLite fp32 median (`deploy_l1_fp32_ms`), one XNNPACK partition
(`deploy_l1_fp32_partitions`), its RESHAPE+TRANSPOSE count (`deploy_l1_layout_ops`), and L1
int8 / int8-dynamic no slower than MobileNetV2-1.4 fp32 (`deploy_l1_int8_over_mnv2`).

Writes benchmarks/results/deploy_latency.{json,png}.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import define_results_dir_flag, define_timing_flags, finish, goals  # noqa: E402
from ef_keras import provenance, timing  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "deploy_latency.json"
PLOT = "deploy_latency.png"
#: The roofline probes each runtime needs: TFLite at every probe precision, ONNX Runtime at fp32.
PROBES = {"tflite": ("fp32", "int8", "int8-dynamic"), "onnx": ("fp32",)}


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_list("variants", ["l1", "l3", "l7"], "Registered model names (l1, l3, l7, s0, s1, s2, l).")
    flags.DEFINE_list("precisions", ["fp32", "fp16", "int8", "int8-dynamic"], "TFLite precisions.")
    flags.DEFINE_list("onnx-variants", ["l1", "l3"], "Variants also timed in ONNX Runtime (fp32); tf2onnx needs "
                      "~4 GB RAM for L1 and over 17 GB for L7 (more than the 23 GB development VM has to spare).")
    flags.DEFINE_list("mobilenet-alphas", ["1.0", "1.4"], "MobileNetV2 width multipliers (TFLite fp32).")
    define_timing_flags(runs=60, warmup=10)
    flags.DEFINE_string("work-dir", None, "Where converted models go (default: a temporary directory); a model "
                        "already there with its conversion report is reused, not converted again.")
    define_results_dir_flag()


def _calibration_folder(root):
    """16 real photo crops (scikit-learn's bundled photos) as a calibration image folder."""
    from PIL import Image

    from deploy.verify import photo_pixels

    folder = os.path.join(root, "calibration")
    os.makedirs(folder, exist_ok=True)
    for i, pixels in enumerate(photo_pixels(256, 256, count=16)):
        Image.fromarray(pixels.astype("uint8")).save(os.path.join(folder, f"{i}.png"))
    return folder


def _entry(label, kind, path, report):
    """What a row needs from a converted model: its report's facts and its FLOPs (counted on the file)."""
    from deploy import onnx_export, tflite

    if kind == "tflite":
        with open(path, "rb") as f:
            flop = tflite.flops(f.read())
    else:
        import onnx

        flop = onnx_export.flops(onnx.load(path))
    xnnpack = report.get("xnnpack", {})
    layout = report["reshape_transpose_gather"]
    return {"model": label, "kind": kind, "path": path, "precision": report["precision"], "gflop": flop / 1e9,
            "size_mb": round(report["size_bytes"] / 1e6, 2),
            "reshape_transpose": layout["reshape"] + layout["transpose"],
            "xnnpack_partitions": xnnpack.get("partitions"), "fully_delegated": xnnpack.get("fully_delegated"),
            "verified_max_rel_diff": report["verification"].get("max_rel_diff")}


def convert_all(work_dir):
    """Converts every model (verified against Keras); returns one `_entry` per file."""
    import keras

    import deploy
    import ef_keras
    from deploy.report import report_path
    from deploy.testing import randomize_weights
    from ef_keras import registry
    from ef_keras.checks import read_json

    calibration = _calibration_folder(work_dir)
    entries = []

    def add(label, kind, path, convert):
        report = report_path(path)
        if os.path.exists(path) and os.path.exists(report):  # converted (and verified) by an earlier run
            print(f"reusing {label} from {work_dir}", flush=True)
            entries.append(_entry(label, kind, path, read_json(report, "conversion report")))
            return
        start = time.time()
        entries.append(_entry(label, kind, path, convert()))
        print(f"converted {label} in {time.time() - start:.0f} s", flush=True)

    for variant in FLAGS.variants:
        model = randomize_weights(ef_keras.create_model(variant))
        family = "EfficientFormerV2" if registry.registered(variant).family == "v2" else "EfficientFormer"
        for precision in FLAGS.precisions:
            path = os.path.join(work_dir, f"{variant}_{precision}.tflite")
            add(f"{family}-{variant.upper()} TFLite {precision}", "tflite", path, lambda: deploy.to_tflite(
                model, path, precision=precision, overwrite=True, measure=False,
                calibration_data=calibration if precision == "int8" else None))
        if variant in FLAGS["onnx-variants"].value:
            path = os.path.join(work_dir, f"{variant}.onnx")
            add(f"{family}-{variant.upper()} ONNX Runtime fp32", "onnx", path,
                lambda: deploy.to_onnx(model, path, overwrite=True))
        keras.backend.clear_session()
    for alpha in FLAGS["mobilenet-alphas"].value:
        model = randomize_weights(keras.applications.MobileNetV2(alpha=float(alpha), weights=None,
                                                                 input_shape=(224, 224, 3)))
        path = os.path.join(work_dir, f"mobilenetv2_{alpha}.tflite")
        add(f"MobileNetV2-{alpha} TFLite fp32", "tflite", path,
            lambda: deploy.to_tflite(model, path, overwrite=True, measure=False))
    return entries


def _probe(kind, precision):
    return ("probe", kind, precision)


def runners(entries):
    """{label: invoke} of every model, and of the roofline probe of every runtime and precision they need."""
    from deploy import onnx_export, tflite

    out = {}
    for e in entries:
        if e["kind"] == "tflite":
            with open(e["path"], "rb") as f:
                out[e["model"]] = tflite.invoker(f.read(), FLAGS.threads)
        else:
            out[e["model"]] = onnx_export.invoker(onnx_export.open_session(e["path"]))
    for kind in {e["kind"] for e in entries}:
        for precision in PROBES[kind]:
            out[_probe(kind, precision)] = (tflite.invoker(tflite.roofline_probe(precision), FLAGS.threads)
                                            if kind == "tflite" else onnx_export.invoker(onnx_export.probe_session()))
    return out


def rows(entries, times):
    """One row per model: its timing statistics, roofline shares (median and p10) and conversion facts."""
    from deploy import roofline, tflite

    out = []
    for e in entries:
        s = timing.summarize(times[e["model"]])
        probe = timing.summarize(times[_probe(e["kind"], tflite.probe_precision(e["precision"])
                                              if e["kind"] == "tflite" else "fp32")])
        flop = e["gflop"] * 1e9
        out.append({**{k: v for k, v in e.items() if k != "path"},
                    "runtime": "LiteRT + XNNPACK" if e["kind"] == "tflite" else "ONNX Runtime CPU",
                    **{k: s[k] for k in ("median_ms", "p10_ms", "min_ms", "p90_ms", "runs")},
                    "share_median": roofline.share(flop, s["median_ms"], probe["median_ms"]),
                    "share_p10": roofline.share(flop, s["p10_ms"], probe["p10_ms"])})
    return out


def _verdicts(rows_):
    """The goals this run's models allow checking (L1 and MobileNetV2-1.4 present)."""
    by = {r["model"]: r for r in rows_}
    l1, mnv2 = by.get("EfficientFormer-L1 TFLite fp32"), by.get("MobileNetV2-1.4 TFLite fp32")
    out = []
    if l1:
        out.append("L1 TFLite fp32 median: "
                   + goals.verdict("deploy_l1_fp32_ms", l1["median_ms"], f"{l1['median_ms']:.2f} ms"))
        partitions = l1["xnnpack_partitions"] if l1["fully_delegated"] else float("inf")
        out.append("XNNPACK partitions of L1 TFLite fp32, all ops delegated: "
                   + goals.verdict("deploy_l1_fp32_partitions", partitions,
                                   f"{l1['xnnpack_partitions']}" + ("" if l1["fully_delegated"] else " (not all ops)")))
        out.append("RESHAPE+TRANSPOSE of L1 TFLite fp32: "
                   + goals.verdict("deploy_l1_layout_ops", l1["reshape_transpose"], str(l1["reshape_transpose"])))
    for precision in ("int8", "int8-dynamic"):
        q = by.get(f"EfficientFormer-L1 TFLite {precision}")
        if q and mnv2:
            for stat in ("median_ms", "p10_ms"):
                ratio = q[stat] / mnv2[stat]
                out.append(f"L1 TFLite {precision} / MobileNetV2-1.4 fp32 by the {stat[:-3]}: "
                           + goals.verdict("deploy_l1_int8_over_mnv2", ratio, f"{ratio:.2f}"))
    return out


def render(result: dict) -> str:
    """The README table and verdicts of a deploy_latency result."""
    from deploy.roofline import PROBE_DESCRIPTION

    lines = ["| model | runtime | median ms | p10 ms | p90 ms | GFLOP (GOP) | roofline share median / p10 | size MB "
             "| RESHAPE+TRANSPOSE | XNNPACK partitions | max rel diff vs Keras |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        partitions = "-" if r["xnnpack_partitions"] is None else str(r["xnnpack_partitions"])
        partitions += "" if r["fully_delegated"] in (None, True) else " (not all ops)"
        lines.append(f"| {r['model']} | {r['runtime']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['p90_ms']:.2f} "
                     f"| {r['gflop']:.2f} | {r['share_median']:.0%} / {r['share_p10']:.0%} | {r['size_mb']:.1f} "
                     f"| {r['reshape_transpose']} | {partitions} | {r['verified_max_rel_diff']:.1e} |")
    text = "\n".join(lines) + (
        f"\n\nBatch 1, 224x224, {result['threads']} threads, {result['warmup']} untimed then {result['runs']} timed "
        "rounds, each interleaving every model and the roofline probes; random trained-like weights. Roofline "
        f"share: the model's GFLOP/s (GOP/s for int8) over the probe's ({PROBE_DESCRIPTION}) in the same runtime and "
        "precision, same run. On this shared host compare rows within the table, not with other runs.")
    verdicts = _verdicts(result["rows"])
    return text + ("\n\nGoals (issue 3):\n\n" + "\n".join(f"- {v}" for v in verdicts) if verdicts else "")


def plot(result, path):
    """Median bars with p10-p90 whiskers, one per model (EfficientFormer TFLite blue, ONNX orange, MobileNet grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = result["rows"][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.2))
    labels = [r["model"] for r in shown]
    medians = [r["median_ms"] for r in shown]
    colors = ["tab:gray" if "MobileNet" in label else "tab:blue" if "TFLite" in label else "tab:orange"
              for label in labels]
    ax.barh(labels, medians, color=colors)
    ax.errorbar(medians, labels, xerr=[[max(0, m - r["p10_ms"]) for m, r in zip(medians, shown)],
                                       [max(0, r["p90_ms"] - m) for m, r in zip(medians, shown)]],
                fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xlabel("single-image latency, ms (bar: median; whisker: p10 to p90)")
    ax.set_title(f"Host CPU, {result['threads']} threads, interleaved (LiteRT+XNNPACK / ONNX Runtime)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    run = provenance.start()
    work_dir = FLAGS["work-dir"].value or tempfile.mkdtemp(prefix="deploy_latency_")
    os.makedirs(work_dir, exist_ok=True)
    entries = convert_all(work_dir)
    times = timing.time_interleaved(runners(entries), FLAGS.runs, FLAGS.warmup, progress=timing.print_every(10))
    result = {"runs": FLAGS.runs, "warmup": FLAGS.warmup, "threads": FLAGS.threads, "rows": rows(entries, times)}
    plot(result, os.path.join(FLAGS["results-dir"].value, PLOT))
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

r"""Full-integer int8 vs fp32 on the host CPU: EfficientFormer (V1, V2, the searched model) next to MobileNets.

    python -m benchmarks.int8_latency                 # the README's run: 7 EfficientFormers, 3 MobileNets
    python -m benchmarks.int8_latency --variants l1,s0 --mobilenet-alphas 1.0 --mobilenet-v3= --runs 200

`--variants` are registered model names (`ef_keras.list_models()`: l1, l3, l7, s0, s1, s2,
l) or architecture JSON files of either family; the default ends with the search's answer,
`benchmarks/results/main_job/architecture.json` (the main job's output, read as it is
committed). Every model is converted with `deploy.to_tflite` (verified against Keras) with
trained-like random weights (`deploy.testing.randomize_weights`), at fp32 and full-integer
int8 (the int8 export graph; float I/O), plus, with `--int8-plain`, each V1 model's plain
full-integer model from before the export graph ("int8 plain", the converter's output with
no float islands) for contrast. int8 is calibrated on 16 crops of the photos bundled with
scikit-learn (real images, `deploy.verify.sample_inputs`); the calibration data does not
change the speed. MobileNetV2 (`--mobilenet-alphas`) and MobileNetV3 (`--mobilenet-v3
large,small`) come from keras.applications with weights=None. All models are timed
single-image in one loop that interleaves them round by round (`ef_keras.timing`; LiteRT +
XNNPACK, `--threads` threads), so background load hits every model alike, together with
the roofline probe (`deploy.roofline`) at fp32 and int8. The result gives median and p10,
each model's roofline share (its GFLOP/s or GOP/s over the probe's of the same precision
and statistic), the ratios to every MobileNetV2, and the speed goals (`benchmarks/goals.json`)
that the run's models allow checking.

Writes benchmarks/results/int8_latency.{json,png}.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import RESULTS_DIR, define_results_dir_flag, define_timing_flags, finish, goals  # noqa: E402
from ef_keras import provenance, timing  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "int8_latency.json"
PLOT = "int8_latency.png"
PROBE = "roofline probe"
SEARCHED = os.path.relpath(os.path.join(RESULTS_DIR, "main_job", "architecture.json"))
#: The goals this benchmark checks (values in `benchmarks/goals.json`): (goal, kind, operands).
#: "share": the roofline share of (model, precision); "ratio": (model, precision) / (model, precision)
#: by the same statistic; "layout": RESHAPE+TRANSPOSE of the model's fp32 graph.
GOAL_CHECKS = (
    ("l1_fp32_roofline_share", "share", ("EfficientFormer-L1", "fp32")),
    ("l1_int8_over_fp32", "ratio", (("EfficientFormer-L1", "int8"), ("EfficientFormer-L1", "fp32"))),
    ("l1_int8_roofline_share", "share", ("EfficientFormer-L1", "int8")),
    ("s0_over_mnv2_fp32", "ratio", (("EfficientFormerV2-S0", "fp32"), ("MobileNetV2-1.0", "fp32"))),
    ("s0_layout_ops", "layout", "EfficientFormerV2-S0"),
    ("s2_over_l1_fp32", "ratio", (("EfficientFormerV2-S2", "fp32"), ("EfficientFormer-L1", "fp32"))),
)


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_list("variants", ["l1", "l3", "s0", "s1", "s2", "l", SEARCHED],
                      "Registered model names (l1, l3, l7, s0, s1, s2, l) or architecture JSON files.")
    flags.DEFINE_list("mobilenet-alphas", ["1.0", "1.4"], "MobileNetV2 width multipliers.")
    flags.DEFINE_list("mobilenet-v3", ["large"], "MobileNetV3 sizes (large, small).")
    flags.DEFINE_bool("int8-plain", True, "Also time each V1 model's plain full-integer model (no export graph).")
    define_timing_flags(runs=100, warmup=5)
    flags.DEFINE_string("work-dir", None, "Where converted models go (default: a temporary directory); a model "
                        "already there is reused, not converted again.")
    define_results_dir_flag()


def model_specs():
    """[(label, family, build)] for every --variants entry and every MobileNet."""
    import keras

    from ef_keras import registry

    models = []
    for v in FLAGS.variants:
        if v.endswith(".json") or os.path.sep in v:
            config = registry.architecture(v)
            family = "EfficientFormerV2" if type(config).__name__.startswith("EfficientFormerV2") else "EfficientFormer"
            models.append((f"{family}-{getattr(config, 'name', None) or os.path.basename(v)[:-5]}", family,
                           lambda v=v: registry.build_model(v)))
        else:
            entry = registry.registered(v)
            family = "EfficientFormerV2" if entry.family == "v2" else "EfficientFormer"
            models.append((f"{family}-{entry.name.upper()}", family, lambda v=v: registry.create_model(v)))
    models += [(f"MobileNetV2-{a}", "MobileNet",
                lambda a=a: keras.applications.MobileNetV2(alpha=float(a), weights=None, input_shape=(224, 224, 3)))
               for a in FLAGS["mobilenet-alphas"].value]
    models += [(f"MobileNetV3-{s.capitalize()}", "MobileNet",
                lambda s=s: getattr(keras.applications, f"MobileNetV3{s.capitalize()}")(weights=None,
                                                                                       input_shape=(224, 224, 3)))
               for s in FLAGS["mobilenet-v3"].value]
    return models


def convert_all(work_dir):
    """[(name, precision, path)] for every model and precision (files already in `work_dir` are reused)."""
    import keras

    import deploy
    from deploy import common, tflite, verify
    from deploy.testing import randomize_weights

    entries = []
    for name, family, build in model_specs():
        plain = FLAGS["int8-plain"].value and family == "EfficientFormer"
        paths = {p: os.path.join(work_dir, f"{name}_{p.replace(' ', '_')}.tflite")
                 for p in ("fp32", "int8", *(["int8 plain"] if plain else []))}
        entries += [(name, p, path) for p, path in paths.items()]
        if all(os.path.exists(p) for p in paths.values()):
            print(f"reusing {name} from {work_dir}", flush=True)
            continue
        model = randomize_weights(build())
        spec = common.input_spec(model)
        calibration = verify.sample_inputs(spec, count=16, seed=1)
        for precision in ("fp32", "int8"):
            start = time.time()
            deploy.to_tflite(model, paths[precision], precision=precision, overwrite=True, measure=False,
                             calibration_data=calibration if precision == "int8" else None)
            print(f"converted {name} {precision} in {time.time() - start:.0f} s", flush=True)
        if plain:
            with open(paths["int8 plain"], "wb") as f:
                f.write(tflite.convert(model, spec, "int8", calibration, float_ops=()))
        keras.backend.clear_session()
    return entries


def runners(entries):
    """{(name, precision): invoke} with a fixed random input, the roofline probes included."""
    from deploy import tflite

    out = {}
    for name, precision, path in entries:
        with open(path, "rb") as f:
            out[(name, precision)] = tflite.invoker(f.read(), FLAGS.threads)
    for precision in ("fp32", "int8"):
        out[(PROBE, precision)] = tflite.invoker(tflite.roofline_probe(precision), FLAGS.threads)
    return out


def rows(entries, times):
    """One row per (model, precision), the probes last: statistics, roofline shares and graph facts."""
    from deploy import report, roofline, tflite

    probe = {p: timing.summarize(times[(PROBE, p)]) for p in ("fp32", "int8")}
    out = []
    for name, precision, path in entries + [(PROBE, p, None) for p in ("fp32", "int8")]:
        s = timing.summarize(times[(name, precision)])
        if path is None:
            flop, layout, size, partitions = roofline.PROBE_FLOP, 0, None, 1
        else:
            with open(path, "rb") as f:
                flatbuffer = f.read()
            flop, size = tflite.flops(flatbuffer), round(len(flatbuffer) / 1e6, 1)
            counts = report.layout_counts("tflite", tflite.op_census(flatbuffer))
            layout, partitions = counts["reshape"] + counts["transpose"], tflite.xnnpack_summary(path)["partitions"]
        ref = probe["fp32" if precision == "fp32" else "int8"]
        out.append({"model": name, "precision": precision, **{k: s[k] for k in ("median_ms", "p10_ms", "p90_ms")},
                    "partitions": partitions, "size_mb": size, "gflop": flop / 1e9, "reshape_transpose": layout,
                    "share_median": roofline.share(flop, s["median_ms"], ref["median_ms"]),
                    "share_p10": roofline.share(flop, s["p10_ms"], ref["p10_ms"])})
    return out


def _mobilenets(rows_):
    return [m for m in dict.fromkeys(r["model"] for r in rows_) if m.startswith("MobileNetV2")]


def ratios(rows_):
    """Per EfficientFormer and statistic: int8 / fp32, and fp32 and int8 over every MobileNetV2's."""
    by = {(r["model"], r["precision"]): r for r in rows_}
    out = []
    for model in dict.fromkeys(r["model"] for r in rows_):
        if model.startswith("MobileNet") or model == PROBE:
            continue
        for stat in ("median_ms", "p10_ms"):
            ratio = {"int8 / fp32": by[(model, "int8")][stat] / by[(model, "fp32")][stat]}
            for mnv2 in _mobilenets(rows_):
                ratio[f"fp32 / {mnv2} fp32"] = by[(model, "fp32")][stat] / by[(mnv2, "fp32")][stat]
                ratio[f"int8 / {mnv2} int8"] = by[(model, "int8")][stat] / by[(mnv2, "int8")][stat]
            out.append({"model": model, "stat": stat, **ratio})
    return out


def goal_values(rows_):
    """{goal: {"median": v, "p10": v}} for every goal of GOAL_CHECKS whose models this run has."""
    by = {(r["model"], r["precision"]): r for r in rows_}
    out = {}
    for name, kind, operand in GOAL_CHECKS:
        if kind == "share" and operand in by:
            out[name] = {stat: by[operand][f"share_{stat}"] for stat in ("median", "p10")}
        elif kind == "ratio" and all(o in by for o in operand):
            num, den = (by[o] for o in operand)
            out[name] = {stat: num[f"{stat}_ms"] / den[f"{stat}_ms"] for stat in ("median", "p10")}
        elif kind == "layout" and (operand, "fp32") in by:
            count = by[(operand, "fp32")]["reshape_transpose"]
            out[name] = {"median": count, "p10": count}
    return out


def render(result: dict) -> str:
    """The README tables (latency, ratios) and goal verdicts of an int8_latency result."""
    from deploy.roofline import PROBE_DESCRIPTION

    lines = ["| model | precision | median ms | p10 ms | GFLOP (GOP) | roofline share median / p10 "
             "| XNNPACK partitions | RESHAPE+TRANSPOSE | size MB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.1f}"
        lines.append(f"| {r['model']} | {r['precision']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['gflop']:.2f} "
                     f"| {r['share_median']:.0%} / {r['share_p10']:.0%} | {r['partitions']} "
                     f"| {r['reshape_transpose']} | {size} |")
    text = "\n".join(lines) + (
        f"\n\nBatch 1, 224x224, LiteRT + XNNPACK, {result['threads']} threads, {result['warmup']} untimed then "
        f"{result['runs']} timed rounds, each interleaving every model and the roofline probes; random trained-like "
        "weights; int8 = full integer with float input/output (\"int8 plain\": the converter's full-integer model "
        "without the export graph's float islands). Roofline share: the model's GFLOP/s (GOP/s for int8) over the "
        f"probe's ({PROBE_DESCRIPTION}) at the same precision, same run.")
    by_model = {}
    for r in result["ratios"]:
        by_model.setdefault(r["model"], {})[r["stat"]] = r
    if by_model:
        keys = [k for k in result["ratios"][0] if k not in ("model", "stat")]
        text += ("\n\nRatios, same run, median (p10):\n\n| model | " + " | ".join(keys) + " |\n|---|"
                 + "---:|" * len(keys) + "\n" + "\n".join(
                     f"| {model} | " + " | ".join(f"{s['median_ms'][k]:.2f} ({s['p10_ms'][k]:.2f})" for k in keys)
                     + " |" for model, s in by_model.items()))
    verdicts = []
    for name, values in result["goals"].items():
        goal = goals.goal(f"int8_{name}")
        median, p10 = values["median"], values["p10"]
        if name.endswith("_ops"):  # a count of the graph, not a timing
            verdicts.append(f"- {goal.what}: {goal.verdict(median, f'{median:g}')} ({goal.source})")
            continue
        verdicts.append(f"- {goal.what}: {goal.verdict(median, f'{median:.2f}')} by the median, "
                        f"{goal.verdict(p10, f'{p10:.2f}')} by p10 ({goal.source})")
    return text + ("\n\nSpeed goals, same run:\n\n" + "\n".join(verdicts) if verdicts else "")


def plot(result, path):
    """Median bars with p10-p90 whiskers per (model, precision): V1 blue, V2 green, others grey; int8 lighter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    shown = result["rows"][::-1]
    labels = [f"{r['model']} {r['precision']}" for r in shown]
    medians = [r["median_ms"] for r in shown]
    colors = [to_rgba("tab:gray" if r["model"].startswith(("MobileNet", PROBE)) else
                      "tab:green" if r["model"].startswith("EfficientFormerV2") else "tab:blue",
                      1.0 if r["precision"] == "fp32" else 0.55) for r in shown]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(shown) + 1.2))
    ax.barh(labels, medians, color=colors)
    ax.errorbar(medians, labels, xerr=[[max(0, m - r["p10_ms"]) for m, r in zip(medians, shown)],
                                       [max(0, r["p90_ms"] - m) for m, r in zip(medians, shown)]],
                fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xlabel("single-image latency, ms (bar: median; whisker: p10 to p90)")
    ax.set_title(f"LiteRT + XNNPACK, {result['threads']} threads, fp32 (solid) / full int8 (light), interleaved",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    run = provenance.start()
    work_dir = FLAGS["work-dir"].value or tempfile.mkdtemp(prefix="int8_latency_")
    os.makedirs(work_dir, exist_ok=True)
    entries = convert_all(work_dir)
    times = timing.time_interleaved(runners(entries), FLAGS.runs, FLAGS.warmup, progress=timing.print_every(10))
    rows_ = rows(entries, times)
    result = {"runs": FLAGS.runs, "warmup": FLAGS.warmup, "threads": FLAGS.threads, "rows": rows_,
              "ratios": ratios(rows_), "goals": goal_values(rows_)}
    plot(result, os.path.join(FLAGS["results-dir"].value, PLOT))
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

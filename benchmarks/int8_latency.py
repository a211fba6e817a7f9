r"""Full-integer int8 vs fp32 on the host CPU: EfficientFormer (V1 and V2) next to MobileNets, one interleaved run.

    python benchmarks/int8_latency.py                          # L1 + MobileNetV2-1.4, ~5 min on 2 cores
    python benchmarks/int8_latency.py --variants l1,l3,benchmarks/results/searched_arch.json --runs 20
    python benchmarks/int8_latency.py --variants l1,l3,s0,s1,s2,l --mobilenet_alphas 1.0,1.4 \
        --mobilenet_v3 large --noint8_plain --name int8_latency_v2      # V2 beside V1 and the MobileNets

`--variants` are registered model names (`ef_keras.list_models()`: l1, l3, l7, s0, s1, s2,
l) or architecture JSON files of either family. Every model is converted with
`deploy.to_tflite` (verified against Keras) with trained-like random weights
(`deploy.testing.randomize_weights`), at fp32 and full-integer int8 (the int8 export graph;
float I/O), plus, with `--int8_plain`, EfficientFormer's plain full-integer model from
before the export graph ("int8 plain", the converter's output with no float islands) for
contrast. int8 is calibrated on 16 crops of the photos bundled with scikit-learn (real
images, `deploy.verify.sample_inputs`); the calibration data does not change the speed.
MobileNetV2 (`--mobilenet_alphas`) and MobileNetV3 (`--mobilenet_v3 large,small`) come from
keras.applications with weights=None. All models are timed single-image in one loop that
interleaves them run by run (`ef_keras.timing`; LiteRT + XNNPACK, `--threads`
threads), so background load hits every model alike, together with the roofline probe
(`deploy.roofline`) at fp32 and int8; the table gives median and p10 (the 10th percentile,
a less load-sensitive figure), each model's roofline share (its GFLOP/s or GOP/s over the
probe's of the same precision and statistic), the ratios to every MobileNet and the
issues' speed goals that the run's models allow checking.

Writes benchmarks/results/<name>.{json,md,png} (`--name`, default int8_latency) and prints the same table.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from deploy.roofline import PROBE_DESCRIPTION  # noqa: E402
from ef_keras.timing import print_every, summarize as stats, time_interleaved  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["l1"], "registered model names (l1, l3, l7, s0, s1, s2, l) or architecture JSON files")
flags.DEFINE_list("mobilenet_alphas", ["1.4"], "MobileNetV2 width multipliers")
flags.DEFINE_list("mobilenet_v3", [], "MobileNetV3 sizes (large, small)")
flags.DEFINE_bool("int8_plain", True, "also time EfficientFormer's plain full-integer model (no export graph)")
flags.DEFINE_integer("runs", 30, "timed rounds (every model once per round)")
flags.DEFINE_integer("warmup", 5, "untimed runs per model first")
flags.DEFINE_integer("threads", 2, "LiteRT threads")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "where <name>.{json,md,png} go")
flags.DEFINE_string("name", "int8_latency", "file stem of the results")
flags.DEFINE_string("work_dir", None, "where converted models go (default: a temporary directory); a model "
                    "already there is reused, not converted again")

PROBE = "roofline probe"
# The issues' speed goals: ("ratio", (model, precision), (model, precision), bound, source),
# ("share", (model, precision), lower bound on the roofline share, source),
# ("layout", model, upper bound on RESHAPE+TRANSPOSE of its fp32 graph, source).
GOALS = [
    ("share", ("EfficientFormer-L1", "fp32"), 0.85, "issue 24: L1 fp32 >= 85 % of the fp32 roofline"),
    ("ratio", ("EfficientFormer-L1", "int8"), ("EfficientFormer-L1", "fp32"), 0.30, "issue 24: L1 int8 <= 0.30x its fp32"),
    ("share", ("EfficientFormer-L1", "int8"), 0.65, "issue 24: L1 int8 >= 65 % of the int8 roofline"),
    ("ratio", ("EfficientFormerV2-S0", "fp32"), ("MobileNetV2-1.0", "fp32"), 1.2,
     "issues 12, 24: S0 fp32 <= 1.2x MobileNetV2-1.0"),
    ("layout", "EfficientFormerV2-S0", 28, "issue 24: S0 RESHAPE+TRANSPOSE <= 28"),
    ("ratio", ("EfficientFormerV2-S2", "fp32"), ("EfficientFormer-L1", "fp32"), 1.0, "issue 12: S2 <= L1"),
]


def model_specs():
    """[(label, build)] for every --variants entry and every MobileNet."""
    import keras

    from ef_keras import registry

    models = []
    for v in FLAGS.variants:
        if v.endswith(".json") or os.path.sep in v:
            config = registry.architecture(v)
            family = "EfficientFormerV2" if type(config).__name__.startswith("EfficientFormerV2") else "EfficientFormer"
            models.append((f"{family}-{getattr(config, 'name', None) or os.path.basename(v)[:-5]}",
                           lambda v=v: registry.build_model(v)))
        else:
            entry = registry.registered(v)
            family = "EfficientFormerV2" if entry.family == "v2" else "EfficientFormer"
            models.append((f"{family}-{entry.name.upper()}", lambda v=v: registry.create_model(v)))
    models += [(f"MobileNetV2-{a}", lambda a=a: keras.applications.MobileNetV2(alpha=float(a), weights=None,
                                                                                input_shape=(224, 224, 3)))
               for a in FLAGS.mobilenet_alphas]
    models += [(f"MobileNetV3-{s.capitalize()}",
                lambda s=s: getattr(keras.applications, f"MobileNetV3{s.capitalize()}")(weights=None,
                                                                                       input_shape=(224, 224, 3)))
               for s in FLAGS.mobilenet_v3]
    return models


def convert_all(work_dir):
    """[(name, precision, path, partitions)] for every model and precision."""
    import keras

    import deploy
    from deploy import common, tflite, verify
    from deploy.testing import randomize_weights

    entries = []
    for name, build in model_specs():
        paths = {p: os.path.join(work_dir, f"{name}_{p.replace(' ', '_')}.tflite")
                 for p in ("fp32", "int8", *(["int8 plain"] if FLAGS.int8_plain and name.startswith("Eff") else []))}
        if all(os.path.exists(p) for p in paths.values()):
            print(f"reusing {name} from {work_dir}", flush=True)
            entries += [(name, p, path, tflite.xnnpack_summary(path)["partitions"]) for p, path in paths.items()]
            continue
        model = randomize_weights(build())
        spec = common.input_spec(model)
        calibration = verify.sample_inputs(spec, count=16, seed=1)
        for precision in ("fp32", "int8"):
            start = time.time()
            report = deploy.to_tflite(model, paths[precision], precision=precision, overwrite=True,
                                      calibration_data=calibration if precision == "int8" else None)
            print(f"converted {name} {precision} in {time.time() - start:.0f} s", flush=True)
            entries.append((name, precision, paths[precision], report["xnnpack"]["partitions"]))
        if "int8 plain" in paths:
            with open(paths["int8 plain"], "wb") as f:
                f.write(tflite.convert(model, spec, "int8", calibration, float_ops=()))
            entries.append((name, "int8 plain", paths["int8 plain"],
                            tflite.xnnpack_summary(paths["int8 plain"])["partitions"]))
        keras.backend.clear_session()
    return entries


def runners(entries):
    """{(name, precision): invoke} with a fixed random input, the roofline probes included."""
    from deploy import roofline, tflite

    out = {}
    for name, precision, path, _ in entries:
        with open(path, "rb") as f:
            out[(name, precision)] = tflite.invoker(f.read(), FLAGS.threads)
    for precision in ("fp32", "int8"):
        out[(PROBE, precision)] = tflite.invoker(tflite.roofline_probe(precision), FLAGS.threads)
    return out


def summarize(entries, times):
    from deploy import report, roofline, tflite

    probe = {p: stats(times[(PROBE, p)]) for p in ("fp32", "int8")}
    rows = []
    for name, precision, path, partitions in entries + [(PROBE, p, None, 1) for p in ("fp32", "int8")]:
        s = stats(times[(name, precision)])
        if path is None:
            flop, layout, size = roofline.PROBE_FLOP, 0, None
        else:
            with open(path, "rb") as f:
                flatbuffer = f.read()
            flop, size = tflite.flops(flatbuffer), round(len(flatbuffer) / 1e6, 1)
            layout = report.layout_counts("tflite", tflite.op_census(flatbuffer))
            layout = layout["reshape"] + layout["transpose"]
        ref = probe["fp32" if precision == "fp32" else "int8"]
        rows.append({"model": name, "precision": precision, "median_ms": s["median_ms"], "p10_ms": s["p10_ms"],
                     "min_ms": s["min_ms"], "p90_ms": s["p90_ms"], "partitions": partitions, "size_mb": size,
                     "gflop": flop / 1e9, "reshape_transpose": layout,
                     "share_median": roofline.share(flop, s["median_ms"], ref["median_ms"]),
                     "share_p10": roofline.share(flop, s["p10_ms"], ref["p10_ms"])})
    by = {(r["model"], r["precision"]): r for r in rows}
    ratios = []
    mobilenets = [m for m in dict.fromkeys(r["model"] for r in rows) if m.startswith("MobileNet")]
    for model in dict.fromkeys(r["model"] for r in rows):
        if model.startswith("MobileNet") or model == PROBE:
            continue
        for stat in ("median_ms", "p10_ms"):
            ratio = {"model": model, "stat": stat,
                     "int8 / fp32": by[(model, "int8")][stat] / by[(model, "fp32")][stat]}
            for mnv2 in mobilenets:
                ratio[f"fp32 / {mnv2} fp32"] = by[(model, "fp32")][stat] / by[(mnv2, "fp32")][stat]
                ratio[f"int8 / {mnv2} int8"] = by[(model, "int8")][stat] / by[(mnv2, "int8")][stat]
            ratios.append({k: round(v, 2) if isinstance(v, float) else v for k, v in ratio.items()})
    return rows, ratios, goals(by)


def goals(by):
    """Every goal whose models this run has: the value by the median and by p10, and whether each meets it."""
    out = []
    for kind, *args in GOALS:
        if kind == "ratio":
            num, den, bound, source = args
            if num not in by or den not in by:
                continue
            values = {stat: by[num][f"{stat}_ms"] / by[den][f"{stat}_ms"] for stat in ("median", "p10")}
            what, met = f"{' '.join(num)} / {' '.join(den)}", {k: v <= bound for k, v in values.items()}
        elif kind == "share":
            key, bound, source = args
            if key not in by:
                continue
            values = {stat: by[key][f"share_{stat}"] for stat in ("median", "p10")}
            what, met = f"{' '.join(key)} roofline share", {k: v >= bound for k, v in values.items()}
        else:
            model, bound, source = args
            if (model, "fp32") not in by:
                continue
            count = by[(model, "fp32")]["reshape_transpose"]
            values, what, met = {"median": count, "p10": count}, f"{model} RESHAPE+TRANSPOSE", {"median": count <= bound,
                                                                                              "p10": count <= bound}
        out.append({"goal": source, "what": what, "bound": bound, "median": round(values["median"], 3),
                    "p10": round(values["p10"], 3), "met_median": met["median"], "met_p10": met["p10"]})
    return out


def markdown(rows, ratios, goals, meta):
    table = ("| model | precision | median ms | p10 ms | GFLOP (GOP) | roofline share median / p10 | XNNPACK partitions "
             "| RESHAPE+TRANSPOSE | size MB |\n|---|---|---|---|---|---|---|---|---|\n"
             + "".join(f"| {r['model']} | {r['precision']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['gflop']:.2f} | "
                       f"{r['share_median']:.0%} / {r['share_p10']:.0%} | {r['partitions']} | {r['reshape_transpose']} | "
                       f"{'-' if r['size_mb'] is None else format(r['size_mb'], '.1f')} |\n" for r in rows))
    keys = [k for k in ratios[0] if k not in ("model", "stat")] if ratios else []
    ratio_table = ("| model | from | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 2) + "\n"
                   + "".join(f"| {r['model']} | {r['stat'].replace('_ms', '')} | "
                             + " | ".join(f"{r[k]:.2f}" for k in keys) + " |\n" for r in ratios))
    goal_lines = "".join(
        f"- {g['goal']}: {g['what']} = {g['median']:.2f} (median), {g['p10']:.2f} (p10); bound {g['bound']}: "
        f"{'met' if g['met_median'] else 'NOT met'} by the median, {'met' if g['met_p10'] else 'NOT met'} by p10\n"
        for g in goals)
    return (f"Command: `{meta['command']}`\n\nHost: {meta['host']}; {meta['threads']} threads, {meta['warmup']} "
            f"warm-up + {meta['runs']} timed runs per model, interleaved; batch 1, 224x224; int8 = full integer "
            "with float input/output. Roofline share: the model's GFLOP/s (GOP/s for int8) over the roofline probe's "
            "of the same precision in this run (`deploy.roofline`: " + PROBE_DESCRIPTION + ").\n\n" + table
            + "\nRatios (same run):\n\n" + ratio_table
            + ("\nSpeed goals (same run):\n\n" + goal_lines if goals else ""))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows[::-1]
    labels = [f"{r['model']} {r['precision']}" for r in rows]
    medians = [r["median_ms"] for r in rows]
    from matplotlib.colors import to_rgba

    colors = [to_rgba("tab:gray" if r["model"].startswith("MobileNet") else
                      "tab:green" if r["model"].startswith("EfficientFormerV2") else "tab:blue",
                      1.0 if r["precision"] == "fp32" else 0.55) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.2))
    ax.barh(labels, medians, color=colors)
    ax.errorbar(medians, labels, xerr=[[max(0, m - r["p10_ms"]) for m, r in zip(medians, rows)],
                                       [max(0, r["p90_ms"] - m) for m, r in zip(medians, rows)]],
                fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xlabel("single-image latency, ms (bar: median; whisker: p10 to p90)")
    ax.set_title(f"LiteRT + XNNPACK, {FLAGS.threads} threads, fp32 / full-int8, interleaved")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="int8_latency_")
    os.makedirs(work_dir, exist_ok=True)
    entries = convert_all(work_dir)
    load_before = os.getloadavg()[0]
    times = time_interleaved(runners(entries), FLAGS.runs, FLAGS.warmup, progress=print_every(10))
    rows, ratios, goals = summarize(entries, times)
    meta = {"command": "python " + " ".join(sys.argv), "host": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after timing",
            "threads": FLAGS.threads, "runs": FLAGS.runs, "warmup": FLAGS.warmup,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    table = markdown(rows, ratios, goals, meta)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, f"{FLAGS.name}.json"), "w") as f:
        json.dump({"meta": meta, "results": rows, "ratios": ratios, "goals": goals}, f, indent=2)
    with open(os.path.join(FLAGS.out_dir, f"{FLAGS.name}.md"), "w") as f:
        f.write(table)
    plot(rows, os.path.join(FLAGS.out_dir, f"{FLAGS.name}.png"))
    print(table)


if __name__ == "__main__":
    app.run(main)

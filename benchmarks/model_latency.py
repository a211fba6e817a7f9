r"""Single-image CPU latency: our Keras models under tf.function next to timm's PyTorch (eager).

    python benchmarks/model_latency.py [--models l1,l3,l7] [--runs 30] [--threads 2]
    python benchmarks/model_latency.py --models l1,s0,s1,s2,l --runs 30 --name model_latency_v2

`--models` are registered names (`ef_keras.list_models()`); the timm counterpart of a V1
model is `efficientformer_<name>`, of a V2 model `efficientformerv2_<name>`. Both
frameworks run in this one process, and every model of both is called once per round,
all rounds interleaved (`ef_keras.timing`), so that load on this shared machine
hits them alike; the table shows medians, p10 and the Keras/torch ratio. timm is optional
(torch + timm installed; see tests/fixtures/README.md). Also prints the peak resident
memory of building each model in a fresh subprocess (goal: L7 < 2 GB; `--nobuild_rss` skips
it). Results go to benchmarks/results/<name>.{json,md,png} (`--name`, default model_latency).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torch's OpenMP threads spin-wait between parallel regions by default; on this shared, oversubscribed
# machine (load average above the core count) that made timm's S0 take 2-4 s a call instead of ~35 ms.
# Passive waiting (set before torch loads libgomp) is what a loaded host should use; TF's pool sleeps anyway.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import app, flags  # noqa: E402

from ef_keras.timing import print_every, summarize as stats, time_interleaved  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["l1", "l3", "l7"], "Registered model names to time (l1, l3, l7, s0, s1, s2, l).")
flags.DEFINE_integer("runs", 30, "Timed rounds (every model of both frameworks once per round).")
flags.DEFINE_integer("warmup", 5, "Untimed calls per model first.")
flags.DEFINE_integer("threads", 2, "Intra-op threads for both frameworks.")
flags.DEFINE_bool("build_rss", True, "Also measure the peak RSS of building each model in a fresh process.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results"), "Where results go.")
flags.DEFINE_string("name", "model_latency", "File stem of the results.")

# VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a child started
# from this (TF + torch) process would report the parent's peak.
_BUILD_RSS = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import ef_keras
ef_keras.create_model({name!r})
print([int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def build_peak_rss_mb(name: str) -> float:
    """Peak RSS (MB) of a fresh Python that imports ef_keras and builds one model."""
    out = subprocess.run([sys.executable, "-c", _BUILD_RSS.format(name=name)], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return float(out.stdout.strip().splitlines()[-1])


def timm_name(name: str) -> str:
    """timm's model name of a registered variant."""
    from ef_keras import registry

    entry = registry.registered(name)
    return f"efficientformer{'v2' if entry.family == 'v2' else ''}_{entry.name}"


def _import_torch():
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
        from timm_reference import import_timm
        timm = import_timm()
        import torch
    except ImportError as e:
        print(f"(timm side skipped: {e})")
        return None, None
    torch.set_num_threads(FLAGS.threads)
    return timm, torch


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.2))
    for offset, key, label, color in ((-0.2, "keras", "Keras tf.function", "tab:blue"),
                                      (0.2, "timm", "timm eager PyTorch", "tab:orange")):
        med = [r[f"{key}_median_ms"] or 0 for r in rows]
        ax.barh(y + offset, med, height=0.4, color=color, label=label)
        ax.errorbar(med, y + offset, xerr=[[max(0, m - (r[f"{key}_p10_ms"] or m)) for m, r in zip(med, rows)],
                                           [max(0, (r[f"{key}_p90_ms"] or m) - m) for m, r in zip(med, rows)]],
                    fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("single-image latency, ms (bar: median; whisker: p10 to p90)")
    ax.set_title(f"CPU, {FLAGS.threads} threads, interleaved")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import ef_keras

    timm, torch = _import_torch()
    x_tf = tf.random.normal((1, 224, 224, 3))
    runners = {}
    for name in FLAGS.models:
        model = ef_keras.create_model(name)
        fn = tf.function(lambda x, m=model: m(x, training=False))
        runners[(name, "keras")] = lambda fn=fn: fn(x_tf).numpy()
        if torch is not None:
            torch_model = timm.create_model(timm_name(name), pretrained=False).eval()
            x_pt = torch.randn(1, 3, 224, 224)

            def theirs(m=torch_model, x=x_pt):
                with torch.inference_mode():
                    m(x)
            runners[(name, "timm")] = theirs
    load_before = os.getloadavg()[0]
    times = time_interleaved(runners, FLAGS.runs, FLAGS.warmup, progress=print_every(10))
    load_after = os.getloadavg()[0]

    rows = []
    for name in FLAGS.models:
        row = {"model": name, "timm_model": timm_name(name) if torch is not None else None}
        for key in ("keras", "timm"):
            s = stats(times[(name, key)]) if (name, key) in times else {}
            for stat in ("median_ms", "p10_ms", "min_ms", "p90_ms"):
                row[f"{key}_{stat}"] = s.get(stat)
        row["ratio_keras_over_timm"] = (round(row["keras_median_ms"] / row["timm_median_ms"], 2)
                                        if row["timm_median_ms"] else None)
        row["ratio_keras_over_timm_p10"] = (round(row["keras_p10_ms"] / row["timm_p10_ms"], 2)
                                            if row["timm_p10_ms"] else None)
        row["build_peak_rss_mb"] = build_peak_rss_mb(name) if FLAGS.build_rss else None
        rows.append(row)

    header = ("| model | Keras tf.function median (p10) ms | timm eager median (p10) ms | Keras/timm median (p10) "
              "| build peak RSS MB |")
    lines = [header, "|---|---|---|---|---|"]
    for r in rows:
        timm_cell = f"{r['timm_median_ms']:.1f} ({r['timm_p10_ms']:.1f})" if r["timm_median_ms"] else "n/a"
        ratio = (f"{r['ratio_keras_over_timm']:.2f} ({r['ratio_keras_over_timm_p10']:.2f})"
                 if r["ratio_keras_over_timm"] else "n/a")
        rss = f"{r['build_peak_rss_mb']:.0f}" if r["build_peak_rss_mb"] else "-"
        lines.append(f"| {r['model']} | {r['keras_median_ms']:.1f} ({r['keras_p10_ms']:.1f}) | {timm_cell} | "
                     f"{ratio} | {rss} |")
    slower = [r["model"] for r in rows if r["ratio_keras_over_timm"] and r["ratio_keras_over_timm"] > 1.0]
    goal = ("Goal (Keras tf.function no slower than timm eager, by the median): "
            + ("met for every model" if not slower else f"NOT met for {', '.join(slower)}")
            if any(r["ratio_keras_over_timm"] for r in rows) else "")
    table = "\n".join(lines) + ("\n\n" + goal if goal else "")
    print(table)
    from ef_keras.output import write_json, write_text

    os.makedirs(FLAGS.out, exist_ok=True)
    meta = {"omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "runs": FLAGS.runs, "warmup": FLAGS.warmup,
            "threads": FLAGS.threads,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average": f"{load_before:.1f} before / {load_after:.1f} after timing",
            "command": "python benchmarks/model_latency.py " + " ".join(sys.argv[1:])}
    write_json(os.path.join(FLAGS.out, f"{FLAGS.name}.json"), {"meta": meta, "rows": rows, "goal": goal})
    write_text(os.path.join(FLAGS.out, f"{FLAGS.name}.md"),
               f"`{meta['command']}` ({meta['date']}, {FLAGS.threads} threads, {FLAGS.warmup} warm-up + "
               f"{FLAGS.runs} timed rounds, all models of both frameworks interleaved; 1-min load average "
               f"{meta['load_average']}; torch OMP_WAIT_POLICY={meta['omp_wait_policy']})\n\n" + table + "\n")
    plot(rows, os.path.join(FLAGS.out, f"{FLAGS.name}.png"))


if __name__ == "__main__":
    app.run(main)

r"""Single-image CPU latency: our Keras models under tf.function next to timm's PyTorch (eager).

    python -m benchmarks.model_latency [--models l1,l3,l7,s0,s1,s2,l] [--runs 30] [--threads 2]

`--models` are registered names (`ef_keras.list_models()`); the timm counterpart of a V1
model is `efficientformer_<name>`, of a V2 model `efficientformerv2_<name>`. Both
frameworks run in this one process, and every model of both is called once per round,
all rounds interleaved (`ef_keras.timing`), so that load on this shared machine
hits them alike; the table shows medians, p10 and the Keras/torch ratio. timm is optional
(torch + timm installed; see tests/fixtures/README.md). Also measures the peak resident
memory of building each model in a fresh subprocess (`--rss-models`: which; `--nobuild-rss`: none). Goals
(`benchmarks/goals.json`): Keras no slower than timm (`keras_over_timm`), L7 built in
under 2 GB (`l7_build_rss_mb`). Writes benchmarks/results/model_latency.{json,png}.
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torch's OpenMP threads spin-wait between parallel regions by default; on this shared, oversubscribed
# machine (load average above the core count) that made timm's S0 take 2-4 s a call instead of ~35 ms.
# Passive waiting (set before torch loads libgomp) is what a loaded host should use; TF's pool sleeps anyway.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from absl import flags  # noqa: E402

from benchmarks import ROOT, define_results_dir_flag, finish, goals  # noqa: E402
from ef_keras import provenance, timing  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "model_latency.json"

# VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a child started
# from this (TF + torch) process would report the parent's peak.
_BUILD_RSS = """
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import ef_keras
ef_keras.create_model({name!r})
print([int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0])
"""


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_list("models", ["l1", "l3", "l7", "s0", "s1", "s2", "l"], "Registered model names to time.")
    flags.DEFINE_integer("runs", 30, "Timed rounds (every model of both frameworks once per round).", lower_bound=1)
    flags.DEFINE_integer("warmup", 5, "Untimed calls per model first.", lower_bound=0)
    flags.DEFINE_integer("threads", 2, "Intra-op threads for both frameworks.", lower_bound=1)
    flags.DEFINE_bool("build-rss", True, "Also measure the peak RSS of building models in a fresh process.")
    flags.DEFINE_list("rss-models", None, "Models whose build RSS is measured (default: every --models).")
    define_results_dir_flag()


def build_peak_rss_mb(name: str) -> float:
    """Peak RSS (MB) of a fresh Python that imports ef_keras and builds one model."""
    out = subprocess.run([sys.executable, "-c", _BUILD_RSS.format(name=name)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def timm_name(name: str) -> str:
    """timm's model name of a registered variant."""
    from ef_keras import registry

    entry = registry.registered(name)
    return f"efficientformer{'v2' if entry.family == 'v2' else ''}_{entry.name}"


def _import_torch(threads: int):
    try:
        from tools.timm_reference import import_timm

        timm = import_timm()
        import torch
    except ImportError as e:
        print(f"(timm side skipped: {e})")
        return None, None
    torch.set_num_threads(threads)
    return timm, torch


def plot(result: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result["rows"]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.2))
    for offset, key, label, color in ((-0.2, "keras", "Keras tf.function", "tab:blue"),
                                      (0.2, "timm", "timm eager PyTorch", "tab:orange")):
        stats = [r[key] or {} for r in rows]
        med = [s.get("median_ms", 0) for s in stats]
        ax.barh(y + offset, med, height=0.4, color=color, label=label)
        ax.errorbar(med, y + offset, xerr=[[max(0, m - s.get("p10_ms", m)) for m, s in zip(med, stats)],
                                           [max(0, s.get("p90_ms", m) - m) for m, s in zip(med, stats)]],
                    fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("single-image latency, ms (bar: median; whisker: p10 to p90)")
    ax.set_title(f"CPU, {result['threads']} threads, {result['runs']} interleaved rounds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ratio(row: dict, stat: str) -> float | None:
    return row["keras"][stat] / row["timm"][stat] if row["timm"] else None


def render(result: dict) -> str:
    """The README table and verdicts of a model_latency result."""
    lines = ["| model (timm) | Keras tf.function median (p10) ms | timm eager median (p10) ms "
             "| Keras/timm median (p10) | build peak RSS MB |", "|---|---:|---:|---:|---:|"]
    verdicts, rss = [], None
    for r in result["rows"]:
        k, t = r["keras"], r["timm"]
        timm_cell = f"{t['median_ms']:.1f} ({t['p10_ms']:.1f})" if t else "not run (no torch/timm)"
        ratio = _ratio(r, "median_ms")
        ratio_cell = f"{ratio:.2f} ({_ratio(r, 'p10_ms'):.2f})" if t else "-"
        rss_cell = f"{r['build_peak_rss_mb']:.0f}" if r["build_peak_rss_mb"] is not None else "-"
        lines.append(f"| {r['model']} ({r['timm_model']}) | {k['median_ms']:.1f} ({k['p10_ms']:.1f}) | {timm_cell} "
                     f"| {ratio_cell} | {rss_cell} |")
        if t:
            verdicts.append(f"{r['model']} {goals.verdict('keras_over_timm', ratio, f'{ratio:.2f}')}")
        if r["model"] == "l7" and r["build_peak_rss_mb"] is not None:
            rss = goals.verdict("l7_build_rss_mb", r["build_peak_rss_mb"], f"{r['build_peak_rss_mb']:.0f} MB")
    speed = goals.goal("keras_over_timm")
    text = "\n".join(lines) + (f"\n\n{result['runs']} interleaved rounds after {result['warmup']} warm-up calls per "
                                f"model, {result['threads']} threads each, torch with OMP_WAIT_POLICY="
                                f"{result['omp_wait_policy']}. Goal ({speed.what} {speed.bound}): ")
    text += ("; ".join(verdicts) if verdicts else "not measured (timm was not installed)") + "."
    if rss:
        memory = goals.goal("l7_build_rss_mb")
        text += f" Goal ({memory.what} {memory.bound}): {rss}."
    return text


def main(argv):
    del argv
    run = provenance.start()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import ef_keras

    timm, torch = _import_torch(FLAGS.threads)
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
    rss_models = (FLAGS["rss-models"].value or FLAGS.models) if FLAGS["build-rss"].value else []
    times = timing.time_interleaved(runners, FLAGS.runs, FLAGS.warmup, progress=timing.print_every(10))
    rows = [{"model": name, "timm_model": timm_name(name),
             "keras": timing.summarize(times[(name, "keras")]),
             "timm": timing.summarize(times[(name, "timm")]) if (name, "timm") in times else None,
             "build_peak_rss_mb": build_peak_rss_mb(name) if name in rss_models else None}
            for name in FLAGS.models]
    result = {"runs": FLAGS.runs, "warmup": FLAGS.warmup, "threads": FLAGS.threads,
              "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "rows": rows}
    plot(result, os.path.join(FLAGS["results-dir"].value, "model_latency.png"))
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

r"""Where the time goes: per-op time of EfficientFormer L1 and V2-S0 on LiteRT + XNNPACK (`deploy.op_profile`).

    python -m benchmarks.op_profile                              # L1 and S0, fp32 and int8, ~3 min on 2 cores
    python -m benchmarks.op_profile --variants l1 --precisions fp32 --runs 100

Each model is converted with `deploy.to_tflite` (verified; random trained-like weights,
`deploy.testing.randomize_weights`; int8 calibrated on 16 photo crops), cut into one-op
models, and all of them are timed with the whole model in one interleaved loop, less the
`invoke` overhead (`deploy.op_profile`). The result holds every op's time; the table gives,
per model, the top 10 op types by share of the summed op time, the single slowest ops, and
the coverage (sum of the ops / the whole model).

Writes benchmarks/results/op_profile.{json,png}.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import define_results_dir_flag, define_timing_flags, finish  # noqa: E402
from ef_keras import provenance  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "op_profile.json"
PLOT = "op_profile.png"
TOP = 10   # op types per model in the table and the plot
SLOWEST = 3  # single ops per model named under the table


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_list("variants", ["l1", "s0"], "Registered model names.")
    flags.DEFINE_list("precisions", ["fp32", "int8"], "TFLite precisions.")
    define_timing_flags(runs=60, warmup=5)
    define_results_dir_flag()


def profiles(work_dir):
    """Converts every variant at every precision into `work_dir` and profiles it (`deploy.op_profile.profile`)."""
    import keras

    import deploy
    import ef_keras
    from deploy import common, op_profile, testing, verify

    out = []
    for variant in FLAGS.variants:
        model = testing.randomize_weights(ef_keras.registry.build_model(variant))
        for precision in FLAGS.precisions:
            path = os.path.join(work_dir, f"{variant}_{precision}.tflite")
            calibration = (verify.sample_inputs(common.input_spec(model), count=16, seed=1)
                           if precision == "int8" else None)
            report = deploy.to_tflite(model, path, precision=precision, calibration_data=calibration, overwrite=True,
                                      measure=False)
            with open(path, "rb") as f:
                flatbuffer = f.read()
            start = time.time()
            result = op_profile.profile(flatbuffer, FLAGS.runs, FLAGS.warmup, FLAGS.threads)
            print(f"profiled {variant} {precision}: {len(result['ops'])} ops in {time.time() - start:.0f} s",
                  flush=True)
            out.append({"model": variant, "precision": precision, "partitions": report["xnnpack"]["partitions"],
                        **result})
        keras.backend.clear_session()
    return out


def _label(r):
    return f"{r['model'].upper()} {r['precision']}"


def render(result: dict) -> str:
    """The README table of an op_profile result: top op types per model side by side, then the slowest ops."""
    profiles = result["profiles"]
    lines = ["| rank | " + " | ".join(f"{_label(r)} ({r['model_ms']:.1f} ms, coverage {r['coverage']:.0%})"
                                      for r in profiles) + " |", "|---|" + "---|" * len(profiles)]
    for rank in range(TOP):
        cells = [f"{r['by_type'][rank]['op']} ×{r['by_type'][rank]['count']} {r['by_type'][rank]['share']:.1%}"
                 if rank < len(r["by_type"]) else "" for r in profiles]
        lines.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + (
        f"\n\nShares of the summed one-op time; {result['threads']} threads, {result['warmup']} untimed then "
        f"{result['runs']} interleaved rounds, medians less the invoke overhead; random trained-like weights. "
        "Coverage: the sum of the one-op models over the whole model. The slowest single ops (output tensor, ms):\n")
    for r in profiles:
        slowest = sorted(r["ops"], key=lambda op: -op["ms"])[:SLOWEST]
        text += (f"\n- {_label(r)} ({len(r['ops'])} ops, sum {r['sum_of_ops_ms']:.2f} ms, overhead "
                 f"{r['overhead_ms'] * 1000:.0f} µs per op): "
                 + "; ".join(f"{op['op']} `{op['name'].split(';')[0][-50:]}` {op['ms']:.3f}" for op in slowest))
    return text


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        rows = r["by_type"][:TOP][::-1]
        ax.barh([row["op"] for row in rows], [100 * row["share"] for row in rows], color="tab:blue")
        ax.set_xlabel("share of summed op time, %")
        ax.set_title(f"{r['model'].upper()} {r['precision']}: {r['model_ms']:.1f} ms, coverage {r['coverage']:.0%}",
                     fontsize=9)
    fig.suptitle(f"Top {TOP} op types, LiteRT + XNNPACK, {FLAGS.threads} threads (one-op models, interleaved)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    run = provenance.start()
    profiles_ = profiles(tempfile.mkdtemp(prefix="op_profile_"))
    result = {"runs": FLAGS.runs, "warmup": FLAGS.warmup, "threads": FLAGS.threads, "profiles": profiles_}
    plot(profiles_, os.path.join(FLAGS["results-dir"].value, PLOT))
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

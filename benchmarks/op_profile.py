r"""Where the time goes: per-op time of EfficientFormer L1 and V2-S0 on LiteRT + XNNPACK (`deploy.op_profile`).

    python benchmarks/op_profile.py                              # L1 and S0, fp32 and int8, ~3 min on 2 cores
    python benchmarks/op_profile.py --variants l1 --precisions fp32 --runs 100

Each model is converted with `deploy.to_tflite` (verified; random trained-like weights,
`deploy.testing.randomize_weights`; int8 calibrated on 16 photo crops), cut into one-op
models, and all of them are timed with the whole model in one interleaved loop, less the
`invoke` overhead (`deploy.op_profile`). Prints and writes, per model, the top 10 op types
by share of the summed op time and the top 10 single ops, and the coverage (sum of the
ops / the whole model).

Writes benchmarks/results/<name>.{json,md,png} (default op_profile).
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

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["l1", "s0"], "registered model names")
flags.DEFINE_list("precisions", ["fp32", "int8"], "TFLite precisions")
flags.DEFINE_integer("runs", 60, "interleaved rounds (medians reported)")
flags.DEFINE_integer("warmup", 5, "untimed runs of every model first")
flags.DEFINE_integer("threads", 2, "XNNPACK threads")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "where <name>.{json,md,png} go")
flags.DEFINE_string("name", "op_profile", "file stem of the results")

TOP = 10


def profiles(work_dir):
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
            report = deploy.to_tflite(model, path, precision=precision, calibration_data=calibration, overwrite=True)
            with open(path, "rb") as f:
                flatbuffer = f.read()
            start = time.time()
            result = op_profile.profile(flatbuffer, FLAGS.runs, FLAGS.warmup, FLAGS.threads)
            print(f"profiled {variant} {precision}: {len(result['ops'])} ops in {time.time() - start:.0f} s", flush=True)
            out.append({"model": variant, "precision": precision, "partitions": report["xnnpack"]["partitions"],
                        "gflop": report["roofline"]["model_gflop"], **result})
        keras.backend.clear_session()
    return out


def markdown(results, meta):
    text = [f"Command: `{meta['command']}`\n\nHost: {meta['host']}; {meta['threads']} threads, {meta['warmup']} "
            f"warm-up + {meta['runs']} interleaved rounds; medians, less the invoke overhead.\n"]
    for r in results:
        text.append(f"\n**{r['model'].upper()} {r['precision']}**: whole model {r['model_ms']:.2f} ms, sum of the "
                    f"{len(r['ops'])} one-op models {r['sum_of_ops_ms']:.2f} ms (coverage {r['coverage']:.0%}), "
                    f"invoke overhead {r['overhead_ms'] * 1000:.0f} µs per op.\n\n"
                    "| op | count | ms | share |\n|---|---|---|---|\n")
        text += [f"| {row['op']} | {row['count']} | {row['ms']:.2f} | {row['share']:.1%} |\n"
                 for row in r["by_type"][:TOP]]
        text.append("\n| single op (output tensor) | ms |\n|---|---|\n")
        text += [f"| {op['op']} `{op['name'].split(';')[0][-60:]}` | {op['ms']:.3f} |\n"
                 for op in sorted(r["ops"], key=lambda op: -op["ms"])[:TOP]]
    return "".join(text)


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
    from ef_keras.output import write_json, write_text

    work_dir = tempfile.mkdtemp(prefix="op_profile_")
    load_before = os.getloadavg()[0]
    results = profiles(work_dir)
    meta = {"command": "python " + " ".join(sys.argv), "host": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after",
            "threads": FLAGS.threads, "runs": FLAGS.runs, "warmup": FLAGS.warmup,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_json(os.path.join(FLAGS.out_dir, f"{FLAGS.name}.json"), {"meta": meta, "results": results})
    table = markdown(results, meta)
    write_text(os.path.join(FLAGS.out_dir, f"{FLAGS.name}.md"), table)
    plot(results, os.path.join(FLAGS.out_dir, f"{FLAGS.name}.png"))
    print(table)


if __name__ == "__main__":
    app.run(main)

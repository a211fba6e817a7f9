r"""TFLite latency at 512x512: EfficientFormer-L1 vs MobileNetV3-Large as pyramid backbones, alone and with SemanticFPN.

    python benchmarks/dense_latency.py            # ~10 min on 2 cores (four conversions, then timing)

Models (random trained-like weights, `deploy.testing.randomize_weights`; speed does not
depend on the values): each backbone's P2-P5 pyramid (`segmentation.pack_pyramid`, one
output) and the same backbone + `SemanticFPN` (150 classes, ADE20K's head). Each is
converted with `deploy.to_tflite` (fp32, verified against Keras, batch 1) and all four are
timed in one loop that interleaves them run by run (LiteRT + XNNPACK, --threads), so
background load hits them alike. The table gives median and p10 and the L1 / MobileNetV3
ratios; the issue's goal is L1 backbone <= 2.5x MobileNetV3-Large.

Writes benchmarks/results/dense_latency.{json,md}.
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
flags.DEFINE_integer("size", 512, "input height = width")
flags.DEFINE_integer("runs", 20, "timed rounds (every model once per round)")
flags.DEFINE_integer("warmup", 3, "untimed runs per model first")
flags.DEFINE_integer("threads", 2, "LiteRT threads")
flags.DEFINE_string("work_dir", None, "where the .tflite files go (default: a temp dir)")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "where dense_latency.{json,md} go")


def specs(size):
    import ef_keras
    from ef_keras.tasks.segmentation import SemanticFPN, mobilenet_v3_large_pyramid, pack_pyramid

    shape = (size, size, 3)
    l1 = lambda: ef_keras.EfficientFormer("l1", include_top=False, input_shape=shape)  # noqa: E731
    mnv3 = lambda: mobilenet_v3_large_pyramid(shape)  # noqa: E731
    return [("EfficientFormer-L1 pyramid", lambda: pack_pyramid(l1())[0]),
            ("MobileNetV3-Large pyramid", lambda: pack_pyramid(mnv3())[0]),
            ("EfficientFormer-L1 + SemanticFPN", lambda: SemanticFPN(l1(), 150)),
            ("MobileNetV3-Large + SemanticFPN", lambda: SemanticFPN(mnv3(), 150))]


def main(argv):
    del argv
    import keras
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    import deploy
    from deploy.testing import randomize_weights
    from ef_keras.output import write_json, write_text

    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="dense_latency_")
    entries = []
    for name, build in specs(FLAGS.size):
        path = os.path.join(work, name.replace(" ", "_").replace("+", "") + ".tflite")
        model = randomize_weights(build())
        start = time.time()
        report = deploy.to_tflite(model, path, precision="fp32", overwrite=True)
        entries.append({"model": name, "params": model.count_params(), "path": path,
                        "partitions": report["xnnpack"]["partitions"],
                        "max_abs_diff": report["verification"]["max_abs_diff"]})
        print(f"converted {name} in {time.time() - start:.0f} s: {entries[-1]}", flush=True)
        keras.backend.clear_session()
    invoke = {}
    for e in entries:
        interpreter = Interpreter(model_path=e["path"], num_threads=FLAGS.threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.random.default_rng(0).standard_normal(detail["shape"]).astype(
            "float32"))
        invoke[e["model"]] = interpreter.invoke
    times = timing.time_interleaved(invoke, FLAGS.runs, FLAGS.warmup)
    for e in entries:
        s = timing.summarize(times[e["model"]])
        e["median_ms"], e["p10_ms"] = s["median_ms"], s["p10_ms"]
    by = {e["model"]: e for e in entries}
    ratios = {kind: {stat: round(by[f"EfficientFormer-L1 {kind}"][stat] / by[f"MobileNetV3-Large {kind}"][stat], 2)
                     for stat in ("median_ms", "p10_ms")}
              for kind in ("pyramid", "+ SemanticFPN")}
    lines = [f"| model ({FLAGS.size}x{FLAGS.size}, TFLite fp32, {FLAGS.threads} threads) | params | XNNPACK partitions "
             "| median ms | p10 ms |", "|---|---|---|---|---|"]
    lines += [f"| {e['model']} | {e['params'] / 1e6:.2f} M | {e['partitions']} | {e['median_ms']} | {e['p10_ms']} |"
              for e in entries]
    command = "python benchmarks/dense_latency.py " + " ".join(sys.argv[1:])
    text = ("\n".join(lines) + "\n\nL1 / MobileNetV3-Large: backbone " + f"{ratios['pyramid']['median_ms']}x (median), "
            f"{ratios['pyramid']['p10_ms']}x (p10); with SemanticFPN {ratios['+ SemanticFPN']['median_ms']}x / "
            f"{ratios['+ SemanticFPN']['p10_ms']}x. Goal: backbone <= 2.5x. `{command}`, {FLAGS.runs} interleaved "
            f"rounds, {platform.processor() or platform.machine()}.\n")
    print(text)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_json(os.path.join(FLAGS.out_dir, "dense_latency.json"),
               {"command": command, "entries": entries, "ratios": ratios, "runs": FLAGS.runs,
                "threads": FLAGS.threads, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    write_text(os.path.join(FLAGS.out_dir, "dense_latency.md"), text)


if __name__ == "__main__":
    app.run(main)

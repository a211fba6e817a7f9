r"""Full-integer int8 TFLite vs float on real held-out images: top-1 agreement and accuracy.

    python -m ef_keras.train --data embedded --model benchmarks/results/int8_agreement_arch.json --out runs/fm --epochs 4 --steps-per-epoch 150
    python -m benchmarks.int8_agreement --model runs/fm/model.keras --data embedded --images 5000 \
        --gelu-forms tanh,sigmoid
    python -m benchmarks.int8_agreement --model l1 --weights l1.safetensors --data /data/imagenette  # ImageNet weights
    python -m benchmarks.int8_agreement --model s0 --weights imagenet --data /data/imagenette  # V2, any registered name

The trained model is converted with `deploy.to_tflite(precision="int8")` (the int8 export
graph, one XNNPACK partition), calibrated on `--calibration_images` images of the *train*
split, and run on `--images` images of the held-out split with the eval preprocessing of
training (`ef_keras.data.make_dataset`); the first command above trains the README's model. To measure each of the default's choices
(`deploy.int8_graph`) it also converts the export graph with one choice changed: min/max
activation ranges instead of percentile ranges (with folding and range floors, otherwise
the export graph before this round), the input convolution in float, per-tensor weights; the
default with fewer calibration images (`--calibration_sweep`, which sets the fewest images
the percentile ranges accept); the converter's plain full-integer model (no export graph,
no float islands: 38 partitions for L1); int8-dynamic (int8 weights only, which separates
the error of the int8 weights from that of the int8 activations) and, with
`--gelu_forms`, the opt-in GELU approximations. For each: top-1 agreement with the Keras
float model, the accuracy of both against the labels, and the XNNPACK partitions.
Agreement of randomly initialised logits says nothing, so `--model` must be trained. With
ImageNet weights and an ImageFolder whose classes are not ImageNet's, the accuracies are
meaningless but the agreement is not. Goal (`benchmarks/goals.json`, issue 24): the default
int8 model agrees with float on >= 99 % of the images (`int8_top1_agreement`).

Writes benchmarks/results/int8_agreement.json.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import define_results_dir_flag, finish, goals  # noqa: E402
from ef_keras import provenance  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "int8_agreement.json"
DEFAULT = "int8 (default: percentile ranges, per-channel weights), GELU exact"


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("model", None, "Trained .keras model (e.g. model.keras of a training run), or a registered "
                        "name (l1, l3, l7, s0, s1, s2, l) / ARCH.json of either family with --weights.", required=True)
    flags.DEFINE_string("weights", None, "Checkpoint for --model NAME/ARCH.json (e.g. timm's ImageNet weights).")
    flags.DEFINE_integer("image-size", 224, "Input size for --model NAME/ARCH.json.", lower_bound=32)
    flags.DEFINE_string("data", "embedded", "Dataset of the training run (ef_keras.data name or ImageFolder).")
    flags.DEFINE_string("data-dir", None, "tfds data directory.")
    flags.DEFINE_integer("images", 5000, "Held-out images to compare on.", lower_bound=1)
    flags.DEFINE_integer("calibration-images", 64, "Train-split images for int8 calibration.", lower_bound=1)
    flags.DEFINE_list("gelu-forms", [], "Opt-in GELU approximations to measure as well (sigmoid, tanh).")
    flags.DEFINE_list("calibration-sweep", ["16", "32"], "Also convert the default with this many calibration images.")
    define_results_dir_flag()


def load_split(split, count, image_size):
    """(x float32 NHWC, y int) of `split` (None: the held-out one) with training's eval preprocessing."""
    import numpy as np

    from ef_keras.data import make_dataset

    ds = make_dataset(FLAGS.data, split, data_dir=FLAGS["data-dir"].value, image_size=image_size, batch_size=250)
    xs, ys = [], []
    for images, labels in ds:
        xs.append(images.numpy())
        ys.append(labels.numpy().argmax(-1))
        if sum(len(y) for y in ys) >= count:
            break
    return np.concatenate(xs)[:count], np.concatenate(ys)[:count]


def evaluate(label, path, report, x, y, float_pred):
    import numpy as np

    from deploy import tflite

    start = time.time()
    pred = tflite.run(path, x).argmax(-1)
    return {"model": label, "partitions": report["xnnpack"]["partitions"],
            "reference_ops": report.get("xnnpack_reference_ops") or tflite.reference_ops(path),
            "agreement": float(np.mean(pred == float_pred)), "accuracy": float(np.mean(pred == y)),
            "float_accuracy": float(np.mean(float_pred == y)), "images": int(len(y)),
            "float_graph_max_abs_diff": (report.get("export_graph") or {}).get("float_max_abs_diff"),
            "seconds": round(time.time() - start, 1)}


def main(argv):
    del argv
    run = provenance.start()
    import keras
    import numpy as np

    import deploy
    import ef_keras
    from deploy import common, export_graph, tflite

    if FLAGS.model.endswith(".keras"):
        model = keras.saving.load_model(FLAGS.model, compile=False)
    else:
        model = ef_keras.registry.build_model(FLAGS.model, weights=FLAGS.weights,
                                              input_shape=(FLAGS["image-size"].value,) * 2 + (3,))
    size = int(model.inputs[0].shape[1])
    calib, _ = load_split("train", FLAGS["calibration-images"].value, size)
    x, y = load_split(None, FLAGS.images, size)
    float_pred = model.predict(x, batch_size=250, verbose=0).argmax(-1)
    work = tempfile.mkdtemp(prefix="int8_agreement_")
    spec = common.input_spec(model)
    rows = []

    def add(label, path, report=None, **extra):
        report = report or {"xnnpack": tflite.xnnpack_summary(path)}
        rows.append({**evaluate(label, path, report, x, y, float_pred), **extra})
        print(f"{label}: agreement {rows[-1]['agreement']:.2%}", flush=True)

    def variant(label, **kwargs):  # the int8 export graph with one choice changed, converted directly
        path = os.path.join(work, f"{len(rows)}.tflite")
        graph, _ = export_graph.export_model(model, int8=True)
        with open(path, "wb") as f:
            f.write(tflite.convert(graph, spec, "int8", calib, **kwargs))
        add(label, path)

    for form in ["exact", *FLAGS["gelu-forms"].value]:
        path = os.path.join(work, f"int8_{form}.tflite")
        report = deploy.to_tflite(model, path, precision="int8", calibration_data=calib, int8_gelu=form)
        # the float delta of the approximation itself, on the held-out images
        graph_pred = (export_graph.export_model(model, int8=True, gelu_form=form)[0].predict(
            x, batch_size=250, verbose=0).argmax(-1) if form != "exact" else float_pred)
        add(DEFAULT.replace("exact", form), path, report,
            approx_float_accuracy=float(np.mean(graph_pred == y)))
    variant("int8, min/max ranges (`--int8-ranges minmax`)", ranges="minmax")
    variant("int8, input conv in float", float_input_conv=True)
    variant("int8, per-tensor weights", per_channel=False)
    for count in map(int, FLAGS["calibration-sweep"].value):
        path = os.path.join(work, f"int8_calib{count}.tflite")
        report = deploy.to_tflite(model, path, precision="int8", calibration_data=calib[:count])
        add(f"int8 (default), {count} calibration images", path, report)
    plain = os.path.join(work, "int8_plain.tflite")
    with open(plain, "wb") as f:
        f.write(tflite.convert(model, spec, "int8", calib, float_ops=()))
    add("int8, plain converter", plain)
    dynamic = os.path.join(work, "int8_dynamic.tflite")
    add("int8-dynamic (int8 weights, float activations)", dynamic,
        deploy.to_tflite(model, dynamic, precision="int8-dynamic"))
    result = {"model": FLAGS.model, "data": FLAGS.data, "calibration_images": FLAGS["calibration-images"].value,
              "rows": rows}
    return finish(run, RESULT, result, render)


def render(result: dict) -> str:
    """The README table and verdict of an int8_agreement result."""
    rows = result["rows"]
    lines = ["| TFLite model (one choice changed from the default) | XNNPACK partitions | top-1 agreement with float "
             "| int8 top-1 | float top-1 of the approximated graph |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['partitions']} | {r['agreement']:.2%} | {r['accuracy']:.2%} | "
              f"{'-' if 'approx_float_accuracy' not in r else format(r['approx_float_accuracy'], '.2%')} |"
              for r in rows]
    text = "\n".join(lines) + (f"\n\n`{result['model']}` (float top-1 {rows[0]['float_accuracy']:.2%}) on "
                               f"{rows[0]['images']:,} held-out images of `{result['data']}`, int8 calibrated on "
                               f"{result['calibration_images']} train-split images; one image is "
                               f"{1 / rows[0]['images']:.2%}.")
    default = next((r for r in rows if r["model"] == DEFAULT), None)
    if default:
        goal, agreement = goals.goal("int8_top1_agreement"), 100 * default["agreement"]
        text += f" Goal ({goal.what} {goal.bound}, {goal.source}): {goal.verdict(agreement, f'{agreement:.2f} %')}."
    return text


if __name__ == "__main__":
    define_flags()
    run_cli(main)

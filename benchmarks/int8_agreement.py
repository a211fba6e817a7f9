r"""Full-integer int8 TFLite vs float on real held-out images: top-1 agreement and accuracy.

    python -m ef_keras.train --data embedded --model benchmarks/results/int8_agreement_arch.json --out runs/fm --epochs 4 --steps-per-epoch 150
    python benchmarks/int8_agreement.py --model runs/fm/model.keras --data embedded --images 5000
    python benchmarks/int8_agreement.py --model l1 --weights l1.safetensors --data /data/imagenette  # ImageNet weights
    python benchmarks/int8_agreement.py --model s0 --weights imagenet --data /data/imagenette  # V2, any registered name

The trained model is converted with `deploy.to_tflite(precision="int8")` (the int8 export
graph, one XNNPACK partition), calibrated on `--calibration_images` images of the *train*
split, and run on `--images` images of the held-out split with the eval preprocessing of
training (`ef_keras.data.make_dataset`). To measure each of the default's choices
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
meaningless but the agreement is not.

Writes benchmarks/results/int8_agreement.{json,md} and prints the table.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "trained .keras model (e.g. model.keras of a training run), or a registered name "
                    "(l1, l3, l7, s0, s1, s2, l) / ARCH.json of either family with --weights")
flags.DEFINE_string("weights", None, "checkpoint for --model NAME/ARCH.json (e.g. timm's ImageNet weights)")
flags.DEFINE_integer("image_size", 224, "input size for --model NAME/ARCH.json")
flags.DEFINE_string("data", "embedded", "dataset of the training run (ef_keras.data name or ImageFolder)")
flags.DEFINE_string("data_dir", None, "tfds data directory")
flags.DEFINE_integer("images", 5000, "held-out images to compare on")
flags.DEFINE_integer("calibration_images", 64, "train-split images for int8 calibration")
flags.DEFINE_list("gelu_forms", [], "opt-in GELU approximations to measure as well (sigmoid, tanh)")
flags.DEFINE_list("calibration_sweep", ["16", "32"], "also convert the default with this many calibration images")
flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "where int8_agreement.{json,md} go")


def load_split(split, count, image_size):
    """(x float32 NHWC, y int) of `split` (None: the held-out one) with training's eval preprocessing."""
    import numpy as np

    from ef_keras.data import make_dataset

    ds = make_dataset(FLAGS.data, split, data_dir=FLAGS.data_dir, image_size=image_size, batch_size=250)
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
    import keras
    import numpy as np

    import deploy
    import ef_keras
    from deploy import common, export_graph, tflite

    if FLAGS.model.endswith(".keras"):
        model = keras.saving.load_model(FLAGS.model, compile=False)
    else:
        model = ef_keras.registry.build_model(FLAGS.model, weights=FLAGS.weights,
                                              input_shape=(FLAGS.image_size, FLAGS.image_size, 3))
    size = int(model.inputs[0].shape[1])
    calib, _ = load_split("train", FLAGS.calibration_images, size)
    x, y = load_split(None, FLAGS.images, size)
    float_pred = model.predict(x, batch_size=250, verbose=0).argmax(-1)
    work = tempfile.mkdtemp(prefix="int8_agreement_")
    spec = common.input_spec(model)
    rows = []

    def add(label, path, report=None, **extra):
        report = report or {"xnnpack": tflite.xnnpack_summary(path)}
        rows.append({**evaluate(label, path, report, x, y, float_pred), **extra})

    def variant(label, **kwargs):  # the int8 export graph with one choice changed, converted directly
        path = os.path.join(work, f"{len(rows)}.tflite")
        graph, _ = export_graph.export_model(model, int8=True)
        with open(path, "wb") as f:
            f.write(tflite.convert(graph, spec, "int8", calib, **kwargs))
        add(label, path)

    for form in ["exact", *FLAGS.gelu_forms]:
        path = os.path.join(work, f"int8_{form}.tflite")
        report = deploy.to_tflite(model, path, precision="int8", calibration_data=calib, int8_gelu=form)
        # the float delta of the approximation itself, on the held-out images
        graph_pred = (export_graph.export_model(model, int8=True, gelu_form=form)[0].predict(
            x, batch_size=250, verbose=0).argmax(-1) if form != "exact" else float_pred)
        add(f"int8 (default: percentile ranges, per-channel weights), GELU {form}", path, report,
            approx_float_accuracy=float(np.mean(graph_pred == y)))
    variant("int8, min/max ranges (`--int8-ranges minmax`)", ranges="minmax")
    variant("int8, input conv in float", float_input_conv=True)
    variant("int8, per-tensor weights", per_channel=False)
    for count in map(int, FLAGS.calibration_sweep):
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
    table = markdown(rows)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "int8_agreement.json"), "w") as f:
        json.dump({"command": "python " + " ".join(sys.argv), "rows": rows}, f, indent=2)
    with open(os.path.join(FLAGS.out_dir, "int8_agreement.md"), "w") as f:
        f.write(table)
    print(table)


def markdown(rows):
    head = ("| model | XNNPACK partitions | top-1 agreement with float | int8 top-1 | float top-1 "
            "| float top-1 of the approximated graph | images |\n|---|---|---|---|---|---|---|\n")
    return (f"Command: `python {' '.join(sys.argv)}`\n\n" + head + "".join(
        f"| {r['model']} | {r['partitions']} | {r['agreement']:.2%} | {r['accuracy']:.2%} | {r['float_accuracy']:.2%} "
        f"| {'-' if 'approx_float_accuracy' not in r else format(r['approx_float_accuracy'], '.2%')} "
        f"| {r['images']} |\n" for r in rows))


if __name__ == "__main__":
    flags.mark_flag_as_required("model")
    app.run(main)

r"""EfficientFormer-L1 vs MobileNetV3-Large as detection/segmentation backbones on the composed dense task.

    python -m benchmarks.dense_task                       # ~35 min on 2 cores (det needs the [dense] extra)
    python -m benchmarks.dense_task --tasks seg --seconds 120

Data: `ef_keras.tasks.dense_data.compose` puts Fashion-MNIST scans from the shipped subset on
128x128 canvases (1-3 objects, 1.5-3x their 28 px size): --train canvases from the train
split, --val from the held-out split (disjoint scans, another seed).

Per task and backbone (both from random init: no ImageNet weights offline; same input, the
ImageNet-normalised canvas): the same head (`SemanticFPN`, keras-hub's `RetinaNet`), the
same optimizer (AdamW, --lr, wd 1e-4, batch --batch) and the same wall-clock training budget
(--seconds, counted from the end of the first step so tracing does not eat into it). Before
training each model is scored as it is (the untrained baseline); after, again: mIoU over
the 11 labels (background + 10 classes) and COCO box mAP (pycocotools) over the 10 classes.

Writes benchmarks/results/dense_task.json and prints the table.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import define_results_dir_flag, finish  # noqa: E402
from ef_keras import provenance  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "dense_task.json"
BACKBONES = ("efficientformer_l1", "mobilenet_v3_large")


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_multi_enum("tasks", ["seg", "det"], ["seg", "det"],
                            "seg (SemanticFPN, mIoU) and/or det (RetinaNet, mAP; needs the [dense] extra)")
    flags.DEFINE_multi_enum("backbones", list(BACKBONES), BACKBONES, "backbones to compare")
    flags.DEFINE_integer("seconds", 180, "training wall-clock budget per model (after the first step)", lower_bound=1)
    flags.DEFINE_integer("train", 2048, "training canvases", lower_bound=1)
    flags.DEFINE_integer("val", 128, "held-out canvases", lower_bound=1)
    flags.DEFINE_integer("size", 128, "canvas side (multiple of 128 for RetinaNet's P7)", lower_bound=32)
    flags.DEFINE_integer("batch", 8, "batch size", lower_bound=1)
    flags.DEFINE_float("lr", 1e-3, "AdamW learning rate (both backbones)", lower_bound=0)
    flags.DEFINE_integer("seed", 0, "data and init seed")
    define_results_dir_flag()


class Budget:
    """A Keras callback that stops training `seconds` after the first step ended (tracing excluded)."""

    def __new__(cls, seconds):
        import keras

        class _Budget(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.start, self.steps = None, 0

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1
                if self.start is None:
                    self.start = time.perf_counter()
                elif time.perf_counter() - self.start >= seconds:
                    self.model.stop_training = True

        return _Budget()


def backbone(name, size):
    import ef_keras
    from ef_keras.tasks.segmentation import mobilenet_v3_large_pyramid

    if name == "efficientformer_l1":
        return ef_keras.EfficientFormer("l1", include_top=False, input_shape=(size, size, 3))
    return mobilenet_v3_large_pyramid((size, size, 3))


def _optimizer():
    import keras

    return keras.optimizers.AdamW(FLAGS.lr, weight_decay=1e-4)


def run_seg(name, train, val, x_train, x_val):
    import keras

    from ef_keras.tasks.segmentation import IGNORE_LABEL, SemanticFPN, mean_iou

    keras.utils.set_random_seed(FLAGS.seed)
    model = SemanticFPN(backbone(name, FLAGS.size), num_classes=train.num_seg_classes)
    before = mean_iou(model, x_val, val.masks)
    model.compile(_optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL),
                  jit_compile=False)
    budget = Budget(FLAGS.seconds)
    start = time.perf_counter()
    model.fit(x_train, train.masks.astype("int32"), batch_size=FLAGS.batch, epochs=1000, callbacks=[budget],
              verbose=0)
    wall = time.perf_counter() - start
    after = mean_iou(model, x_val, val.masks)
    return {"task": "seg", "backbone": name, "params": model.count_params(), "steps": budget.steps,
            "epochs": round(budget.steps * FLAGS.batch / len(x_train), 2), "train_seconds": round(wall, 1),
            "untrained": before["miou"], "trained": after["miou"], "pixel_accuracy": after["pixel_accuracy"]}


def run_det(name, train, val, x_train, x_val):
    import keras

    from ef_keras.tasks.detection import coco_map, retinanet

    keras.utils.set_random_seed(FLAGS.seed)
    model = retinanet(backbone(name, FLAGS.size), num_classes=train.num_classes)
    model.compile(optimizer=_optimizer(), jit_compile=False)
    targets = val.detection_targets()

    def score():
        return coco_map(model.predict(x_val, batch_size=16, verbose=0), targets, (FLAGS.size, FLAGS.size))

    before = score()
    budget = Budget(FLAGS.seconds)
    start = time.perf_counter()
    model.fit(x_train, train.detection_targets(), batch_size=FLAGS.batch, epochs=1000, callbacks=[budget],
              verbose=0)
    wall = time.perf_counter() - start
    after = score()
    return {"task": "det", "backbone": name, "params": model.count_params(), "steps": budget.steps,
            "epochs": round(budget.steps * FLAGS.batch / len(x_train), 2), "train_seconds": round(wall, 1),
            "untrained": before["map"], "trained": after["map"], "map50": after["map50"]}


def render(result: dict) -> str:
    """The README table of a dense_task result."""
    st = result["settings"]
    lines = ["| task | backbone | params | steps (epochs) | untrained | trained | also |",
             "|---|---|---:|---|---:|---:|---|"]
    for r in result["rows"]:
        task, metric = (("SemanticFPN", "mIoU") if r["task"] == "seg" else ("RetinaNet (keras-hub)", "COCO mAP"))
        extra = f"pixel accuracy {r['pixel_accuracy']:.3f}" if r["task"] == "seg" else f"mAP50 {r['map50']:.3f}"
        lines.append(f"| {task}, {metric} | {r['backbone']} | {r['params'] / 1e6:.2f} M | {r['steps']} ({r['epochs']}) "
                     f"| {r['untrained']:.3f} | {r['trained']:.3f} | {extra} |")
    return ("\n".join(lines) + f"\n\n{st['train']} training / {st['val']} held-out {st['size']} px canvases, "
            f"{st['seconds']} s of training per model after its first step, AdamW lr {st['lr']:g}, "
            f"batch {st['batch']}, random init; background is {result['background_fraction_val']:.1%} of the held-out "
            "pixels.")


def main(argv):
    del argv
    run = provenance.start(packages=("keras-hub", "pycocotools"))
    import numpy as np

    from ef_keras.data import normalize
    from ef_keras.tasks.dense_data import compose

    common = dict(canvas_size=(FLAGS.size, FLAGS.size), max_objects=3, scale=(1.5, 3.0))
    train = compose("embedded", "train", num_images=FLAGS.train, seed=FLAGS.seed, **common)
    val = compose("embedded", "validation", num_images=FLAGS.val, seed=FLAGS.seed + 1, **common)
    x_train = np.asarray(normalize(train.images.astype("float32")))
    x_val = np.asarray(normalize(val.images.astype("float32")))
    rows = []
    for task in FLAGS.tasks:
        for name in FLAGS.backbones:
            t0 = time.time()
            row = (run_seg if task == "seg" else run_det)(name, train, val, x_train, x_val)
            row["total_seconds"] = round(time.time() - t0, 1)
            rows.append(row)
            print(row, flush=True)
    result = {"rows": rows, "background_fraction_val": float((val.masks == 0).mean()),
              "settings": {k: FLAGS[k].value for k in ("seconds", "train", "val", "size", "batch", "lr", "seed")}}
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

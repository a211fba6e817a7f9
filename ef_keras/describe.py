"""`python -m ef_keras.describe`: build EfficientFormer models and print what they are.

For each model: parameters (timm's and the paper's convention), GMACs, and the median
single-image latency under `tf.function` on this machine; with `--image`, the top-5
classes of that image. This is the quickest end-to-end check of an install:

    python -m ef_keras.describe --model l1,l3 --weights ckpt.safetensors --image cat.jpg
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from ef_keras.checks import check_int  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402
from ef_keras.errors import InputError  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    flags.DEFINE_list("model", ["l1"], "Variants (l1, l3, l7) or architecture JSON paths, comma-separated.")
    flags.DEFINE_string("weights", None, "Checkpoint (.safetensors/.pth, official or timm layout) or 'imagenet'.")
    flags.DEFINE_string("image", None, "An image file to classify (evaluated as the model's preset says: "
                        "crop 0.95, bicubic).")
    flags.DEFINE_integer("runs", 20, "Timed single-image runs for the latency median.", lower_bound=1)


def latency_ms(model, runs: int, warmup: int = 3) -> float:
    """Median single-image latency of `model` under tf.function (inference mode)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    x = tf.random.normal((1, *model.input_shape[1:]))
    for _ in range(warmup):
        fn(x).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x).numpy()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def read_image(path: str) -> np.ndarray:
    """Decodes an image file into (H, W, 3) uint8 RGB; InputError when it is missing or not an image."""
    import tensorflow as tf

    if not os.path.isfile(path):
        raise InputError(f"--image {path} is not an image file; give the path of a .jpg or .png")
    try:
        data = tf.io.read_file(path)
        return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        raise InputError(f"cannot read image {path}: {e.message.splitlines()[0]}") from e


def top5(model, image: np.ndarray) -> list[tuple]:
    """The model's five most probable classes for a decoded image, evaluated as its preset says.

    The image goes through the preset's eval transform (resize + centre crop) and
    normalisation (`ef_keras.presets`); rows are (index, probability), plus the class id and
    name when the model predicts the preset's classes.
    """
    from ef_keras.presets import decode_predictions, preset_for
    from ef_keras.preprocessing import eval_transform, preprocess_input

    preset = preset_for(model.config.name)
    pixels = eval_transform(image, tuple(model.input_shape[1:3]), preset=preset).numpy()[None]
    logits = model.predict(preprocess_input(pixels, preset), verbose=0)
    if not np.isfinite(logits).all():
        raise InputError(f"{model.config.name} gives NaN or Inf logits: its weights are not finite; "
                         "use another checkpoint")
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    best = np.argsort(-probs[0], kind="stable")[:5]
    if probs.shape[1] != preset.num_classes:
        return [(int(i), float(probs[0, i])) for i in best]
    return [(int(i), p, wnid, label) for i, (wnid, label, p) in zip(best, decode_predictions(probs, top=5)[0])]


def describe(models, weights=None, image=None, runs=20) -> list[dict]:
    """Builds each model and returns one row per model (the CLI prints them)."""
    import ef_keras
    from ef_keras.registry import build_model

    check_int("--runs", runs, low=1)
    pixels = None if image is None else read_image(image)  # a bad --image fails before any model is built
    rows = []
    for name in models:
        model = build_model(name, weights=weights)  # any registered variant or architecture JSON, either family
        row = {**ef_keras.model_info(model), "latency_ms": latency_ms(model, runs)}
        if pixels is not None:
            row["top5"] = top5(model, pixels)
        rows.append(row)
    return rows


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; give models with --model")
    import ef_keras

    rows = describe(FLAGS.model, FLAGS.weights, FLAGS.image, FLAGS.runs)
    print(f"{'model':<12}{'params (timm)':>15}{'params (paper)':>16}{'GMACs':>8}{'tf.function ms':>16}")
    for r in rows:
        print(f"{r['name']:<12}{r['params_all']:>15,}{r['params_paper']:>16,}{r['gmacs']:>8.3f}"
              f"{r['latency_ms']:>16.1f}")
        if "top5" in r:
            print("  top-5 (class index: probability[, name]): "
                  + ", ".join(f"{t[0]}: {t[1]:.3f}" + (f" {t[3]}" if len(t) > 2 else "") for t in r["top5"]))
    print(f"(ef_keras {ef_keras.__version__}; latency = median of {FLAGS.runs} single-image runs on this machine)")
    return 0


def run():
    """Console entry point (`ef-describe`, `python -m ef_keras.describe`)."""
    define_flags()
    run_cli(main)


if __name__ == "__main__":
    run()

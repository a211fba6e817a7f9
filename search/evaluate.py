"""The search's data splits and how a child of the supernet is scored, image by image.

Splits (issue: one held-out split must not do three jobs). Carved from the dataset's
*training* split with tfds' slicing syntax, which `ef_keras.data` also applies to the
in-memory datasets:

- `search_train` = train[:80%]: supernet weights, and BatchNorm recalibration of children;
- `search_val` = train[80%:]: the architecture parameters α and every slimming decision;
- `test` = the dataset's held-out split: never read by the search; only final numbers
  (`benchmarks/search_quality.py`, the main job's last line) use it.

Scoring (`Scorer`): a child is data for `Supernet.forward`, so no model is built per
candidate. Its BatchNorm statistics are first re-estimated on calibration images from
`search_train` (Once-for-All), then per-image correctness and cross-entropy are computed on
the images asked for. Per-image values let slimming compare candidates *paired*, on the
same images, whose standard error is far smaller than that of two independent means.
"""

from __future__ import annotations

import numpy as np

#: Split specs of the search (module docstring); `val_percent` of the training images score.
VAL_PERCENT = 20


def search_splits(val_percent: int = VAL_PERCENT) -> dict[str, str | None]:
    """{"search_train", "search_val", "test"} split specs; "test" None means the dataset's eval split."""
    if not 0 < val_percent < 100:
        raise ValueError(f"val_percent must be in (0, 100), got {val_percent}")
    return {"search_train": f"train[:{100 - val_percent}%]", "search_val": f"train[{100 - val_percent}%:]",
            "test": None}


def load_split(data: str, split: str | None, image_size: int, data_dir=None, max_images: int | None = None,
               offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images [offset, offset + max_images) of a split as arrays (x float32 NHWC, y int), eval preprocessing.

    `split` None is the dataset's held-out split. The order is the dataset's own (no shuffle),
    so the same arguments always give the same images.
    """
    from ef_keras.data import make_dataset

    ds = make_dataset(data, split, data_dir=data_dir, image_size=image_size, batch_size=100, training=False)
    end = None if max_images is None else offset + max_images
    xs, ys, n = [], [], 0
    for images, labels in ds:
        xs.append(images.numpy())
        ys.append(np.argmax(labels.numpy(), axis=-1))
        n += len(ys[-1])
        if end is not None and n >= end:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    return x[offset:end], y[offset:end]


def per_image_from_logits(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correct: bool (N,), cross-entropy: float64 (N,)) from logits and integer labels."""
    logits = np.asarray(logits, "float64")
    z = logits - logits.max(-1, keepdims=True)
    return np.argmax(logits, -1) == y, np.log(np.exp(z).sum(-1)) - z[np.arange(len(y)), y]


def per_image(model, x: np.ndarray, y: np.ndarray, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """(correct, cross-entropy) per image of a Keras model on (x, y), inference mode."""
    import keras

    logits = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
              for i in range(0, len(x), batch_size)]
    return per_image_from_logits(np.concatenate(logits), y)


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of per-image values (0 for fewer than 2)."""
    values = np.asarray(values, "float64")
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


class Scorer:
    """Scores children of a supernet per image: BatchNorm recalibrated, then inference.

    Args:
        supernet: a `search.supernet.Supernet`.
        calibration: training images whose batch statistics every child's BatchNorms take
            (None: keep the running statistics, e.g. of a previous calibration).
        batch_size: inference batch.
    """

    def __init__(self, supernet, calibration: np.ndarray | None, batch_size: int = 250):
        import tensorflow as tf

        self.supernet, self.calibration, self.batch_size = supernet, calibration, batch_size
        self._calibrate = tf.function(
            lambda x, w, c: supernet.forward(x, w, c, training=True, calibrate=True), autograph=False)
        self._infer = tf.function(lambda x, w, c: supernet.forward(x, w, c, training=False), autograph=False)

    def logits(self, arch, x: np.ndarray) -> np.ndarray:
        """Logits of child `arch` on images x (after recalibrating its BatchNorms)."""
        widths, choices = self.supernet.encode(arch)
        if self.calibration is not None:
            self._calibrate(self.calibration, widths, choices)
        return np.concatenate([self._infer(x[i:i + self.batch_size], widths, choices).numpy()
                               for i in range(0, len(x), self.batch_size)])

    def __call__(self, arch, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(correct, cross-entropy) per image of child `arch` on (x, y)."""
        return per_image_from_logits(self.logits(arch, x), y)

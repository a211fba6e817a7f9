"""An offline dense-prediction task: real scans pasted on larger canvases, with masks and boxes.

No segmentation or detection dataset ships in a package here, so `compose` builds one from
the in-memory classification sets (`ef_keras.data.load_arrays`: the shipped Fashion-MNIST
subset "embedded", or scikit-learn's 8x8 "digits" for the fastest tests). Each canvas gets
1 to `max_objects` images, each scaled by a random integer-free factor and pasted at a random
place where it overlaps no earlier object (so every label is exact: nothing is occluded).

Labels, per canvas:

- ``masks`` (H, W) uint8: 0 for background, ``class + 1`` for the pixels of a pasted object
  whose grey level is above `threshold` (the object's silhouette; the scan's own dark
  surround stays background);
- ``boxes`` (max_objects, 4) float32, ``xyxy`` in pixels (keras-hub's/Keras' "xyxy": x_max
  and y_max exclusive), the tight box of each object's mask; ``box_labels``
  (max_objects,) int32 class ids; both padded with -1 (keras-hub's padding convention).

The canvas is uniform noise below `threshold` (so the silhouette cannot be read off the
background level alone but the mask stays well defined) and every pasted pixel is the
resized scan's. Everything is a pure function of the arguments: the same `seed` gives the
same arrays on any machine (numpy's PCG64 and PIL's bilinear resize of uint8).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ef_keras.checks import check_int, check_number
from ef_keras.errors import EfKerasError

#: Where a compositor draws from; "embedded" is the shipped Fashion-MNIST subset.
SOURCES = ("embedded", "digits", "fashion_mnist")
#: Mask value of the background; object pixels are class + 1.
BACKGROUND = 0
#: Padding value of `boxes` and `box_labels` rows without an object.
PAD = -1


class DenseDataError(EfKerasError):
    """Bad arguments to the dense-task compositor."""


@dataclasses.dataclass(frozen=True)
class DenseSet:
    """A composed dense task (see the module docstring for the label conventions).

    Attributes:
        images: uint8 (N, H, W, 3).
        masks: uint8 (N, H, W); 0 background, class + 1 on object pixels.
        boxes: float32 (N, max_objects, 4) xyxy pixels, -1 rows are padding.
        box_labels: int32 (N, max_objects) class ids, -1 is padding.
        num_classes: classes of the source (10); segmentation has num_classes + 1 labels.
    """

    images: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    box_labels: np.ndarray
    num_classes: int

    @property
    def num_seg_classes(self) -> int:
        """Segmentation labels including the background (num_classes + 1)."""
        return self.num_classes + 1

    def detection_targets(self) -> dict:
        """{"boxes", "labels"} as keras-hub's object detectors take them (format "xyxy")."""
        return {"boxes": self.boxes, "labels": self.box_labels}

    def __len__(self):
        return len(self.images)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _place(rng, canvas_size, size, taken, attempts=20):
    """Top-left (y, x) of a size x size square overlapping no square in `taken`, or None."""
    h, w = canvas_size
    for _ in range(attempts):
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        if all(y + size <= ty or ty + ts <= y or x + size <= tx or tx + ts <= x for ty, tx, ts in taken):
            return y, x
    return None


def compose(source: str = "embedded", split: str = "train", num_images: int = 256, canvas_size=(128, 128),
            max_objects: int = 3, scale=(1.0, 2.0), threshold: int = 32, seed: int = 0) -> DenseSet:
    """Composes `num_images` canvases from `source`'s `split` (see the module docstring).

    Args:
        source: "embedded" (Fashion-MNIST subset), "digits" or "fashion_mnist".
        split: "train" or "validation" (alias "test"); the canvases of the two splits are
            built from disjoint scans.
        num_images: canvases to make.
        canvas_size: (height, width) in pixels; each side must fit the largest scaled object.
        max_objects: at most this many objects per canvas (at least 1 each).
        scale: (low, high) range of the object size as a multiple of the source side (28 for
            Fashion-MNIST, 8 for digits).
        threshold: grey level (0-255) above which a pasted pixel belongs to the object.
        seed: all randomness derives from it.
    """
    from ef_keras.data import load_arrays

    if source not in SOURCES:
        raise DenseDataError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    num_images = check_int("num_images", num_images, low=1, error=DenseDataError)
    max_objects = check_int("max_objects", max_objects, low=1, error=DenseDataError)
    threshold = check_int("threshold", threshold, low=0, high=254, error=DenseDataError)
    seed = check_int("seed", seed, low=0, error=DenseDataError)
    try:
        h, w = (int(check_int("canvas_size", s, low=1, error=DenseDataError)) for s in canvas_size)
        low, high = (check_number("scale", s, low=0, low_open=True, error=DenseDataError) for s in scale)
    except (TypeError, ValueError) as e:
        if isinstance(e, DenseDataError):
            raise
        raise DenseDataError(f"canvas_size and scale must be pairs, got {canvas_size!r} and {scale!r}") from e
    if low > high:
        raise DenseDataError(f"scale must be (low, high) with low <= high, got {scale!r}")
    scans, labels = load_arrays(source, split)
    side = scans.shape[1]
    largest = int(round(side * high))
    if largest > min(h, w) or int(round(side * low)) < 2:
        raise DenseDataError(f"canvas_size {h}x{w} with scale {scale!r} does not fit: objects are "
                             f"{int(round(side * low))}-{largest} px ({source} scans are {side} px; "
                             "objects must be at least 2 px and fit the canvas)")

    rng = np.random.default_rng(seed)
    images = rng.integers(0, threshold + 1, size=(num_images, h, w, 1), dtype=np.uint8).repeat(3, axis=-1)
    masks = np.zeros((num_images, h, w), np.uint8)
    boxes = np.full((num_images, max_objects, 4), PAD, np.float32)
    box_labels = np.full((num_images, max_objects), PAD, np.int32)
    for n in range(num_images):
        taken = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            index = int(rng.integers(len(labels)))
            size = int(round(side * rng.uniform(low, high)))
            spot = _place(rng, (h, w), size, taken)
            if spot is None:  # canvas full: fewer objects on this one
                break
            y, x = spot
            taken.append((y, x, size))
            scan = _resize(np.ascontiguousarray(scans[index, :, :, 0]), size)
            silhouette = scan > threshold
            region = images[n, y:y + size, x:x + size]
            region[silhouette] = scan[silhouette][:, None]
            masks[n, y:y + size, x:x + size][silhouette] = labels[index] + 1
            rows, cols = np.nonzero(silhouette)
            if len(rows):  # an all-dark scan adds no object (and no box)
                k = int(np.count_nonzero(box_labels[n] != PAD))
                boxes[n, k] = (x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1)
                box_labels[n, k] = labels[index]
    for array in (images, masks, boxes, box_labels):
        array.setflags(write=False)
    return DenseSet(images, masks, boxes, box_labels, num_classes=10)

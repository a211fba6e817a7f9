"""Representative data for full-integer quantisation: a tfds name, an image folder, or arrays.

Calibration decides the int8 ranges of every activation, so it must see real inputs; with
none given the caller gets an error, never a silent calibration on random noise.

Accepted sources:
- a directory: every image file below it (a plain folder of images, or an ImageFolder tree
  root/class/*.jpg or root/split/class/*.jpg), resized and centre-cropped to the model input
  as in evaluation (`ef_keras.preprocessing.eval_transform`, the presets' crop and
  interpolation) and normalised like `ef_keras.preprocess_input`;
- one of ef_keras's in-memory datasets (`embedded`, `digits`, `fashion_mnist`; see
  `ef_keras.data.load_arrays`): images spread evenly over its *train* split, so held-out
  images stay unseen;
- a tfds dataset name, optionally with a split (`imagenette`, `imagenet2012:validation`),
  read from the local TFDS data dir without downloading;
- an array (N, *input_shape) or an iterable of such arrays/single samples, already
  preprocessed (for models whose input is not an image, e.g. (B, N, C) tokens).
"""

from __future__ import annotations

import os

import numpy as np

from deploy.common import DeployError, InputSpec
from ef_keras.errors import require
from ef_keras.preprocessing import eval_transform, preprocess_input

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
DEFAULT_SAMPLES = 64


def calibration_samples(source, spec: InputSpec, max_samples: int = DEFAULT_SAMPLES) -> np.ndarray:
    """Returns (n, *spec.shape[1:]) float32 samples from `source`; raises DeployError if unusable."""
    if source is None:
        raise DeployError("int8 TFLite needs calibration data: pass --calibration-data with an image folder, an "
                          "ImageFolder directory or a tfds dataset name (calibration_data=... in Python)")
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if not spec.is_image:
            raise DeployError(f"calibration source {source!r} holds images, but the model input {spec.shape} is not "
                              "an RGB image; pass preprocessed arrays as calibration_data")
        if os.path.isdir(source):
            samples = _folder_samples(source, spec, max_samples)
        elif os.sep in source or os.path.exists(source):
            raise DeployError(f"calibration data {source!r} is not a directory; give an image folder or a tfds name")
        elif source in _in_memory_datasets():
            samples = _in_memory_samples(source, spec, max_samples)
        else:
            samples = _tfds_samples(source, spec, max_samples)
    else:
        samples = _array_samples(source, spec, max_samples)
    if not np.all(np.isfinite(samples)):
        raise DeployError("calibration data contains NaN/Inf values")
    return samples


def _array_samples(source, spec: InputSpec, max_samples: int) -> np.ndarray:
    sample_shape = tuple(spec.shape[1:])
    rows = []
    for item in (source if not isinstance(source, np.ndarray) else [source]):
        item = np.asarray(item, "float32")
        if item.shape == sample_shape:
            item = item[None]
        if item.shape[1:] != sample_shape:
            raise DeployError(f"calibration array of shape {item.shape} does not match the model input "
                              f"(N, {', '.join(map(str, sample_shape))})")
        rows.append(item)
        if sum(len(r) for r in rows) >= max_samples:
            break
    if not rows:
        raise DeployError("calibration data is empty")
    return np.concatenate(rows)[:max_samples]


def _folder_samples(root: str, spec: InputSpec, max_samples: int) -> np.ndarray:
    Image = require("PIL.Image", "deploy", "calibration from an image folder")
    UnidentifiedImageError = Image.UnidentifiedImageError

    files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DeployError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    step = max(1, len(files) // max_samples)  # spread the picks over all classes of an ImageFolder tree
    pixels = []
    for path in files[::step][:max_samples]:
        try:
            with Image.open(path) as img:
                pixels.append(eval_transform(np.asarray(img.convert("RGB")), spec.shape[1:3]).numpy())
        except (UnidentifiedImageError, OSError) as e:
            raise DeployError(f"cannot read calibration image {path}: {e}") from e
    return preprocess_input(np.stack(pixels))


def _in_memory_datasets() -> tuple:
    from ef_keras.data import ARRAY_DATASETS  # imports TensorFlow: only when a name is given

    return ARRAY_DATASETS


def _in_memory_samples(name: str, spec: InputSpec, max_samples: int) -> np.ndarray:
    from ef_keras.data import load_arrays

    images, _ = load_arrays(name, "train")
    picks = images[:: max(1, len(images) // max_samples)][:max_samples]  # evenly spaced: all classes
    return preprocess_input(np.stack([eval_transform(image, spec.shape[1:3]).numpy() for image in picks]))


def _tfds_samples(name: str, spec: InputSpec, max_samples: int) -> np.ndarray:
    tfds = require("tensorflow_datasets", "data", "calibration from a tfds dataset")

    dataset, _, split = name.partition(":")
    try:
        builder = tfds.builder(dataset)
    except Exception as e:  # tfds raises DatasetNotFoundError and friends; one line is enough
        raise DeployError(f"calibration data {name!r} is neither a directory nor a known tfds dataset "
                          f"({type(e).__name__})") from e
    if not split:
        splits = list(builder.info.splits.keys()) or ["train"]
        split = next((s for s in ("validation", "test", "train") if s in splits), splits[0])
    try:
        ds = builder.as_dataset(split=f"{split}[:{max_samples}]", shuffle_files=False)
    except Exception as e:
        raise DeployError(f"tfds dataset {name!r} split {split!r} is not available locally (no download is "
                          f"attempted): {type(e).__name__}; prepare it with `tfds build {dataset}` or pass an "
                          "image folder") from e
    pixels = []
    for example in tfds.as_numpy(ds):
        image = example.get("image") if isinstance(example, dict) else None
        if image is None:
            raise DeployError(f"tfds dataset {name!r} has no 'image' feature")
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
        pixels.append(eval_transform(image[..., :3], spec.shape[1:3]).numpy())
    if not pixels:
        raise DeployError(f"tfds dataset {name!r} split {split!r} is empty")
    return preprocess_input(np.stack(pixels))


"""Input pipelines for training and evaluation: tfds, ImageFolder and an embedded dataset.

`make_dataset(name, ...)` returns a `tf.data.Dataset` of `(images, labels)` batches:
images float32 (B, S, S, 3) normalised with the ImageNet mean/std, labels float32 one-hot
(B, K) (one-hot so that Mixup/CutMix can soften them). `name` is one of

- ``"embedded"``: a Fashion-MNIST subset shipped in the package, ``"digits"``: scikit-learn's
  8x8 digits, ``"fashion_mnist"``: the full Fashion-MNIST from local idx files (see
  `load_arrays`); none uses the network;
- ``"imagenet2012"`` or any other tfds name, read from an already prepared `data_dir`
  (never downloaded; ImageNet can be prepared from its manually downloaded tars);
- the path of an ImageFolder directory ``root/<split>/<class>/<image>``.

Augmentation follows the recipe (facts file §4): random resized crop (area 0.08-1,
aspect 3/4-4/3, bicubic) and horizontal flip, RandAugment, RandomErasing, and per batch
either Mixup (alpha 0.8) or CutMix (alpha 1.0) with probability 0.5 each; the last three are
Keras' own preprocessing layers. Evaluation is `ef_keras.preprocessing.eval_transform`:
the short side resized to size / crop_pct (bicubic), then the centre crop, with the
presets' crop_pct 0.95 unless the recipe sets one (0.875: 256 -> 224).

Determinism: with `deterministic=True` a training epoch is a pure function of
(seed, epoch): shuffling and the crop/flip draws are keyed by (seed, epoch, example index)
with stateless ops, and the Keras layers (whose random state is a variable) are created
afresh per epoch with a derived seed and run sequentially. Resuming mid-epoch therefore
rebuilds the epoch and skips the batches already trained on.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf
import keras

from ef_keras.errors import EfKerasError, require
from ef_keras.presets import DEFAULT
from ef_keras.preprocessing import eval_transform

#: In-memory datasets (`load_arrays`): the package's Fashion-MNIST subset, scikit-learn's digits
#: and the full Fashion-MNIST read from disk.
EMBEDDED, DIGITS, FASHION_MNIST = "embedded", "digits", "fashion_mnist"
ARRAY_DATASETS = (EMBEDDED, DIGITS, FASHION_MNIST)
#: Fixed split of the digits: this many examples (after a seed-0 permutation) are held out.
DIGITS_EVAL_SIZE = 360
_EVAL_SPLITS = ("validation", "val", "test")


class DatasetError(EfKerasError):
    """A dataset that cannot be found, read or used as asked."""


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-time augmentation settings (the recipe's, or lighter ones for tiny data).

    Attributes:
        min_area: random resized crop's smallest area fraction (recipe 0.08); 1.0 with
            `aspect_ratio=(1, 1)` makes it a plain resize.
        aspect_ratio: its aspect-ratio range.
        flip: random horizontal flip.
        randaugment_ops: RandAugment's ops per image (0 = off); magnitude `randaugment_factor`
            (timm's rand-m9 is 9/10 of the maximum).
        erasing_prob: RandomErasing probability (recipe 0.25).
        mixup_alpha / cutmix_alpha: Mixup and CutMix Beta parameters (0 = off). With both on,
            each batch gets one of them (timm's switch_prob 0.5).
    """

    min_area: float = 0.08
    aspect_ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    randaugment_ops: int = 2
    randaugment_factor: float = 0.9
    erasing_prob: float = 0.25
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0


#: Named augmentation presets: the paper's ImageNet recipe, a light one for small/low-res data
#: (digits are not flip-invariant and 8x8 sources do not survive 8 % crops), and none.
AUGMENT_PRESETS = {
    "recipe": Augment(),
    "light": Augment(min_area=0.6, aspect_ratio=(0.85, 1.18), flip=False, randaugment_ops=0, erasing_prob=0.0,
                     mixup_alpha=0.0, cutmix_alpha=0.0),
    "none": Augment(min_area=1.0, aspect_ratio=(1.0, 1.0), flip=False, randaugment_ops=0, erasing_prob=0.0,
                    mixup_alpha=0.0, cutmix_alpha=0.0),
}


def get_augment(augment) -> Augment:
    """An `Augment`, or a preset name from `AUGMENT_PRESETS`."""
    if isinstance(augment, Augment):
        return augment
    if augment not in AUGMENT_PRESETS:
        raise DatasetError(f"unknown augmentation {augment!r}: expected one of {sorted(AUGMENT_PRESETS)}")
    return AUGMENT_PRESETS[augment]


# --------------------------------------------------------------------------- in-memory datasets
#: Fashion-MNIST's classes, in label order (Xiao, Rasul & Vollgraf 2017; Zalando SE, MIT licence).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
#: Where the full Fashion-MNIST idx files are looked for, in order: Keras' dataset cache (where
#: `keras.datasets.fashion_mnist.load_data` finds them without downloading) and Debian's
#: `dataset-fashion-mnist` package.
FASHION_MNIST_DIRS = ("~/.keras/datasets/fashion-mnist", "/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_SUBSET_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets", "fashion_mnist_subset.npz")


def read_fashion_mnist_idx(directory: str):
    """((x_train, y_train), (x_test, y_test)) uint8 (N, 28, 28) / (N,) from the four original idx.gz files.

    The same layout `keras.datasets.fashion_mnist.load_data` reads: a 16-byte header before
    the images, an 8-byte one before the labels.
    """
    import gzip

    out = []
    for split in ("train", "test"):
        images_file, labels_file = (os.path.join(directory, f) for f in _FASHION_FILES[split])
        with gzip.open(labels_file, "rb") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        with gzip.open(images_file, "rb") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(len(labels), 28, 28)
        out.append((images, labels))
    return tuple(out)


def _split_name(name: str, split: str) -> str:
    if split == "train":
        return "train"
    if split in _EVAL_SPLITS:
        return "test"
    raise DatasetError(f"the {name} dataset has splits 'train' and 'validation' (alias 'test'), not {split!r}")


def _split_slice(name: str, split: str, count_of) -> tuple[str, slice]:
    """(base split, slice) of a tfds-style split spec such as "train[80%:]" or "train[:16000]".

    The in-memory datasets take the same slicing syntax as tfds (`tfds.core.ReadInstruction`),
    so a search can carve a validation split from the training images of either kind.
    `count_of(base)` gives the base split's size.
    """
    if "[" not in split:
        return split, slice(None)
    tfds = require("tensorflow_datasets", "data", "slicing a dataset split")
    try:
        instructions = tfds.core.ReadInstruction.from_spec(split)
        base = split.split("[", 1)[0]
        (absolute,) = instructions.to_absolute({base: _Count(count_of(base))})
    except (ValueError, AssertionError) as e:
        raise DatasetError(f"split {split!r} of {name}: {str(e).splitlines()[0]} (write e.g. 'train[:80%]' or "
                           "'train[16000:]', one slice of one split)") from e
    return base, slice(absolute.from_, absolute.to)


@dataclasses.dataclass(frozen=True)
class _Count:
    """What `tfds.core.ReadInstruction.to_absolute` reads of a split: its size."""

    num_examples: int


def _grey_to_rgb(images: np.ndarray) -> np.ndarray:
    return _read_only(np.repeat(images[..., None], 3, axis=-1))


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=8)
def load_arrays(name: str, split: str):
    """An in-memory dataset as uint8 RGB images (N, H, W, 3) and int64 labels (N,), read-only.

    - "embedded" (the default proxy of the search): a class-balanced subset of Fashion-MNIST
      shipped inside the package, 20,000 training and 5,000 held-out 28x28 grey images of 10
      clothing classes (`FASHION_MNIST_CLASSES`); made by `tools/make_fashion_subset.py`
      from the original files (training images from Fashion-MNIST's train split, held-out
      ones from its test split, seed 0). 5,000 held-out images make one image 0.02 %.
    - "digits": scikit-learn's 8x8 handwritten digits (1,797 scans; the last 360 of a seed-0
      permutation are held out), the fastest set for tests. It saturates (~99 %), which is
      why the search no longer uses it by default.
    - "fashion_mnist": the full Fashion-MNIST (60,000 / 10,000) from the idx files in one of
      `FASHION_MNIST_DIRS`; nothing is downloaded.

    Grey levels are copied to 3 channels (digits' 0-16 are scaled to 0-255 first); the
    pipeline resizes them to the training size (bicubic) and normalises with ImageNet
    mean/std like any other image. `split` may be sliced as in tfds ("train[80%:]").
    """
    if name not in ARRAY_DATASETS:
        raise DatasetError(f"{name!r} is not an in-memory dataset; those are {', '.join(ARRAY_DATASETS)}")
    base, part = _split_slice(name, split, lambda base: len(load_arrays(name, base)[1]))
    if part != slice(None):
        images, labels = load_arrays(name, base)
        return _read_only(images[part]), _read_only(labels[part])
    if name == DIGITS:
        images, labels = _digits(_split_name(name, split))
    elif name == EMBEDDED:
        with np.load(_SUBSET_FILE) as f:
            key = _split_name(name, split)
            images, labels = f[f"x_{key}"], f[f"y_{key}"]
    else:
        images, labels = _full_fashion_mnist()[0 if _split_name(name, split) == "train" else 1]
    return _grey_to_rgb(images), _read_only(labels.astype("int64"))


def _digits(split: str):
    load_digits = require("sklearn.datasets", "data", "the digits dataset").load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    n_train = len(order) - DIGITS_EVAL_SIZE
    idx = order[:n_train] if split == "train" else order[n_train:]
    return np.round(digits.images[idx] * (255.0 / 16.0)).astype("uint8"), digits.target[idx]


def _full_fashion_mnist():
    for directory in FASHION_MNIST_DIRS:
        directory = os.path.expanduser(directory)
        if all(os.path.isfile(os.path.join(directory, f)) for pair in _FASHION_FILES.values() for f in pair):
            return read_fashion_mnist_idx(directory)
    raise DatasetError("the full Fashion-MNIST is not on this machine: run `apt-get install dataset-fashion-mnist` "
                       "(Debian), or call keras.datasets.fashion_mnist.load_data() once on a connected machine; "
                       f"looked in {', '.join(FASHION_MNIST_DIRS)}. `--data embedded` ships a 25,000-image subset")


# --------------------------------------------------------------------------- sources
def _is_folder(name: str) -> bool:
    return os.sep in name or name.startswith(".") or os.path.isdir(name)


def _folder_builder(root: str):
    if not os.path.isdir(root):
        raise DatasetError(f"ImageFolder directory {root!r} does not exist")
    tfds = require("tensorflow_datasets", "data", "reading a tfds or ImageFolder dataset")

    builder = tfds.folder_dataset.ImageFolder(root)
    if not builder.info.splits or not any(builder.info.splits[s].num_examples for s in builder.info.splits):
        raise DatasetError(f"ImageFolder {root!r} has no images: expected {root}/<split>/<class>/<image>.jpg|png "
                           "(e.g. train/cat/1.jpg and val/cat/2.jpg)")
    return builder


def _tfds_builder(name: str, data_dir):
    tfds = require("tensorflow_datasets", "data", "reading a tfds or ImageFolder dataset")

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DatasetError(f"unknown dataset {name!r}: use 'embedded', 'imagenet2012', a prepared tfds dataset name "
                           "(tfds.list_builders()) or an ImageFolder directory root/<split>/<class>/<image>") from e


def _builder(name: str, data_dir):
    return _folder_builder(name) if _is_folder(name) else _tfds_builder(name, data_dir)


def num_classes_of(name: str, data_dir=None) -> int:
    """Number of classes of a dataset (from its metadata; reads no examples)."""
    if name in ARRAY_DATASETS:
        return 10
    label = _builder(name, data_dir).info.features["label"]
    return int(label.num_classes)


def default_split(name: str, training: bool, data_dir=None) -> str:
    """'train' for training; for eval the first of validation/val/test that the dataset has."""
    if training:
        return "train"
    if name in ARRAY_DATASETS:
        return "validation"
    splits = _builder(name, data_dir).info.splits
    for split in _EVAL_SPLITS:
        if split in splits:
            return split
    if not splits:  # metadata without split sizes (not prepared yet, or tfds mock data): tfds' convention
        return "validation"
    raise DatasetError(f"dataset {name!r} has no evaluation split (looked for {_EVAL_SPLITS}; has {list(splits)})")


def _missing_message(name, data_dir):
    where = data_dir or "~/tensorflow_datasets"
    if name.startswith("imagenet2012"):
        return (f"imagenet2012 is not prepared in {where}: download ILSVRC2012_img_train.tar and "
                f"ILSVRC2012_img_val.tar from image-net.org into {os.path.join(where, 'downloads', 'manual')} "
                "and run again with --prepare (or `tfds build imagenet2012 --data_dir "
                f"{where}`)")
    return (f"dataset {name!r} is not prepared in {where}: prepare it there on a connected machine "
            f"(`tfds build {name} --data_dir {where}`) and copy the directory here; nothing is downloaded")


def _raw_dataset(name, split, data_dir, prepare, shuffle_files, seed):
    """(image, int64 label) examples and the number of examples (or None).

    Images are uint8 (H, W, 3) arrays for the embedded data and encoded bytes (JPEG/PNG) for
    tfds and ImageFolder; `_decode` turns either into uint8 RGB.
    """
    if name in ARRAY_DATASETS:
        images, labels = load_arrays(name, split)
        return tf.data.Dataset.from_tensor_slices((images, labels)), len(labels)

    tfds = require("tensorflow_datasets", "data", "reading a tfds or ImageFolder dataset")

    builder = _builder(name, data_dir)
    if prepare and not _is_folder(name):
        # Only manual datasets (imagenet2012) can be prepared offline; others would download.
        if builder.MANUAL_DOWNLOAD_INSTRUCTIONS is None:
            raise DatasetError(f"--prepare only applies to manually downloaded datasets such as imagenet2012, "
                               f"not {name!r} (preparing it would download)")
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                manual_dir=os.path.join(data_dir or os.path.expanduser("~/tensorflow_datasets"), "downloads",
                                        "manual")))
        except AssertionError as e:
            raise DatasetError(f"{_missing_message(name, data_dir)} ({str(e).splitlines()[0]})") from e
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    try:
        # Images stay encoded until after the shuffle buffer (decoded ImageNet images would need GBs there).
        ds = builder.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config,
                                decoders={"image": tfds.decode.SkipDecoding()})
    except AssertionError as e:
        raise DatasetError(_missing_message(name, data_dir)) from e
    except ValueError as e:
        raise DatasetError(f"dataset {name!r} has no split {split!r} "
                           f"(splits: {list(builder.info.splits)}): {str(e).splitlines()[0]}") from e
    try:
        count = builder.info.splits[split].num_examples or None
    except (KeyError, ValueError):
        count = None
    if _is_folder(name) and not count:
        raise DatasetError(f"ImageFolder {name!r} split {split!r} is empty")
    return ds.map(_plain(lambda ex: (ex["image"], ex["label"])), num_parallel_calls=tf.data.AUTOTUNE), count


# --------------------------------------------------------------------------- transforms
def _as_rgb(image):
    """Encoded bytes are decoded to uint8 RGB (grey becomes 3 channels); arrays pass through."""
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
        return tf.ensure_shape(image, (None, None, 3))
    return image


def _resize(image, size):
    out = tf.image.resize(tf.cast(image, tf.float32), size, method="bicubic", antialias=True)
    return tf.clip_by_value(out, 0.0, 255.0)


def train_transform(image, image_size: int, augment: Augment, seed):
    """Random resized crop (stateless, keyed by `seed` of shape (2,)) and flip (float 0-255)."""
    image = _as_rgb(image)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros((1, 0, 4)), seed=seed, min_object_covered=0.0,
        aspect_ratio_range=augment.aspect_ratio, area_range=(augment.min_area, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = _resize(image, (image_size, image_size))
    if augment.flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    return tf.ensure_shape(image, (image_size, image_size, 3))


def normalize(images):
    """Float images in [0, 255] -> normalised by the presets' mean/std (as `ef_keras.preprocess_input`)."""
    mean = tf.constant(DEFAULT.mean, tf.float32) * 255.0
    std = tf.constant(DEFAULT.std, tf.float32) * 255.0
    return (images - mean) / std


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2 ** 31 - 1)


def _batch_mix(augment: Augment, seed: int):
    """Mixup or CutMix on one batch (Keras layers), chosen per batch by a stateless coin."""
    layers = []
    if augment.mixup_alpha > 0:
        layers.append(keras.layers.MixUp(alpha=augment.mixup_alpha, seed=seed))
    if augment.cutmix_alpha > 0:
        layers.append(keras.layers.CutMix(factor=augment.cutmix_alpha, seed=seed + 1))
    if not layers:
        return None

    def mix(index, batch):
        images, labels = batch
        data = {"images": images, "labels": labels}
        if len(layers) == 1:
            out = layers[0](data, training=True)
        else:
            coin = tf.random.stateless_uniform((), seed=tf.stack([tf.constant(seed, tf.int64), index]))
            out = tf.cond(coin < 0.5, lambda: layers[0](data, training=True), lambda: layers[1](data, training=True))
        return out["images"], out["labels"]

    return mix


def _plain(fn):
    """Marks a tf.data map function as plain TF (no Python control flow): AutoGraph skips it."""
    return tf.autograph.experimental.do_not_convert(fn)


def _augmented(ds, image_size: int, augment: Augment, epoch_seed: int, parallel):
    """The per-image training augmentation: random resized crop and flip keyed by (epoch seed, index), then
    RandAugment and RandomErasing (Keras layers seeded by the epoch)."""
    def crop(index, example):
        image, label = example
        key = tf.stack([tf.constant(epoch_seed, tf.int64), index])
        return train_transform(image, image_size, augment, key), label

    ds = ds.enumerate().map(_plain(crop), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    per_image = []
    if augment.randaugment_ops:
        per_image.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=augment.randaugment_ops,
                                                  factor=augment.randaugment_factor, interpolation="bilinear",
                                                  seed=epoch_seed % 100_003))
    if augment.erasing_prob:
        per_image.append(keras.layers.RandomErasing(factor=augment.erasing_prob, value_range=(0, 255),
                                                    seed=epoch_seed % 100_019))
    if not per_image:
        return ds
    pipeline = keras.layers.Pipeline(per_image)
    return ds.map(_plain(lambda image, label: (pipeline(image, training=True), label)), num_parallel_calls=parallel)


def make_dataset(name: str, split: str | None = None, *, data_dir=None, image_size: int = 224, batch_size: int = 32,
                 training: bool = False, seed: int = 0, epoch: int = 0, augment="recipe",
                 crop_pct: float | None = None, num_classes: int | None = None, deterministic: bool = True,
                 shuffle_buffer: int = 10_000, drop_remainder: bool | None = None, prepare: bool = False, cache: bool = False) -> tf.data.Dataset:
    """One epoch of (images, one-hot labels) batches; see the module docstring.

    Args:
        name: "embedded", "digits", "fashion_mnist", a tfds name (e.g. "imagenet2012") or an
            ImageFolder directory.
        split: dataset split; default "train" for training, else the validation split.
        data_dir: tfds data directory (None: tfds' default ~/tensorflow_datasets).
        image_size: output height = width.
        batch_size: global batch size (a distribution strategy splits it over replicas).
        training: random augmentation and shuffling, else the eval resize + centre crop.
        seed, epoch: a training epoch is a deterministic function of both.
        augment: an `Augment` or a preset name ("recipe", "light", "none").
        crop_pct: eval centre-crop ratio (default: `presets.DEFAULT`'s, timm's 0.95; the
            official eval script's is 0.875). Interpolation and mean/std are the preset's.
        num_classes: one-hot depth (default: the dataset's).
        deterministic: reproducible order and augmentation (slower: the Keras layers run
            sequentially); False lets tf.data run everything in parallel.
        drop_remainder: default True for training, False for eval.
        prepare: prepare imagenet2012 from the tars in <data_dir>/downloads/manual first.
        cache: cache the read (still encoded) examples in memory (small datasets).
    """
    if batch_size <= 0 or image_size <= 0:
        raise DatasetError(f"batch_size and image_size must be positive, got {batch_size} and {image_size}")
    split = split or default_split(name, training, data_dir)
    num_classes = num_classes or num_classes_of(name, data_dir)
    epoch_seed = _epoch_seed(seed, epoch)
    augment = get_augment(augment)
    parallel = None if deterministic else tf.data.AUTOTUNE
    drop_remainder = training if drop_remainder is None else drop_remainder

    ds, count = _raw_dataset(name, split, data_dir, prepare, shuffle_files=training,
                             seed=epoch_seed if training else None)
    if cache:
        ds = ds.cache()
    if training:
        buffer = min(shuffle_buffer, count) if count else shuffle_buffer
        ds = _augmented(ds.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False), image_size, augment,
                        epoch_seed, parallel)
    else:
        ds = ds.map(_plain(lambda image, label: (eval_transform(_as_rgb(image), image_size, crop_pct), label)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    ds = ds.map(_plain(lambda image, label: (image, tf.one_hot(label, num_classes, dtype=tf.float32))),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    mix = _batch_mix(augment, epoch_seed % 100_043) if training else None
    if mix is not None:
        ds = ds.enumerate().map(_plain(mix), num_parallel_calls=parallel)
    ds = ds.map(_plain(lambda images, labels: (normalize(images), labels)), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def split_size(name: str, split: str, data_dir=None) -> int | None:
    """Examples in a (possibly sliced) split, or None when the metadata does not say (tfds mock data)."""
    if name in ARRAY_DATASETS:
        return len(load_arrays(name, split)[1])
    try:
        return _builder(name, data_dir).info.splits[split].num_examples or None
    except (KeyError, ValueError):
        return None


def steps_per_epoch(name: str, batch_size: int, data_dir=None, split: str = "train", cap: int | None = None) -> int:
    """Training batches per epoch (drop_remainder) from the dataset's metadata, at most `cap`.

    When the metadata has no split sizes (e.g. tfds mock data) `cap` is used as is.
    """
    count = split_size(name, split, data_dir)
    if not count:
        if cap:
            return cap
        if _is_folder(name):
            raise DatasetError(f"ImageFolder {name!r} split {split!r} is empty")
        raise DatasetError(_missing_message(name, data_dir))
    if count < batch_size:
        raise DatasetError(f"dataset {name!r} split {split!r} has {count} examples, fewer than one batch of "
                           f"{batch_size}; lower --batch-size")
    return min(count // batch_size, cap) if cap else count // batch_size

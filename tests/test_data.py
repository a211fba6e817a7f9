"""Input pipelines: the embedded Fashion-MNIST subset, the digits, full Fashion-MNIST from disk, tfds (imagenet2012 via tfds' mock data), ImageFolder, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ef_keras import data
from ef_keras.preprocessing import preprocess_input


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_digits_split_is_fixed_disjoint_and_complete():
    from sklearn.datasets import load_digits

    train_x, train_y = data.load_arrays("digits", "train")
    eval_x, eval_y = data.load_arrays("digits", "validation")
    assert train_x.shape == (1437, 8, 8, 3) and eval_x.shape == (360, 8, 8, 3)
    assert train_x.dtype == np.uint8 and train_x.max() == 255
    digits = load_digits()
    ours = {(im[..., 0].tobytes(), int(y)) for im, y in zip(np.concatenate([train_x, eval_x]),
                                                              np.concatenate([train_y, eval_y]))}
    ref = {(np.round(im * 255 / 16).astype(np.uint8).tobytes(), int(y)) for im, y in zip(digits.images, digits.target)}
    assert ours == ref  # every digit exactly once, with its label
    assert set(eval_y) == set(range(10))
    with pytest.raises(data.DatasetError, match="splits 'train' and 'validation'"):
        data.load_arrays("digits", "extra")


def _write_idx(directory, seed=0, n_train=30, n_test=20):
    """Tiny Fashion-MNIST-format files (the idx layout: big-endian magic, dims, then uint8 data)."""
    import gzip
    import struct

    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        with gzip.open(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with gzip.open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())


def test_fashion_mnist_reader_agrees_with_keras_loader(tmp_path):
    """Our idx reader returns what keras.datasets.fashion_mnist.load_data reads from its cache."""
    import subprocess
    import sys

    _write_idx(str(tmp_path / "datasets" / "fashion-mnist"))
    code = ("import numpy as np, keras; (a, b), (c, d) = keras.datasets.fashion_mnist.load_data(); "
            f"np.savez({str(tmp_path / 'keras.npz')!r}, a=a, b=b, c=c, d=d)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "KERAS_HOME": str(tmp_path)},
                   capture_output=True)
    (x_train, y_train), (x_test, y_test) = data.read_fashion_mnist_idx(str(tmp_path / "datasets" / "fashion-mnist"))
    with np.load(tmp_path / "keras.npz") as ref:
        for ours, key in ((x_train, "a"), (y_train, "b"), (x_test, "c"), (y_test, "d")):
            np.testing.assert_array_equal(ours, ref[key])


def test_full_fashion_mnist_from_disk_or_a_clear_error(tmp_path, monkeypatch):
    data.load_arrays.cache_clear()
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (str(tmp_path / "keras"), str(tmp_path / "debian")))
    with pytest.raises(data.DatasetError, match="apt-get install dataset-fashion-mnist"):
        data.load_arrays("fashion_mnist", "train")
    _write_idx(str(tmp_path / "debian"))
    x, y = data.load_arrays("fashion_mnist", "test")
    (_, _), (x_ref, y_ref) = data.read_fashion_mnist_idx(str(tmp_path / "debian"))
    assert x.shape == (20, 28, 28, 3) and np.array_equal(x[..., 1], x_ref) and np.array_equal(y, y_ref)
    batches = _batches(data.make_dataset("fashion_mnist", image_size=32, batch_size=8))
    assert sum(len(b[1]) for b in batches) == 20 and batches[0][0].shape == (8, 32, 32, 3)
    data.load_arrays.cache_clear()


def test_embedded_fashion_subset_is_balanced_and_large_enough():
    train_x, train_y = data.load_arrays("embedded", "train")
    eval_x, eval_y = data.load_arrays("embedded", "validation")
    assert train_x.shape == (20000, 28, 28, 3) and eval_x.shape == (5000, 28, 28, 3)
    assert np.array_equal(np.bincount(eval_y), [500] * 10) and np.array_equal(np.bincount(train_y), [2000] * 10)
    assert len(data.FASHION_MNIST_CLASSES) == 10 and data.num_classes_of("embedded") == 10
    assert len({im.tobytes() for im in eval_x[..., 0]}) == 5000


@pytest.mark.skipif(not os.path.isfile("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_embedded_subset_images_are_fashion_mnist_images_with_their_labels():
    (x_train, y_train), (x_test, y_test) = data.read_fashion_mnist_idx("/usr/share/datasets/fashion-mnist")
    for split, (xs, ys) in (("train", (x_train, y_train)), ("validation", (x_test, y_test))):
        ref = {im.tobytes(): int(label) for im, label in zip(xs, ys)}
        x, y = data.load_arrays("embedded", split)
        assert all(ref.get(im.tobytes()) == int(label) for im, label in zip(x[::50, ..., 0], y[::50]))


def test_training_epochs_are_deterministic_per_seed_and_epoch():
    kwargs = dict(image_size=32, batch_size=64, training=True, augment="light")
    a = _batches(data.make_dataset("digits", seed=3, epoch=0, **kwargs))
    b = _batches(data.make_dataset("digits", seed=3, epoch=0, **kwargs))
    c = _batches(data.make_dataset("digits", seed=3, epoch=1, **kwargs))
    assert len(a) == 1437 // 64 and a[0][0].shape == (64, 32, 32, 3) and a[0][1].shape == (64, 10)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], c[0][0])
    np.testing.assert_allclose(a[0][1].sum(axis=1), 1.0)


def test_recipe_augmentation_runs_and_mixes_labels():
    ds = data.make_dataset("digits", image_size=32, batch_size=16, training=True, augment="recipe", seed=0)
    images, labels = next(iter(ds))
    assert images.shape == (16, 32, 32, 3) and np.isfinite(images.numpy()).all()
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, atol=1e-5)
    assert labels.numpy().max(axis=1).min() < 1.0  # Mixup/CutMix softened the targets


def test_eval_transform_is_resize_then_centre_crop_and_normalised_like_preprocess_input():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    out = data.eval_transform(tf.constant(image), 224, crop_pct=0.875).numpy()
    np.testing.assert_allclose(out, image[16:240, 16:240].astype(np.float32), atol=1e-3)  # 256 -> 256, crop 224
    tall = data.eval_transform(tf.constant(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)), 64)
    assert tall.shape == (64, 64, 3)
    np.testing.assert_allclose(data.normalize(tf.constant(out)).numpy(), preprocess_input(out), atol=1e-5)


def test_eval_pipeline_covers_the_split_once():
    batches = _batches(data.make_dataset("digits", image_size=32, batch_size=100))
    assert sum(len(y) for _, y in batches) == 360
    labels = np.concatenate([y.argmax(1) for _, y in batches])
    assert np.array_equal(labels, data.load_arrays("digits", "validation")[1])


def test_imagenet2012_path_with_tfds_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        assert data.num_classes_of("imagenet2012", str(tmp_path)) == 1000
        assert data.default_split("imagenet2012", False, str(tmp_path)) == "validation"
        train = data.make_dataset("imagenet2012", data_dir=str(tmp_path), image_size=64, batch_size=4,
                                  training=True, augment="recipe")
        images, labels = next(iter(train))
        assert images.shape == (4, 64, 64, 3) and labels.shape == (4, 1000)
        val = _batches(data.make_dataset("imagenet2012", data_dir=str(tmp_path), image_size=64, batch_size=5))
        assert sum(len(y) for _, y in val) == 12 and val[0][0].shape == (5, 64, 64, 3)


def test_missing_and_unknown_datasets_say_what_to_do(tmp_path):
    with pytest.raises(data.DatasetError, match="downloads/manual"):
        data.make_dataset("imagenet2012", data_dir=str(tmp_path), image_size=32, batch_size=2)
    with pytest.raises(data.DatasetError, match="tfds build mnist"):
        data.make_dataset("mnist", data_dir=str(tmp_path), image_size=32, batch_size=2, num_classes=10)
    with pytest.raises(data.DatasetError, match="unknown dataset 'no_such_set'"):
        data.make_dataset("no_such_set", image_size=32, batch_size=2)
    with pytest.raises(data.DatasetError, match="unknown augmentation"):
        data.get_augment("strong")


def _write_folder(root, counts):
    import PIL.Image

    rng = np.random.default_rng(0)
    for split, per_class in counts.items():
        for cls in ("ant", "bee", "cat"):
            os.makedirs(os.path.join(root, split, cls), exist_ok=True)
            for i in range(per_class):
                PIL.Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(
                    os.path.join(root, split, cls, f"{i}.png"))


def test_image_folder(tmp_path):
    root = str(tmp_path / "folder")
    _write_folder(root, {"train": 4, "val": 2})
    assert data.num_classes_of(root) == 3
    assert data.default_split(root, False) == "val"
    batches = _batches(data.make_dataset(root, image_size=32, batch_size=4, training=True, augment="recipe"))
    assert len(batches) == 3 and batches[0][0].shape == (4, 32, 32, 3)
    val = _batches(data.make_dataset(root, image_size=32, batch_size=4))
    assert sum(len(y) for _, y in val) == 6
    os.makedirs(tmp_path / "empty" / "train" / "ant")
    with pytest.raises(data.DatasetError, match="has no images"):
        data.make_dataset(str(tmp_path / "empty"), image_size=32, batch_size=2)

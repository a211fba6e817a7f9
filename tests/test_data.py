"""Input pipelines: the embedded digits, tfds (imagenet2012 via tfds' mock data), ImageFolder, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ef_keras import data
from ef_keras.preprocessing import preprocess_input


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_embedded_split_is_fixed_disjoint_and_complete():
    from sklearn.datasets import load_digits

    train_x, train_y = data.load_embedded("train")
    eval_x, eval_y = data.load_embedded("validation")
    assert train_x.shape == (1437, 8, 8, 3) and eval_x.shape == (360, 8, 8, 3)
    assert train_x.dtype == np.uint8 and train_x.max() == 255
    digits = load_digits()
    ours = {(im[..., 0].tobytes(), int(y)) for im, y in zip(np.concatenate([train_x, eval_x]),
                                                              np.concatenate([train_y, eval_y]))}
    ref = {(np.round(im * 255 / 16).astype(np.uint8).tobytes(), int(y)) for im, y in zip(digits.images, digits.target)}
    assert ours == ref  # every digit exactly once, with its label
    assert np.array_equal(data.load_embedded("train")[1], train_y)  # fixed order
    assert set(eval_y) == set(range(10))
    with pytest.raises(data.DatasetError, match="splits 'train' and 'validation'"):
        data.load_embedded("extra")


def test_training_epochs_are_deterministic_per_seed_and_epoch():
    kwargs = dict(image_size=32, batch_size=64, training=True, augment="light")
    a = _batches(data.make_dataset("embedded", seed=3, epoch=0, **kwargs))
    b = _batches(data.make_dataset("embedded", seed=3, epoch=0, **kwargs))
    c = _batches(data.make_dataset("embedded", seed=3, epoch=1, **kwargs))
    assert len(a) == 1437 // 64 and a[0][0].shape == (64, 32, 32, 3) and a[0][1].shape == (64, 10)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][0], c[0][0])
    np.testing.assert_allclose(a[0][1].sum(axis=1), 1.0)


def test_recipe_augmentation_runs_and_mixes_labels():
    ds = data.make_dataset("embedded", image_size=32, batch_size=16, training=True, augment="recipe", seed=0)
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
    batches = _batches(data.make_dataset("embedded", image_size=32, batch_size=100))
    assert sum(len(y) for _, y in batches) == 360
    labels = np.concatenate([y.argmax(1) for _, y in batches])
    assert np.array_equal(labels, data.load_embedded("validation")[1])


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

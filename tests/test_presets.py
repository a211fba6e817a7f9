"""Presets, the one eval transform and decode_predictions, checked against sources other than our code."""

import os

import numpy as np
import pytest
import tensorflow as tf

import ef_keras
from ef_keras import presets
from ef_keras.preprocessing import eval_transform, preprocess_input


def test_every_preset_is_timms_pretrained_cfg_of_a_registered_variant():
    """timm's pretrained cfgs (efficientformer.py and efficientformer_v2.py `_cfg`): 224 px, crop 0.95, bicubic,
    ImageNet mean/std, 1000 classes, weights at timm/<model>.snap_dist_in1k on the Hugging Face hub."""
    from ef_keras.registry import list_models

    assert {"l1", "l3", "l7"} <= set(presets.PRESETS) <= set(list_models())
    for p in presets.PRESETS.values():
        assert (p.image_size, p.crop_pct, p.interpolation) == (224, 0.95, "bicubic"), p.name
        assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)
        assert p.num_classes == 1000
        assert p.weights_url.startswith("https://huggingface.co/timm/efficientformer")
        assert p.weights_url.endswith(".snap_dist_in1k/resolve/main/model.safetensors")
    l1 = ef_keras.get_preset("l1")
    assert l1.weights_url == ("https://huggingface.co/timm/efficientformer_l1.snap_dist_in1k/resolve/main/"
                              "model.safetensors")
    assert l1.weights_file == "efficientformer_l1.snap_dist_in1k.safetensors"


def test_unknown_preset_is_a_one_line_error():
    with pytest.raises(presets.PresetError, match="no preset 'l9'.*l1, l3, l7"):
        presets.get_preset("l9")
    with pytest.raises(presets.PresetError, match="crop_pct"):
        presets.Preset("x", crop_pct=1.5)
    with pytest.raises(presets.PresetError, match="interpolation"):
        presets.Preset("x", interpolation="cubic")


def test_class_order_is_tfds_imagenet2012s():
    """Our shipped list in index order equals tensorflow_datasets' imagenet2012 labels.txt (an independent copy)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    path = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012", "labels.txt")
    with open(path) as f:
        tfds_synsets = f.read().split()
    assert [wnid for wnid, _ in presets.class_names()] == tfds_synsets


def test_decode_predictions_names_well_known_classes():
    """Indices every ImageNet user knows (keras.applications' imagenet_class_index.json has the same)."""
    known = {0: ("n01440764", "tench"), 207: ("n02099601", "golden retriever"), 281: ("n02123045", "tabby"),
             409: ("n02708093", "analog clock"), 999: ("n15075141", "toilet tissue")}
    preds = np.zeros((len(known), 1000), "float32")
    for row, index in enumerate(known):
        preds[row, index] = 0.9
        preds[row, (index + 1) % 1000] = 0.1
    decoded = ef_keras.decode_predictions(preds, top=2)
    for (index, (wnid, word)), top in zip(known.items(), decoded):
        assert top[0][0] == wnid and top[0][1].split(",")[0] == word and top[0][2] == pytest.approx(0.9)
        assert top[1][2] == pytest.approx(0.1)


def test_decode_predictions_refuses_other_shapes():
    with pytest.raises(presets.PresetError, match=r"shape \(batch, 1000\), got an array of shape \(1, 10\)"):
        ef_keras.decode_predictions(np.zeros((1, 10)))
    with pytest.raises(presets.PresetError, match="top must be"):
        ef_keras.decode_predictions(np.zeros((1, 1000)), top=0)


def test_eval_transform_matches_timms_geometry():
    """timm's eval at 224 / crop 0.95: short side floor(224 / 0.95) = 235, long side int(235·W/H), centre crop
    at round((235 - 224) / 2) = 6 (ties to even) - checked on an image whose pixels encode their coordinates."""
    h, w = 470, 705  # exactly 2x and 3x of the resized 235 x 352.5 -> 352
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([yy * 255.0 / (h - 1), xx * 255.0 / (w - 1), np.zeros_like(yy, float)], -1).astype("float32")
    out = eval_transform(image, 224, 0.95, "bilinear").numpy()
    assert out.shape == (224, 224, 3)
    # A linear ramp stays linear under bilinear resizing: pixel (i, j) of the crop is resized pixel (6 + i, 64 + j)
    # of a 235 x 352 image, whose centre maps back to source row (6 + i + 0.5) * 470 / 235 - 0.5.
    rows = ((6 + np.arange(224) + 0.5) * h / 235 - 0.5) * 255.0 / (h - 1)
    cols = ((64 + np.arange(224) + 0.5) * w / 352 - 0.5) * 255.0 / (w - 1)
    np.testing.assert_allclose(out[:, 0, 0], rows, atol=0.6)
    np.testing.assert_allclose(out[0, :, 1], cols, atol=0.6)


def test_eval_transform_at_the_official_crop_is_a_plain_centre_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    out = eval_transform(tf.constant(image), 224, crop_pct=0.875).numpy()
    np.testing.assert_allclose(out, image[16:240, 16:240].astype(np.float32), atol=1e-3)


def test_eval_transform_defaults_are_the_presets():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    np.testing.assert_array_equal(eval_transform(image, preset="l1").numpy(),
                                  eval_transform(image, 224, 0.95, "bicubic").numpy())
    assert eval_transform(image, (64, 96)).shape == (64, 96, 3)


def test_preprocess_input_uses_the_preset_normalisation():
    pixels = np.array([[[[0.485 * 255, 0.456 * 255, 0.406 * 255]]]])
    np.testing.assert_allclose(preprocess_input(pixels, "l1"), 0.0, atol=1e-6)
    np.testing.assert_allclose(preprocess_input(np.full((1, 1, 1, 3), 255.0)),
                               [[[[(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]]]], rtol=1e-6)

"""Semantic FPN on a pyramid backbone: structure, shapes, serialization, labels, mIoU and the ADE20K path."""

import numpy as np
import pytest
import keras

from ef_keras.tasks.segmentation import (IGNORE_LABEL, PyramidBackbone, SegmentationError, SemanticFPN, ade20k_dataset,
                                   check_labels, mean_iou, mobilenet_v3_large_pyramid)


@pytest.fixture(scope="module")
def mobilenet_fpn():
    return SemanticFPN(mobilenet_v3_large_pyramid((64, 96, 3)), num_classes=5, fpn_channels=32, head_channels=32)


def test_pyramid_backbone_strides():
    backbone = mobilenet_v3_large_pyramid((64, 96, 3))
    shapes = {level: tuple(t.shape[1:3]) for level, t in backbone.pyramid_outputs.items()}
    assert shapes == {"P2": (16, 24), "P3": (8, 12), "P4": (4, 6), "P5": (2, 3)}
    features = keras.Model(backbone.inputs, backbone.pyramid_outputs)([np.zeros((1, 64, 96, 3))])
    assert features["P5"].shape == (1, 2, 3, 960)


def test_output_is_full_resolution_logits(mobilenet_fpn):
    out = mobilenet_fpn.predict(np.random.default_rng(0).normal(size=(2, 64, 96, 3)), verbose=0)
    assert out.shape == (2, 64, 96, 5) and np.isfinite(out).all()


def test_head_follows_kirillov(mobilenet_fpn):
    """Per level max(1, n-2) conv-norm-ReLU stages, x2 upsampling after each except P2's; one 1x1 classifier."""
    names = [layer.name for layer in mobilenet_fpn.layers]
    for level, stages in (("P2", 1), ("P3", 1), ("P4", 2), ("P5", 3)):
        assert sum(n.startswith(f"head_{level}_") and n.endswith("_conv") for n in names) == stages
        assert sum(n.startswith(f"head_{level}_") and n.endswith("_up") for n in names) == (0 if level == "P2"
                                                                                              else stages)
    assert mobilenet_fpn.get_layer("classifier").kernel.shape == (1, 1, 32, 5)
    # each level's head output is at stride 4 before the sum
    assert tuple(mobilenet_fpn.get_layer("head_sum").output.shape[1:3]) == (16, 24)
    assert mobilenet_fpn.get_layer("fpn_lateral_P5").kernel.shape == (1, 1, 960, 32)


def test_keras_round_trip(mobilenet_fpn, tmp_path):
    x = np.random.default_rng(1).normal(size=(1, 64, 96, 3)).astype("float32")
    expected = mobilenet_fpn.predict(x, verbose=0)
    path = str(tmp_path / "fpn.keras")
    mobilenet_fpn.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SemanticFPN) and isinstance(loaded.backbone, PyramidBackbone)
    assert sorted(loaded.backbone.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)
    assert loaded.get_config()["head_channels"] == 32


def test_group_norm_variant_builds():
    model = SemanticFPN(mobilenet_v3_large_pyramid((64, 64, 3)), num_classes=3, fpn_channels=32, head_channels=32,
                        norm="group")
    assert isinstance(model.get_layer("head_P5_2_norm"), keras.layers.GroupNormalization)


@pytest.mark.slow
def test_trains_on_composed_digits():
    from ef_keras.data import normalize
    from ef_keras.tasks.dense_data import compose

    data = compose("digits", "train", num_images=16, canvas_size=(64, 64), scale=(3, 5), seed=0)
    model = SemanticFPN(mobilenet_v3_large_pyramid((64, 64, 3)), num_classes=data.num_seg_classes,
                        fpn_channels=32, head_channels=32)
    model.compile(keras.optimizers.AdamW(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL))
    x = np.asarray(normalize(data.images.astype("float32")))
    history = model.fit(x, data.masks.astype("int32"), batch_size=8, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0] * 0.8


@pytest.mark.parametrize("backbone, message", [
    (keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3)]), "pyramid_outputs dict"),
    ("not a model", "must be a keras.Model"),
])
def test_backbone_without_pyramid_is_refused(backbone, message):
    with pytest.raises(SegmentationError, match=message) as info:
        SemanticFPN(backbone, 3)
    assert "\n" not in str(info.value)


def test_missing_level_is_refused():
    inputs = keras.Input((64, 64, 3))
    p3 = keras.layers.Conv2D(4, 3, strides=8, padding="same")(inputs)
    with pytest.raises(SegmentationError, match="lacks P2, P4, P5"):
        SemanticFPN(PyramidBackbone(inputs, {"P3": p3}), 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=0), "num_classes must be a positive integer"),
    (dict(norm="layer"), "norm must be 'batch' or 'group'"),
    (dict(norm="group", head_channels=48), "multiple of 32"),
    (dict(dropout=1.0), "dropout must be"),
])
def test_bad_arguments(kwargs, message):
    args = dict(num_classes=3)
    args.update(kwargs)
    with pytest.raises(SegmentationError, match=message):
        SemanticFPN(mobilenet_v3_large_pyramid((32, 32, 3)), **args)


def test_label_beyond_num_classes_is_one_line_error():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[1, 2, 3] = 7
    with pytest.raises(SegmentationError) as info:
        check_labels(masks, num_classes=5)
    text = str(info.value)
    assert "\n" not in text and "class 7" in text and "(1, 2, 3)" in text and "num_classes=5" in text
    masks[1, 2, 3] = IGNORE_LABEL
    assert check_labels(masks, 5).dtype == np.int32
    with pytest.raises(SegmentationError, match="class 255"):
        check_labels(masks, 5, ignore_label=None)
    with pytest.raises(SegmentationError, match="integer class ids"):
        check_labels(masks.astype("float32"), 5)


def test_mean_iou_by_hand():
    # An identity "model" on one-hot maps: predictions are exactly what we give it.
    model = keras.Sequential([keras.Input((2, 3, 3)), keras.layers.Identity()])
    pred = np.array([[[0, 0, 1], [1, 2, 2]]])
    truth = np.array([[[0, 1, 1], [1, 2, IGNORE_LABEL]]])
    # class 0: tp 1, fp 1, fn 0 -> 1/2; class 1: tp 2, fp 0, fn 1 -> 2/3; class 2: tp 1 (ignored pixel dropped) -> 1
    result = mean_iou(model, np.eye(3)[pred].astype("float32"), truth)
    np.testing.assert_allclose(result["per_class"], [1 / 2, 2 / 3, 1.0])
    np.testing.assert_allclose(result["miou"], (1 / 2 + 2 / 3 + 1) / 3, rtol=1e-6)
    np.testing.assert_allclose(result["pixel_accuracy"], 4 / 5)
    with pytest.raises(SegmentationError, match="class 3"):
        mean_iou(model, np.eye(3)[pred].astype("float32"), truth + (truth == 2) * 1)


def test_ade20k_not_prepared_is_one_line_error(tmp_path):
    with pytest.raises(SegmentationError, match="not prepared") as info:
        ade20k_dataset(data_dir=str(tmp_path))
    assert "\n" not in str(info.value) and "nothing is downloaded" in str(info.value)


def test_ade20k_pipeline_on_mock_data():
    """tfds' mock data stands in for the prepared dataset (nothing is downloaded): labels 0 -> ignore, k -> k-1."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    annotation = rng.integers(0, 151, size=(40, 60, 1)).astype("uint8")
    annotation[0, 0] = 0
    image = rng.integers(0, 256, size=(40, 60, 3)).astype("uint8")

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensors({"image": image, "annotation": np.repeat(annotation, 3, -1)}).repeat(3)

    with tfds.testing.mock_data(num_examples=3, as_dataset_fn=as_dataset):
        ds = ade20k_dataset("test", image_size=32, batch_size=2)
        images, labels = next(iter(ds))
    assert images.shape == (2, 32, 32, 3) and labels.shape == (2, 32, 32) and labels.dtype == tf.int32
    values = set(np.unique(labels.numpy()))
    assert values <= set(range(150)) | {IGNORE_LABEL}
    # 40x60 -> short side 32: 32x48, centre crop 32x32 starting at column 8; nearest sampling keeps label values
    expected = tf.image.resize(annotation.astype("int32"), (32, 48), method="nearest").numpy()[:, 8:40, 0]
    expected = np.where(expected == 0, IGNORE_LABEL, expected - 1)
    np.testing.assert_array_equal(labels.numpy()[0], expected)


@pytest.mark.parametrize("factor", [2, 4])
def test_upsample_matches_keras_and_pytorch_conventions(factor):
    from ef_keras.tasks.segmentation import Upsample

    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype("float32")
    np.testing.assert_array_equal(Upsample(factor, "nearest")(x), np.repeat(np.repeat(x, factor, 1), factor, 2))
    np.testing.assert_allclose(Upsample(factor, "bilinear")(x),
                               keras.layers.UpSampling2D(factor, interpolation="bilinear")(x), atol=1e-6)
    # variable size: the factor is applied to whatever arrives
    model = keras.Sequential([keras.Input((None, None, 4)), Upsample(factor, "nearest")])
    assert model.predict(x, verbose=0).shape == (2, 3 * factor, 5 * factor, 4)


def test_pack_pyramid_round_trip():
    from ef_keras.tasks.segmentation import pack_pyramid, unpack_pyramid

    backbone = mobilenet_v3_large_pyramid((64, 64, 3))
    packed, layout = pack_pyramid(backbone)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    levels = unpack_pyramid(packed.predict(x, verbose=0), layout)
    direct = keras.Model(backbone.inputs, backbone.pyramid_outputs).predict(x, verbose=0)
    assert [entry[0] for entry in layout] == ["P2", "P3", "P4", "P5"]
    for level in direct:
        np.testing.assert_array_equal(levels[level], direct[level])

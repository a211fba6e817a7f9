"""Model construction, heads, saving and the keras.applications-style argument checks."""

import keras
import numpy as np
import pytest
from helpers import TINY, TINY_INPUT, images

import ef_keras
from deploy.testing import randomize_weights
from ef_keras.models.config import ConfigError
from ef_keras.models.base import ModelArgumentError


def test_named_variants_are_named_after_their_variant():
    for variant in ("l1", "l3", "l7"):  # shapes, saving and conversion: tests/test_registry.py
        assert getattr(ef_keras, f"EfficientFormer{variant.upper()}")().name == f"efficientformer_{variant}"


def test_from_config_rebuilds_what_the_arguments_asked_for():
    """A clone made from `get_config()` behaves as the constructor arguments say.

    The expectations come from the arguments and the reference's drop-path rule, not from the
    code under test: comparing the clone's `get_config()` with the original's would pass if both
    lost an argument.
    """
    model = randomize_weights(ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=7, distillation=False,
                                                       classifier_activation="softmax", drop_path_rate=0.1))
    clone = ef_keras.EfficientFormer.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = images(TINY_INPUT)
    y = clone.predict(x, verbose=0)
    assert y.shape == (2, 7)  # classes=7
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)  # classifier_activation="softmax"
    assert "head_dist" not in [layer.name for layer in clone.layers]  # distillation=False
    # drop_path_rate=0.1 over TINY's 5 blocks: 0.1 * b / (5 - 1), timm's linspace(0, 0.1, 5)
    np.testing.assert_allclose([layer.drop1.rate for layer in clone.layers if hasattr(layer, "drop1")],
                               [0.0, 0.025, 0.05, 0.075, 0.1])
    np.testing.assert_allclose(y, model.predict(x, verbose=0), rtol=1e-6)


def test_output_is_average_of_the_two_heads():
    model = ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, classes=5)
    randomize_weights(model)
    x = images(TINY_INPUT)
    head, dist = model.heads_model()(x)
    assert not np.allclose(head, dist)
    np.testing.assert_allclose(model(x), (np.asarray(head) + np.asarray(dist)) / 2, atol=1e-6)


def test_heads_model_needs_distillation():
    model = ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, distillation=False)
    with pytest.raises(ModelArgumentError, match="distillation=True"):
        model.heads_model()


@pytest.mark.parametrize("pooling, shape", [(None, (2, 2, 2, 64)), ("avg", (2, 64)), ("max", (2, 64))])
def test_backbone_outputs(pooling, shape):
    model = ef_keras.EfficientFormer(TINY, include_top=False, pooling=pooling, input_shape=TINY_INPUT)
    assert tuple(model(images(TINY_INPUT)).shape) == shape


def test_backbone_without_attention_takes_any_multiple_of_32():
    cfg = ef_keras.EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_vit=0)
    model = ef_keras.EfficientFormer(cfg, include_top=False, pooling="avg", input_shape=(None, None, 3))
    assert tuple(model(images((96, 64, 3), n=1)).shape) == (1, 64)


def test_zero_depth_stages_build():
    cfg = ef_keras.EfficientFormerConfig(widths=(16, 32, 48, 64), depths=(0, 0, 1, 1), num_vit=1)
    model = ef_keras.EfficientFormer(cfg, input_shape=TINY_INPUT, classes=3)
    assert tuple(model(images(TINY_INPUT)).shape) == (2, 3)


def test_input_tensor_and_rectangular_grid():
    inputs = keras.Input((96, 64, 3))
    model = ef_keras.EfficientFormer(TINY, input_tensor=inputs, classes=4)
    assert model.get_layer("stage3_block2").token_mixer.resolution == (3, 2)
    assert tuple(model(images((96, 64, 3), n=1)).shape) == (1, 4)


def test_drop_path_changes_training_outputs_only():
    model = ef_keras.EfficientFormer(TINY, input_shape=TINY_INPUT, drop_path_rate=0.5)
    randomize_weights(model)
    x = images(TINY_INPUT)
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(config="l5"), ConfigError, "unknown EfficientFormer variant"),
    (dict(config="l1", weights="imagenet", classes=10), ModelArgumentError, "1000-class heads"),
    (dict(config=TINY, weights="imagenet", input_shape=TINY_INPUT), ModelArgumentError, "only for l1, l3 and l7"),
    (dict(config="l1", input_shape=(200, 200, 3)), ModelArgumentError, "multiples of 32"),
    (dict(config="l1", input_shape=(None, None, 3)), ModelArgumentError, "needs a fixed input size"),
    (dict(config="l1", input_shape=(224, 224)), ModelArgumentError, "height, width, 3"),
    (dict(config="l1", pooling="avg"), ModelArgumentError, "only with include_top=False"),
    (dict(config="l1", include_top=False, pooling="mean"), ModelArgumentError, "pooling must be"),
    (dict(config="l1", classes=0), ModelArgumentError, "positive integer"),
    (dict(config="l1", drop_path_rate=1.0), ModelArgumentError, "drop_path_rate"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message) as err:
        ef_keras.EfficientFormer(**kwargs)
    assert "\n" not in str(err.value)

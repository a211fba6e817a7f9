"""The elastic supernet computes, for every child, what the plain model built from the same weights computes.

`Supernet.forward` slices every tensor on the fly (widths and candidates are tensors); the
reference is `ef_keras.EfficientFormer` built by `child_model` with the sliced weights copied
into ordinary Keras layers, i.e. the code path users deploy.
"""

import numpy as np
import pytest
import tensorflow as tf

from ef_keras.models.efficientformer.config import EfficientFormerConfig
from search.arch import Arch
from search.evaluate import Scorer, per_image
from search.space import SearchSpace
from search.supernet import Supernet, child_model, recalibrate_batchnorm

SPACE = SearchSpace(EfficientFormerConfig(widths=(32, 48, 64, 96), depths=(1, 2, 2, 3), num_vit=0,
                                          layer_scale_init=0.5, name="tiny"), min_widths=(16, 16, 32, 48))


@pytest.fixture(scope="module")
def supernet():
    net = Supernet(SPACE, image_size=64, classes=7)
    rng = np.random.default_rng(3)
    for v in net.weights:  # trained-like weights: every block, statistic and bias table matters
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype("float32"))
        elif v.path.endswith(("moving_mean", "beta", "bias", "attention_biases")) or "layer_scale" in v.path:
            v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    return net


ARCHS = [
    Arch((32, 48, 64, 96), (("4d",), ("4d", "4d"), ("4d", "4d"), ("4d", "4d", "3d"))),  # largest, one MB3D
    Arch((16, 32, 48, 64), (("4d",), ("id", "4d"), ("4d", "id"), ("id", "3d", "3d"))),   # narrower, blocks removed
    Arch((16, 16, 32, 48), (("4d",), ("4d", "id"), ("id", "4d"), ("4d", "4d", "4d"))),   # narrowest, no attention
]


@pytest.mark.parametrize("arch", ARCHS, ids=["largest", "middle", "narrowest"])
def test_elastic_child_equals_the_plain_model_with_the_same_weights(supernet, arch):
    x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype("float32")
    model = child_model(supernet, arch)
    widths, choices = supernet.encode(arch)
    expected = model(x, training=False).numpy()
    got = supernet.forward(x, widths, choices, training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)
    assert np.abs(expected).max() > 0.1  # a non-trivial output


def test_widths_change_the_output(supernet):
    """Slicing really happens: the same blocks at another width give other logits."""
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    arch = ARCHS[0]
    narrower = Arch((32, 48, 64, 80), arch.choices)
    a = supernet.forward(x, *supernet.encode(arch)).numpy()
    b = supernet.forward(x, *supernet.encode(narrower)).numpy()
    assert np.abs(a - b).max() > 1e-3


def test_calibrated_scoring_equals_recalibrated_plain_model(supernet):
    """Scorer (calibrate in the supernet, then infer) = child_model + recalibrate_batchnorm + inference."""
    rng = np.random.default_rng(2)
    calib = rng.normal(size=(16, 64, 64, 3)).astype("float32")
    x = rng.normal(size=(8, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 7, 8)
    arch = ARCHS[1]
    saved = [v.numpy() for v in supernet.weights]
    try:
        correct, loss = Scorer(supernet, calib, batch_size=3)(arch, x, y)
        model = child_model(supernet, arch)
        recalibrate_batchnorm(model, calib)
        ref_correct, ref_loss = per_image(model, x, y)
    finally:
        for v, value in zip(supernet.weights, saved):
            v.assign(value)
    np.testing.assert_allclose(loss, ref_loss, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(correct, ref_correct)


def test_one_trace_serves_every_child(supernet):
    fn = tf.function(lambda x, w, c: supernet.forward(x, w, c), autograph=False)
    x = np.zeros((1, 64, 64, 3), "float32")
    for arch in ARCHS:
        fn(x, *supernet.encode(arch))
    assert fn.experimental_get_tracing_count() == 1


def test_gradients_reach_only_the_used_slices(supernet):
    arch = ARCHS[1]
    x = np.random.default_rng(4).normal(size=(2, 64, 64, 3)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(supernet.forward(x, *supernet.encode(arch), training=True))
    stem_kernel = supernet.stem.conv2.kernel
    grad = tape.gradient(loss, stem_kernel.value).numpy()
    assert np.abs(grad[..., :16]).max() > 0 and np.abs(grad[..., 16:]).max() == 0  # stage 1 at 16 of 32 channels

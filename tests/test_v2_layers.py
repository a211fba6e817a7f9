"""EfficientFormerV2 layers: serialization, the upsampling and bias-index numerics, shape checks.

Whole-network numerics are checked against timm in test_v2_parity.py; here each layer must
rebuild from its config, the x2 upsampling must equal PyTorch's `align_corners=False` bilinear
on a hand-worked example, and the attention-downsampling bias index must equal the official
repository's first-seen-offset construction.
"""

import itertools
import math

import keras
import numpy as np
import pytest

from ef_keras.models.efficientformer_v2 import layers as layers_v2


def _roundtrip(layer, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    clone = layer.__class__.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), y)
    assert clone.get_config() == layer.get_config()
    return y


@pytest.mark.parametrize("make, shape, out", [
    (lambda: layers_v2.V2Stem(16), (1, 32, 32, 3), (1, 8, 8, 16)),
    (lambda: layers_v2.V2FFN(8, 24), (1, 4, 4, 8), (1, 4, 4, 8)),
    (lambda: layers_v2.Attention4D(16, (8, 8), key_dim=4, num_heads=2, attn_ratio=2), (2, 8, 8, 16), (2, 8, 8, 16)),
    (lambda: layers_v2.Attention4D(16, (8, 8), key_dim=4, num_heads=2, attn_ratio=2, stride=2), (1, 8, 8, 16),
     (1, 8, 8, 16)),
    (lambda: layers_v2.Attention4DDownsample(16, 24, (8, 8), key_dim=4, num_heads=2), (1, 8, 8, 16), (1, 4, 4, 24)),
    (lambda: layers_v2.V2Downsample(16, 24), (1, 8, 8, 16), (1, 4, 4, 24)),
    (lambda: layers_v2.V2Downsample(16, 24, use_attn=True, resolution=(8, 8), key_dim=4, num_heads=2),
     (1, 8, 8, 16), (1, 4, 4, 24)),
    (lambda: layers_v2.V2Block(16, 3, use_attn=True, resolution=(8, 8), attn_stride=2, key_dim=4, num_heads=2),
     (1, 8, 8, 16), (1, 8, 8, 16)),
    (lambda: layers_v2.V2Block(16, 4), (1, 8, 8, 16), (1, 8, 8, 16)),
])
def test_layer_rebuilds_from_its_config(make, shape, out):
    assert _roundtrip(make(), shape).shape == out


def test_upsampling_is_pytorch_bilinear_align_corners_false():
    # 1-D [a, b] -> [a, 3a/4 + b/4, a/4 + 3b/4, b] along each axis (source (dst + 0.5)/2 - 0.5, clamped).
    x = np.array([[1.0, 2.0], [3.0, 5.0]], "float32").reshape(1, 2, 2, 1)
    rows = np.array([[1.0, 1.25, 1.75, 2.0], [3.0, 3.5, 4.5, 5.0]])
    expected = np.stack([rows[0], 0.75 * rows[0] + 0.25 * rows[1], 0.25 * rows[0] + 0.75 * rows[1], rows[1]])
    got = keras.ops.convert_to_numpy(layers_v2.upsample_bilinear_2x(x))[0, :, :, 0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def _official_downsample_index(resolution):
    """The official Attention4DDownsample's first-seen-offset index (snap-research models/efficientformer_v2.py)."""
    res2 = math.ceil(resolution / 2)
    points = list(itertools.product(range(resolution), range(resolution)))
    points_ = list(itertools.product(range(res2), range(res2)))
    offsets, idxs = {}, []
    for p1 in points_:
        for p2 in points:
            offset = (abs(p1[0] * math.ceil(resolution / res2) - p2[0]), abs(p1[1] * math.ceil(resolution / res2) - p2[1]))
            offsets.setdefault(offset, len(offsets))
            idxs.append(offsets[offset])
    return np.array(idxs).reshape(len(points_), len(points)), len(offsets)


@pytest.mark.parametrize("resolution", [14, 8])
def test_downsample_bias_index_equals_the_official_construction(resolution):
    official, table_size = _official_downsample_index(resolution)
    ours = layers_v2.downsample_bias_index((resolution, resolution))
    np.testing.assert_array_equal(ours, official)
    assert table_size == resolution * resolution


def test_attention_refuses_another_grid():
    layer = layers_v2.Attention4D(16, (8, 8), key_dim=4, num_heads=2, attn_ratio=2)
    layer(np.zeros((1, 8, 8, 16), "float32"))
    with pytest.raises(ValueError, match=r"built for a \(8, 8\) grid"):
        layer(np.zeros((1, 4, 4, 16), "float32"))


def test_drop_path_acts_in_training_only():
    def make(rate):
        return layers_v2.V2Block(16, 4, use_attn=True, resolution=(8, 8), key_dim=4, num_heads=2, drop_path=rate)

    x = np.random.default_rng(0).standard_normal((8, 8, 8, 16)).astype("float32")
    plain, dropping = make(0.0), make(0.5)
    plain(x)
    dropping(x)
    for w in plain.weights:  # layer scales of 1e-5 would hide the residual branches
        if "layer_scale" in w.path:
            w.assign(np.ones(w.shape, "float32"))
    dropping.set_weights(plain.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dropping(x, training=False)),
                                  keras.ops.convert_to_numpy(plain(x, training=False)))
    # Training: both use batch statistics, so only the dropped (or 1/keep-scaled) branches differ.
    diff = np.abs(keras.ops.convert_to_numpy(dropping(x, training=True))
                  - keras.ops.convert_to_numpy(plain(x, training=True)))
    assert diff.max() > 1e-3

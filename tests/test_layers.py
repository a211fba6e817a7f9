"""Block-level numerics that parity alone would not localise: GELU, pooling borders, padding."""

import inspect

import keras
import numpy as np
import pytest

from ef_keras import layers as L
from ef_keras.models.common_layers import pad1


def test_gelu_is_exact_erf_gelu():
    x = np.linspace(-6, 6, 2001, dtype="float32")
    ours = keras.ops.convert_to_numpy(L.gelu(x))
    keras_exact = keras.ops.convert_to_numpy(keras.activations.gelu(x, approximate=False))
    keras_tanh = keras.ops.convert_to_numpy(keras.activations.gelu(x, approximate=True))
    assert np.max(np.abs(ours - keras_exact)) < 1e-6
    assert np.max(np.abs(ours - keras_tanh)) > 1e-4  # the tanh form would break parity


def _avg_pool_exclude_pad(x, k=3):
    """NumPy 3x3 stride-1 average pool dividing by the number of valid cells (count_include_pad=False)."""
    _, h, w, _ = x.shape
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            win = x[:, max(i - k // 2, 0):i + k // 2 + 1, max(j - k // 2, 0):j + k // 2 + 1]
            out[:, i, j] = win.mean(axis=(1, 2))
    return out


def test_meta4d_token_mixer_excludes_padding_at_borders():
    block = L.Meta4D(8, layer_scale_init=1.0)
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 8)).astype("float32")
    block.build(x.shape)
    mixed = keras.ops.convert_to_numpy(block.ls1(block.pool(x) - x)) + x
    np.testing.assert_allclose(mixed, _avg_pool_exclude_pad(x), atol=1e-5)


def test_stride2_conv_pads_one_on_each_side_like_pytorch():
    # With an all-ones kernel on 6x6 ones, padding 1 before puts the top-left window half
    # outside (2x2 valid = 4) and the bottom-right one fully inside (9); TF "same" pads
    # 0 before and 1 after, which gives the opposite (9 and 4).
    layer = L.Downsample(1)
    x = np.ones((1, 6, 6, 1), "float32")
    layer.build(x.shape)
    layer.conv.kernel.assign(np.ones((3, 3, 1, 1), "float32"))
    layer.conv.bias.assign(np.zeros((1,), "float32"))
    y = keras.ops.convert_to_numpy(layer.conv(pad1(x)))[0, :, :, 0]
    assert y.shape == (3, 3) and y[0, 0] == 4 and y[2, 2] == 9


def test_attention_bias_index_is_manhattan_offset():
    idx = L.attention_bias_index((7, 7))
    assert idx.shape == (49, 49) and idx.max() == 48
    assert idx[0, 48] == 6 * 7 + 6 and idx[8, 0] == 1 * 7 + 1 and np.array_equal(idx, idx.T)


def test_meta3d_rejects_wrong_token_count():
    block = L.Meta3D(32, resolution=(2, 2))
    with pytest.raises(ValueError, match="built for \\(2, 2\\) = 4 tokens got 9"):
        block(np.zeros((1, 9, 32), "float32"))


def test_drop_path_is_identity_at_inference_and_drops_when_training():
    layer = L.DropPath(0.5, seed=1)
    x = np.ones((64, 4), "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    assert set(np.unique(y)) == {0.0, 2.0}
    with pytest.raises(ValueError, match="drop path rate"):
        L.DropPath(1.0)


def test_drop_path_rates_rise_linearly():
    rates = L.drop_path_rates((3, 2, 6, 4), 0.1)
    assert len(rates) == 15 and rates[0] == 0 and rates[-1] == pytest.approx(0.1)
    np.testing.assert_allclose(rates, np.linspace(0, 0.1, 15))


@pytest.mark.parametrize("layer", [
    L.Stem(16), L.Downsample(24), L.Meta4D(16, drop_path=0.1), L.Flat(), L.LayerScale(0.5), L.DropPath(0.2),
    L.Attention(32, (2, 2)), L.Meta3D(32, (2, 2), drop_path=0.1)])
def test_layers_serialize(layer):
    """`from_config(get_config())` rebuilds the same layer: every constructor argument is in the config."""
    config = layer.get_config()
    arguments = set(inspect.signature(layer.__class__.__init__).parameters) - {"self", "kwargs"}
    assert arguments <= set(config), f"get_config lacks {sorted(arguments - set(config))}"
    clone = layer.__class__.from_config(config)
    assert all(getattr(clone, a) == getattr(layer, a) for a in arguments if hasattr(layer, a))
    assert keras.saving.get_registered_name(layer.__class__).startswith("ef_keras>")


def test_downsample_builds_on_the_smallest_grids():
    # The conv sees the padded input: a 2x2 (even 1x1) map still downsamples.
    for size in (1, 2):
        assert tuple(L.Downsample(8)(np.zeros((1, size, size, 4), "float32")).shape) == (1, 1, 1, 8)

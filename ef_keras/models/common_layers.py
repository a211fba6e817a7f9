"""Layers and helpers both families share (Keras 3, NHWC, `keras.ops` only).

The reference numerics in one place (the facts file §2): BatchNorm and LayerNorm epsilon 1e-5,
BatchNorm momentum 0.9 (PyTorch 0.1), exact erf GELU, PyTorch-style symmetric padding for
stride-2 convolutions; the residual branches' layer scale and stochastic depth; and the
relative-position attention bias: its index over a token grid and the bicubic resize of its
table to another grid.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras momentum = 1 - PyTorch momentum (0.1)
LN_EPSILON = 1e-5
_SQRT_HALF = 0.7071067811865476

_register = keras.saving.register_keras_serializable(package="ef_keras")


@_register
def gelu(x):
    """Exact GELU, 0.5·x·(1 + erf(x/√2)).

    Keras' built-in exact GELU lowers to a TF `Erfc` op that coremltools and tf2onnx cannot
    convert; this form lowers to `Erf` and is fused to a single GELU op by the TFLite,
    CoreML and ONNX converters.
    """
    return 0.5 * x * (1.0 + ops.erf(x * _SQRT_HALF))


def batch_norm(name):
    """BatchNormalization with the reference's epsilon and momentum."""
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def stride2_conv(filters, name):
    """3x3 stride-2 "valid" conv; call it on `pad1(x)` to get PyTorch's padding=1.

    TF's "same" padding on even inputs pads 0 before and 1 after, which shifts the grid.
    """
    return keras.layers.Conv2D(filters, 3, strides=2, padding="valid", name=name)


def pad1(x):
    """Zero-pads H and W by 1 on each side (PyTorch's padding=1 before a "valid" stride-2 conv)."""
    return ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def half(n):
    """Grid size after a padded 3x3 stride-2 conv (None stays unknown)."""
    return None if n is None else (n + 1) // 2


def padded_shape(shape):
    """The shape `pad1` produces (what the stride-2 conv actually sees)."""
    b, h, w, c = shape
    return (b, None if h is None else h + 2, None if w is None else w + 2, c)


@_register
class LayerScale(keras.layers.Layer):
    """Multiplies by a learned per-channel vector (`layer_scale`, init `init_value`)."""

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.init_value = init_value

    def build(self, input_shape):
        self.layer_scale = self.add_weight(
            name="layer_scale", shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value))

    def call(self, x):
        return x * self.layer_scale

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@_register
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x * mask / keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def add_residual_scales(layer, layer_scale_init, drop_path, branches=("1", "2")) -> None:
    """Gives `layer` a layer scale `ls<i>` and stochastic depth `drop<i>` per residual branch (timm's names)."""
    for i in branches:
        setattr(layer, f"ls{i}", LayerScale(layer_scale_init, name=f"ls{i}"))
    for i in branches:
        setattr(layer, f"drop{i}", DropPath(drop_path, name=f"drop_path{i}"))


class ConvStem(keras.layers.Layer):
    """Two [3x3 stride-2 conv -> BN -> activation]: (B, H, W, 3) -> (B, H/4, W/4, C), widths C/2 then C.

    The paper replaces ViT's large-kernel patch embedding, slow on mobile compilers, by this stem;
    each family's stem subclass names its activation (V1 ReLU, V2 GELU).
    """

    activation = None

    def __init__(self, out_channels, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = out_channels
        self.conv1 = stride2_conv(out_channels // 2, "conv1")
        self.norm1 = batch_norm("norm1")
        self.conv2 = stride2_conv(out_channels, "conv2")
        self.norm2 = batch_norm("norm2")

    def build(self, input_shape):
        b, h, w, _ = tuple(input_shape)
        mid = (b, half(h), half(w), self.out_channels // 2)
        self.conv1.build(padded_shape(tuple(input_shape)))
        self.norm1.build(mid)
        self.conv2.build(padded_shape(mid))
        self.norm2.build(self.compute_output_shape(input_shape))

    def call(self, x, training=None):
        x = self.activation(self.norm1(self.conv1(pad1(x)), training=training))
        return self.activation(self.norm2(self.conv2(pad1(x)), training=training))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, half(half(h)), half(half(w)), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels}


def attention_bias_index(resolution):
    """(N, N) index into the (heads, N) bias table: |Δrow|·W + |Δcol| for an H×W grid.

    For a square grid this equals the reference's first-seen-offset index and timm's
    `attention_bias_idxs`.
    """
    h, w = resolution
    rows, cols = np.divmod(np.arange(h * w), w)
    return (np.abs(rows[:, None] - rows[None, :]) * w + np.abs(cols[:, None] - cols[None, :])).astype("int32")


def resize_bias_table(table, old_grid, new_grid):
    """(heads, oh·ow) relative-position bias table of an oh x ow token grid -> (heads, nh·nw), bicubic.

    Entry (dy, dx) of the table is the bias for a row/column offset (dy, dx); seen as a
    (heads, oh, ow) image it is resized with Keys' cubic kernel (a = -0.5), half-pixel centres
    and the weights renormalised at the borders: `tf.image.resize(..., "bicubic",
    antialias=True)`, which computes that formula exactly (antialias=False uses TF's legacy
    kernel table, quantised to 1/1024 px, up to 3e-3 off the formula; when shrinking, the
    antialiased kernel also widens as it should). This is the table resize of kecam, of checkpoint
    import (`ef_keras.weights`) and of `at_input_shape`, for both families; the official det/seg
    code instead resizes the gathered (N, N) bias matrix at run time with PyTorch's a = -0.75
    kernel, which no per-offset table reproduces.
    """
    import tensorflow as tf

    heads = table.shape[0]
    image = tf.convert_to_tensor(ops.convert_to_numpy(table).reshape(heads, *old_grid, 1), tf.float32)
    return tf.image.resize(image, tuple(new_grid), method="bicubic", antialias=True).numpy().reshape(heads, -1)


def describe_grid_changes(pairs) -> str:
    """"from the (7, 7) to the (8, 8) token grid" for each distinct (old, new) pair of resized grids."""
    return "; ".join(f"from the {old} to the {new} token grid" for old, new in sorted(set(pairs)))


def drop_path_rates(depths, rate):
    """Per-block stochastic-depth rates, rising linearly with the global block index.

    rate·b/(Σdepths − 1), Flat excluded (same values as timm's linspace(0, rate, Σdepths)).
    """
    total = sum(depths)
    return [rate * b / (total - 1) if total > 1 else 0.0 for b in range(total)]

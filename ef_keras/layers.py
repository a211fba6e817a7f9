"""EfficientFormer building blocks as Keras 3 layers (NHWC, `keras.ops` only).

The 4D part of the network works on (B, H, W, C) feature maps with Conv-BN and a pooling
token mixer; once, in the last stage, `Flat` switches to (B, N, C) tokens for the 3D
MetaBlocks (LayerNorm + attention). This is the paper's "dimension-consistent" design.

Numerics follow the reference exactly (see the facts file §2): BatchNorm and LayerNorm
epsilon 1e-5, BatchNorm momentum 0.9 (PyTorch 0.1), exact erf GELU, PyTorch-style
symmetric padding for stride-2 convolutions, average pooling that excludes padding,
attention scale key_dim^-0.5 and a per-head interleaved qkv projection.
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


def _batch_norm(name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _stride2_conv(filters, name):
    """3x3 stride-2 "valid" conv; call it on `_pad1(x)` to get PyTorch's padding=1.

    TF's "same" padding on even inputs pads 0 before and 1 after, which shifts the grid.
    """
    return keras.layers.Conv2D(filters, 3, strides=2, padding="valid", name=name)


def _pad1(x):
    return ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def _half(n):
    """Grid size after a padded 3x3 stride-2 conv (None stays unknown)."""
    return None if n is None else (n + 1) // 2


def _padded_shape(shape):
    """The shape `_pad1` produces (what the stride-2 conv actually sees)."""
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


@_register
class Stem(keras.layers.Layer):
    """Two [3x3 stride-2 conv -> BN -> ReLU]: (B, H, W, 3) -> (B, H/4, W/4, C).

    Widths C/2 then C, as in the reference (the paper replaces ViT's large-kernel patch
    embedding, slow on mobile compilers, by this stem).
    """

    def __init__(self, out_channels, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = out_channels
        self.conv1 = _stride2_conv(out_channels // 2, "conv1")
        self.norm1 = _batch_norm("norm1")
        self.conv2 = _stride2_conv(out_channels, "conv2")
        self.norm2 = _batch_norm("norm2")

    def build(self, input_shape):
        shape = self.conv1.compute_output_shape(_padded_shape(tuple(input_shape)))
        self.conv1.build(_padded_shape(tuple(input_shape)))
        self.norm1.build(shape)
        self.conv2.build(_padded_shape(shape))
        self.norm2.build(self.conv2.compute_output_shape(_padded_shape(shape)))

    def call(self, x, training=None):
        x = ops.relu(self.norm1(self.conv1(_pad1(x)), training=training))
        return ops.relu(self.norm2(self.conv2(_pad1(x)), training=training))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, _half(_half(h)), _half(_half(w)), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels}


@_register
class Downsample(keras.layers.Layer):
    """Patch embedding between stages: 3x3 stride-2 conv -> BN, no activation."""

    def __init__(self, out_channels, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = out_channels
        self.conv = _stride2_conv(out_channels, "conv")
        self.norm = _batch_norm("norm")

    def build(self, input_shape):
        self.conv.build(_padded_shape(tuple(input_shape)))
        self.norm.build(self.conv.compute_output_shape(_padded_shape(tuple(input_shape))))

    def call(self, x, training=None):
        return self.norm(self.conv(_pad1(x)), training=training)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, _half(h), _half(w), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels}


@_register
class Meta4D(keras.layers.Layer):
    """4D MetaBlock (MB4D): pooling token mixer and a Conv-BN MLP, no pre-norm.

        y = x + γ₁ ⊙ (AvgPool₃ₓ₃(x) − x)
        z = y + γ₂ ⊙ BN(Conv1x1(GELU(BN(Conv1x1(y)))))

    The average pool excludes padding at the borders (PyTorch `count_include_pad=False`),
    which Keras' "same" AveragePooling2D does too.
    """

    def __init__(self, dim, mlp_ratio=4, pool_size=3, layer_scale_init=1e-5, drop_path=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mlp_ratio, self.pool_size = dim, mlp_ratio, pool_size
        self.layer_scale_init, self.drop_path = layer_scale_init, drop_path
        self.pool = keras.layers.AveragePooling2D(pool_size, strides=1, padding="same", name="pool")
        self.fc1 = keras.layers.Conv2D(dim * mlp_ratio, 1, name="fc1")
        self.norm1 = _batch_norm("norm1")
        self.fc2 = keras.layers.Conv2D(dim, 1, name="fc2")
        self.norm2 = _batch_norm("norm2")
        self.ls1 = LayerScale(layer_scale_init, name="ls1")
        self.ls2 = LayerScale(layer_scale_init, name="ls2")
        self.drop1 = DropPath(drop_path, name="drop_path1")
        self.drop2 = DropPath(drop_path, name="drop_path2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        hidden = shape[:-1] + (self.dim * self.mlp_ratio,)
        self.fc1.build(shape)
        self.norm1.build(hidden)
        self.fc2.build(hidden)
        self.norm2.build(shape)
        self.ls1.build(shape)
        self.ls2.build(shape)

    def call(self, x, training=None):
        x = x + self.drop1(self.ls1(self.pool(x) - x), training=training)
        h = gelu(self.norm1(self.fc1(x), training=training))
        h = self.norm2(self.fc2(h), training=training)
        return x + self.drop2(self.ls2(h), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "mlp_ratio": self.mlp_ratio,
                "pool_size": self.pool_size, "layer_scale_init": self.layer_scale_init,
                "drop_path": self.drop_path}


@_register
class Flat(keras.layers.Layer):
    """The single 4D -> 3D switch: (B, H, W, C) -> (B, H·W, C), row-major tokens."""

    def call(self, x):
        _, h, w, c = x.shape
        if h is None or w is None:  # a variable input size (attention-free configs): fold at run time
            shape = ops.shape(x)
            return ops.reshape(x, (-1, shape[1] * shape[2], c))
        return ops.reshape(x, (-1, h * w, c))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None or w is None else h * w, c)


def attention_bias_index(resolution):
    """(N, N) index into the (heads, N) bias table: |Δrow|·W + |Δcol| for an H×W grid.

    For a square grid this equals the reference's first-seen-offset index and timm's
    `attention_bias_idxs`.
    """
    h, w = resolution
    rows, cols = np.divmod(np.arange(h * w), w)
    return (np.abs(rows[:, None] - rows[None, :]) * w + np.abs(cols[:, None] - cols[None, :])).astype("int32")


@_register
class Attention(keras.layers.Layer):
    """Multi-head self-attention with a learned relative-position bias (LeViT-style).

    Variables keep the reference layout so checkpoints map one to one:
    `qkv` Dense C -> heads·(2·key_dim + attn_ratio·key_dim), channels interleaved per head
    (head h owns [192h, 192h+192): q | k | v); `proj` Dense heads·attn_ratio·key_dim -> C
    (no activation before it); `attention_biases` (heads, H·W).
    """

    def __init__(self, dim, resolution=(7, 7), key_dim=32, num_heads=8, attn_ratio=4, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.key_dim, self.num_heads, self.attn_ratio = dim, key_dim, num_heads, attn_ratio
        self.resolution = tuple(resolution)
        self.scale = key_dim ** -0.5
        self.val_dim = attn_ratio * key_dim
        self.head_dim = 2 * key_dim + self.val_dim
        self.num_tokens = self.resolution[0] * self.resolution[1]
        self.bias_index = attention_bias_index(self.resolution)
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.qkv = keras.layers.Dense(num_heads * self.head_dim, kernel_initializer=init, name="qkv")
        self.proj = keras.layers.Dense(dim, kernel_initializer=init, name="proj")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.qkv.build(shape)
        self.proj.build(shape[:-1] + (self.num_heads * self.val_dim,))
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(self.num_heads, self.num_tokens), initializer="zeros")

    def call(self, x):
        n = self.num_tokens
        if x.shape[1] is not None and x.shape[1] != n:
            raise ValueError(f"Attention built for {self.resolution} = {n} tokens got {x.shape[1]} tokens")
        qkv = ops.reshape(self.qkv(x), (-1, n, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (0, 2, 1, 3))  # (B, heads, N, head_dim)
        q = qkv[..., : self.key_dim]
        k = qkv[..., self.key_dim: 2 * self.key_dim]
        v = qkv[..., 2 * self.key_dim:]
        bias = ops.take(self.attention_biases, self.bias_index, axis=1)  # (heads, N, N)
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.scale + bias
        out = ops.matmul(ops.softmax(logits, axis=-1), v)  # (B, heads, N, val_dim)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, n, self.num_heads * self.val_dim))
        return self.proj(out)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "resolution": list(self.resolution),
                "key_dim": self.key_dim, "num_heads": self.num_heads, "attn_ratio": self.attn_ratio}


@_register
class Meta3D(keras.layers.Layer):
    """3D MetaBlock (MB3D): pre-norm attention and a Linear MLP on (B, N, C) tokens.

        y = x + γ₁ ⊙ Attn(LN(x))
        z = y + γ₂ ⊙ Linear(GELU(Linear(LN(y))))
    """

    def __init__(self, dim, resolution=(7, 7), mlp_ratio=4, key_dim=32, num_heads=8, attn_ratio=4,
                 layer_scale_init=1e-5, drop_path=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.resolution, self.mlp_ratio = dim, tuple(resolution), mlp_ratio
        self.key_dim, self.num_heads, self.attn_ratio = key_dim, num_heads, attn_ratio
        self.layer_scale_init, self.drop_path = layer_scale_init, drop_path
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.norm1 = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="norm1")
        self.token_mixer = Attention(dim, resolution, key_dim, num_heads, attn_ratio, name="token_mixer")
        self.norm2 = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="norm2")
        self.fc1 = keras.layers.Dense(dim * mlp_ratio, kernel_initializer=init, name="fc1")
        self.fc2 = keras.layers.Dense(dim, kernel_initializer=init, name="fc2")
        self.ls1 = LayerScale(layer_scale_init, name="ls1")
        self.ls2 = LayerScale(layer_scale_init, name="ls2")
        self.drop1 = DropPath(drop_path, name="drop_path1")
        self.drop2 = DropPath(drop_path, name="drop_path2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in (self.norm1, self.token_mixer, self.norm2, self.fc1, self.ls1, self.ls2):
            layer.build(shape)
        self.fc2.build(shape[:-1] + (self.dim * self.mlp_ratio,))

    def call(self, x, training=None):
        x = x + self.drop1(self.ls1(self.token_mixer(self.norm1(x))), training=training)
        h = self.fc2(gelu(self.fc1(self.norm2(x))))
        return x + self.drop2(self.ls2(h), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "resolution": list(self.resolution),
                "mlp_ratio": self.mlp_ratio, "key_dim": self.key_dim, "num_heads": self.num_heads,
                "attn_ratio": self.attn_ratio, "layer_scale_init": self.layer_scale_init,
                "drop_path": self.drop_path}


def drop_path_rates(depths, rate):
    """Per-block stochastic-depth rates, rising linearly with the global block index.

    rate·b/(Σdepths − 1), Flat excluded (same values as timm's linspace(0, rate, Σdepths)).
    """
    total = sum(depths)
    return [rate * b / (total - 1) if total > 1 else 0.0 for b in range(total)]


__all__ = ["gelu", "LayerScale", "DropPath", "Stem", "Downsample", "Meta4D", "Flat", "Attention",
           "Meta3D", "attention_bias_index", "drop_path_rates"]

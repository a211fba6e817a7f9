"""EfficientFormer (V1) building blocks as Keras 3 layers (NHWC, `keras.ops` only).

The 4D part of the network works on (B, H, W, C) feature maps with Conv-BN and a pooling
token mixer; once, in the last stage, `Flat` switches to (B, N, C) tokens for the 3D
MetaBlocks (LayerNorm + attention). This is the paper's "dimension-consistent" design.

Numerics follow the reference exactly (see the facts file §2; the shared constants, GELU,
padding, layer scale and drop path are `ef_keras.models.common_layers`): average pooling that
excludes padding, attention scale key_dim^-0.5 and a per-head interleaved qkv projection.
"""

from __future__ import annotations

import keras
from keras import ops

from ef_keras.models.common_layers import (LN_EPSILON, ConvStem, add_residual_scales, attention_bias_index, batch_norm,
                                           gelu, half, pad1, padded_shape, stride2_conv)

_register = keras.saving.register_keras_serializable(package="ef_keras")


@_register
class Stem(ConvStem):
    """Two [3x3 stride-2 conv -> BN -> ReLU]: (B, H, W, 3) -> (B, H/4, W/4, C), widths C/2 then C."""

    activation = staticmethod(ops.relu)


@_register
class Downsample(keras.layers.Layer):
    """Patch embedding between stages: 3x3 stride-2 conv -> BN, no activation."""

    def __init__(self, out_channels, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = out_channels
        self.conv = stride2_conv(out_channels, "conv")
        self.norm = batch_norm("norm")

    def build(self, input_shape):
        self.conv.build(padded_shape(tuple(input_shape)))
        self.norm.build(self.conv.compute_output_shape(padded_shape(tuple(input_shape))))

    def call(self, x, training=None):
        return self.norm(self.conv(pad1(x)), training=training)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, half(h), half(w), self.out_channels)

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
        self.norm1 = batch_norm("norm1")
        self.fc2 = keras.layers.Conv2D(dim, 1, name="fc2")
        self.norm2 = batch_norm("norm2")
        add_residual_scales(self, layer_scale_init, drop_path)

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

    @property
    def bias_grid(self) -> tuple:
        """The (H, W) token grid whose offsets index the bias table (what a resize maps between)."""
        return self.resolution

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
        add_residual_scales(self, layer_scale_init, drop_path)

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


@_register
class TokensToMap(keras.layers.Layer):
    """(B, N, C) tokens -> (B, H, W, C), H and W read (at run time) from a reference map.

    The reference detection backbone folds the last stage's tokens back with the H, W of
    the last 4D input the same way; this form also works when the input size is variable.
    """

    def call(self, inputs):
        tokens, reference = inputs
        shape = ops.shape(reference)
        return ops.reshape(tokens, (-1, shape[1], shape[2], tokens.shape[-1]))

    def compute_output_shape(self, input_shapes):
        tokens, reference = input_shapes
        return (tokens[0], reference[1], reference[2], tokens[-1])


__all__ = ["Stem", "Downsample", "Meta4D", "Flat", "Attention", "Meta3D", "TokensToMap"]

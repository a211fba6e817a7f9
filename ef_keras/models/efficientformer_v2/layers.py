"""EfficientFormerV2 building blocks as Keras 3 layers (NHWC, `keras.ops` only).

V2 (Li et al., "Rethinking Vision Transformers for MobileNet Size and Speed", ICCV 2023)
stays 4D end to end: every block is an FFN with a depthwise 3x3 conv inside, and the last
`num_vit` blocks of stages 3 and 4 put a 4D multi-head attention (`Attention4D`) in front
of it. Stage 3's attention runs on a stride-2 grid and is upsampled back; the downsampling
into stage 4 adds an attention branch (`Attention4DDownsample`) to the strided conv.

Numerics follow timm's `efficientformer_v2.py` (and the official snap-research code)
exactly: every conv has a bias, BatchNorm epsilon 1e-5 / momentum 0.9 (PyTorch 0.1),
exact erf GELU everywhere (the stem too: V2 passes GELU down, V1's stem used ReLU),
PyTorch-style symmetric padding for every stride-2 conv, attention scale key_dim^-0.5,
talking-head 1x1 convs across heads before and after the softmax, and bilinear x2
upsampling with half-pixel centres (PyTorch `nn.Upsample(mode="bilinear")`,
`align_corners=False`), which is TF's `resize_bilinear(half_pixel_centers=True)`, a
builtin TFLite op that CoreML and ONNX convert too (the official CoreML export failed on
a bicubic resize; the reference uses bilinear).

Channel layout of q, k, v: PyTorch reshapes (B, heads*d, H, W) to (B, heads, d, N), so
channel c belongs to head c // d; in NHWC that is a reshape to (B, N, heads, d).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ef_keras.models.common_layers import (ConvStem, DropPath, LayerScale, attention_bias_index, batch_norm, gelu,
                                           half, pad1, padded_shape, stride2_conv)

_register = keras.saving.register_keras_serializable(package="ef_keras")


def _with_channels(shape, c):
    return tuple(shape[:-1]) + (c,)


def _halved(shape, c=None):
    b, h, w, cin = shape
    return (b, half(h), half(w), cin if c is None else c)


def _conv(filters, kernel=1, name=None):
    """Conv2D with bias; 3x3 at stride 1 pads 1 on each side ("same" is symmetric there)."""
    return keras.layers.Conv2D(filters, kernel, padding="same" if kernel > 1 else "valid", name=name)


def _dw(stride=1, name=None):
    """Depthwise 3x3 with bias; at stride 2 call it on `pad1(x)` ("valid")."""
    return keras.layers.DepthwiseConv2D(3, strides=stride, padding="same" if stride == 1 else "valid", name=name)


def upsample_bilinear_2x(x):
    """x2 bilinear upsampling with half-pixel centres: PyTorch `nn.Upsample(scale_factor=2, mode="bilinear")`.

    TF's resize with `half_pixel_centers=True` (what `ops.image.resize` uses) samples the
    same source coordinates (dst + 0.5) / 2 - 0.5 clamped to the border as PyTorch's
    `align_corners=False`; it is the builtin TFLite RESIZE_BILINEAR op.
    """
    _, h, w, _ = x.shape
    return ops.image.resize(x, (2 * h, 2 * w), interpolation="bilinear")


def downsample_bias_index(resolution):
    """(N2, N) index into the (heads, N) bias table of `Attention4DDownsample`.

    Queries sit on the stride-2 subgrid (rows/cols 0, 2, 4, ...) of the H x W key grid;
    the index is |Δrow|·W + |Δcol| between a query's position and each key, as timm's
    `Attention2dDownsample` (and the official first-seen-offset index for square grids).
    """
    h, w = resolution
    kr, kc = np.divmod(np.arange(h * w), w)
    qr, qc = np.meshgrid(np.arange(0, h, 2), np.arange(0, w, 2), indexing="ij")
    qr, qc = qr.ravel(), qc.ravel()
    return (np.abs(qr[:, None] - kr[None, :]) * w + np.abs(qc[:, None] - kc[None, :])).astype("int32")


@_register
class V2Stem(ConvStem):
    """Two [3x3 stride-2 conv -> BN -> GELU]: (B, H, W, 3) -> (B, H/4, W/4, C), widths C/2 then C."""

    activation = staticmethod(gelu)


@_register
class V2FFN(keras.layers.Layer):
    """The V2 FFN (no residual): 1x1 conv -> BN -> GELU -> DW 3x3 -> BN -> GELU -> 1x1 conv -> BN.

    The depthwise 3x3 in the middle is V2's "unified FFN": it gives every block a local
    token mixer, replacing V1's pooling mixer (paper Table 1).
    """

    def __init__(self, dim, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden_dim = dim, hidden_dim
        self.fc1 = _conv(hidden_dim, 1, "fc1")
        self.norm1 = batch_norm("norm1")
        self.mid = _dw(1, "mid")
        self.mid_norm = batch_norm("mid_norm")
        self.fc2 = _conv(dim, 1, "fc2")
        self.norm2 = batch_norm("norm2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        hidden = _with_channels(shape, self.hidden_dim)
        self.fc1.build(shape)
        for layer in (self.norm1, self.mid, self.mid_norm, self.fc2):
            layer.build(hidden)
        self.norm2.build(_with_channels(shape, self.dim))

    def call(self, x, training=None):
        x = gelu(self.norm1(self.fc1(x), training=training))
        x = gelu(self.mid_norm(self.mid(x), training=training))
        return self.norm2(self.fc2(x), training=training)

    def compute_output_shape(self, input_shape):
        return _with_channels(tuple(input_shape), self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "hidden_dim": self.hidden_dim}


def _conv_bn(layer, name, filters, kernel=1, depthwise=False, stride=1):
    """Adds a (conv, BN) pair of sub-layers `<name>_conv`, `<name>_bn` to `layer` (timm's ConvNorm)."""
    conv = _dw(stride, f"{name}_conv") if depthwise else _conv(filters, kernel, f"{name}_conv")
    bn = batch_norm(f"{name}_bn")
    setattr(layer, f"{name}_conv", conv)
    setattr(layer, f"{name}_bn", bn)
    return conv, bn


def _heads_first(x, num_heads, n):
    """(B, h, w, heads*d) -> (B, heads, N, d): channel c belongs to head c // d (PyTorch's reshape)."""
    return ops.transpose(ops.reshape(x, (-1, n, num_heads, x.shape[-1] // num_heads)), (0, 2, 1, 3))


def _to_map(x, grid):
    """(B, heads, N, d) -> (B, h, w, heads*d), the inverse of `_heads_first`."""
    _, heads, _, d = x.shape
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, grid[0], grid[1], heads * d))


@_register
class Attention4D(keras.layers.Layer):
    """V2 multi-head self-attention on a feature map, with locality in V and talking heads.

        q, k, v = BN(Conv1x1(x)) each; v_local = BN(DW3x3(v))
        a = softmax(TH1(q·kᵀ·key_dim^-0.5 + bias[h, idx]))   (TH = 1x1 conv across heads)
        out = BN(Conv1x1(GELU(TH2(a)·v + v_local)))

    With `stride` (stage 3), x first goes through BN(DW3x3 stride 2) so attention runs on
    the half grid, and the result is upsampled x2 bilinearly before the GELU. The bias table
    is (heads, h·w) over the attention grid, indexed by |Δrow|·w + |Δcol|.

    Args:
        dim: input and output channels.
        resolution: (H, W) of the input feature map (the attention grid is half of it with stride).
        key_dim, num_heads, attn_ratio: q and k have key_dim channels per head, v attn_ratio·key_dim.
        stride: None or 2.
    """

    def __init__(self, dim, resolution=(7, 7), key_dim=32, num_heads=8, attn_ratio=4, stride=None, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.key_dim, self.num_heads, self.attn_ratio = dim, key_dim, num_heads, attn_ratio
        self.stride = stride
        self.resolution = tuple(resolution)
        if stride not in (None, 2):
            raise ValueError(f"Attention4D stride must be None or 2, got {stride!r}")
        self.attn_grid = tuple(math.ceil(r / stride) for r in self.resolution) if stride else self.resolution
        self.num_tokens = self.attn_grid[0] * self.attn_grid[1]
        self.scale = key_dim ** -0.5
        self.val_dim = attn_ratio * key_dim
        self.dh = self.val_dim * num_heads
        self.bias_index = attention_bias_index(self.attn_grid)
        if stride:
            _conv_bn(self, "stride", dim, depthwise=True, stride=stride)
        _conv_bn(self, "q", key_dim * num_heads)
        _conv_bn(self, "k", key_dim * num_heads)
        _conv_bn(self, "v", self.dh)
        _conv_bn(self, "v_local", self.dh, depthwise=True)
        self.talking_head1 = _conv(num_heads, 1, "talking_head1")
        self.talking_head2 = _conv(num_heads, 1, "talking_head2")
        _conv_bn(self, "proj", dim)

    @property
    def bias_grid(self) -> tuple:
        """The (h, w) attention grid whose offsets index the bias table (what a resize maps between)."""
        return self.attn_grid

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.stride:
            self.stride_conv.build(padded_shape(shape))
            shape = _halved(shape)
            self.stride_bn.build(shape)
        attn_shape = (shape[0], *self.attn_grid, self.dim)
        for name, c in (("q", self.key_dim * self.num_heads), ("k", self.key_dim * self.num_heads), ("v", self.dh)):
            getattr(self, f"{name}_conv").build(attn_shape)
            getattr(self, f"{name}_bn").build(_with_channels(attn_shape, c))
        v_shape = _with_channels(attn_shape, self.dh)
        self.v_local_conv.build(v_shape)
        self.v_local_bn.build(v_shape)
        logits = (None, self.num_tokens, self.num_tokens, self.num_heads)
        self.talking_head1.build(logits)
        self.talking_head2.build(logits)
        self.proj_conv.build(_with_channels(tuple(input_shape), self.dh))
        self.proj_bn.build(_with_channels(tuple(input_shape), self.dim))
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(self.num_heads, self.num_tokens), initializer="zeros")

    def call(self, x, training=None):
        _, h, w, _ = x.shape
        if (h, w) != self.resolution:
            raise ValueError(f"Attention4D built for a {self.resolution} grid got {(h, w)}")
        if self.stride:
            x = self.stride_bn(self.stride_conv(pad1(x)), training=training)
        n, heads, d = self.num_tokens, self.num_heads, self.key_dim
        q = self.q_bn(self.q_conv(x), training=training)  # (B, h, w, heads*d)
        k = self.k_bn(self.k_conv(x), training=training)
        v_map = self.v_bn(self.v_conv(x), training=training)
        v_local = self.v_local_bn(self.v_local_conv(v_map), training=training)
        # Talking head 1 (a 1x1 conv across heads before the softmax) is linear in the logits, so it folds
        # into the query: logits[n, o, m] = sum_g w1[g, o] (scale q_g[n] . k_g[m] + bias[g, n, m]) + b1[o]
        # = q'_o[n] . k[m] + bias'[n, o, m], with q'_o = q scaled per source head g by scale w1[g, o] over
        # all heads*d channels. The logits come out as (B, N, heads, M): no layout op for q, k or the heads.
        w1, b1 = self.talking_head1.kernel[0, 0], self.talking_head1.bias  # (heads in, heads out), (heads,)
        q_mix = ops.repeat(ops.transpose(w1) * self.scale, d, axis=1)  # (heads out, heads*d)
        q = ops.reshape(q, (-1, n, 1, heads * d)) * q_mix  # (B, N, heads, heads*d)
        k = ops.reshape(k, (-1, 1, n, heads * d))
        bias = ops.take(self.attention_biases, self.bias_index, axis=1)  # (heads, N, M), a constant at export
        bias = ops.einsum("go,gnm->nom", w1, bias) + b1[:, None]
        attn = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) + bias, axis=-1)
        # Talking head 2 mixes the heads axis of (B, N, heads, M): a matmul from the left, again no layout op.
        w2, b2 = self.talking_head2.kernel[0, 0], self.talking_head2.bias
        attn = ops.matmul(ops.transpose(w2), attn) + b2[:, None]
        attn = ops.transpose(attn, (0, 2, 1, 3))  # (B, heads, N, M) for the per-head product with v
        out = _to_map(ops.matmul(attn, _heads_first(v_map, heads, n)), self.attn_grid) + v_local
        if self.stride:
            out = upsample_bilinear_2x(out)
        return self.proj_bn(self.proj_conv(gelu(out)), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "resolution": list(self.resolution),
                "key_dim": self.key_dim, "num_heads": self.num_heads, "attn_ratio": self.attn_ratio,
                "stride": self.stride}


@_register
class Attention4DDownsample(keras.layers.Layer):
    """Attention that halves the grid (the attention branch of the stage 3 -> 4 downsampling).

        q = BN(Conv1x1(DW3x3_s2(x) + x[:, ::2, ::2]))   ("local-global query")
        k, v = BN(Conv1x1(x)); v_local = BN(DW3x3_s2(v))
        out = BN(Conv1x1(GELU(softmax(q·kᵀ·key_dim^-0.5 + bias)·v + v_local)))

    Queries live on the half grid, keys and values on the full one; no talking heads. The
    bias table is (heads, H·W), indexed by `downsample_bias_index`.

    Args:
        dim: input channels; out_dim: output channels.
        resolution: (H, W) of the input map (even sides).
        key_dim: 16 in the reference (q and k per head); v has attn_ratio·key_dim per head.
    """

    def __init__(self, dim, out_dim, resolution=(14, 14), key_dim=16, num_heads=8, attn_ratio=4, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.out_dim, self.key_dim = dim, out_dim, key_dim
        self.num_heads, self.attn_ratio = num_heads, attn_ratio
        self.resolution = tuple(resolution)
        self.resolution2 = tuple(math.ceil(r / 2) for r in self.resolution)
        self.num_keys = self.resolution[0] * self.resolution[1]
        self.num_queries = self.resolution2[0] * self.resolution2[1]
        self.scale = key_dim ** -0.5
        self.dh = attn_ratio * key_dim * num_heads
        self.bias_index = downsample_bias_index(self.resolution)
        self.q_local = _dw(2, "q_local")
        _conv_bn(self, "q_proj", key_dim * num_heads)
        _conv_bn(self, "k", key_dim * num_heads)
        _conv_bn(self, "v", self.dh)
        _conv_bn(self, "v_local", self.dh, depthwise=True, stride=2)
        _conv_bn(self, "proj", out_dim)

    @property
    def bias_grid(self) -> tuple:
        """The (H, W) key grid whose offsets index the bias table (what a resize maps between)."""
        return self.resolution

    def build(self, input_shape):
        shape = tuple(input_shape)
        half_shape = _halved(shape)
        kh = self.key_dim * self.num_heads
        self.q_local.build(padded_shape(shape))
        self.q_proj_conv.build(half_shape)
        self.q_proj_bn.build(_with_channels(half_shape, kh))
        self.k_conv.build(shape)
        self.k_bn.build(_with_channels(shape, kh))
        self.v_conv.build(shape)
        self.v_bn.build(_with_channels(shape, self.dh))
        self.v_local_conv.build(padded_shape(_with_channels(shape, self.dh)))
        self.v_local_bn.build(_with_channels(half_shape, self.dh))
        self.proj_conv.build(_with_channels(half_shape, self.dh))
        self.proj_bn.build(_with_channels(half_shape, self.out_dim))
        self.attention_biases = self.add_weight(
            name="attention_biases", shape=(self.num_heads, self.num_keys), initializer="zeros")

    def _local_global_query(self, x):
        """DW3x3_s2(x) + x[:, ::2, ::2] as one depthwise conv whose centre tap is raised by 1.

        With padding 1 the centre tap of output (i, j) reads x[2i, 2j], so the stride-2
        subsampling (timm's `AvgPool2d(1, 2)`) is exactly +1 on that tap. Written this way the
        converters fold it into the conv's weights: a strided slice would leave TFLite's
        XNNPACK delegate (it takes stride-1 slices only) and split the graph in two.
        """
        centre = np.zeros((3, 3, 1, 1), "float32")
        centre[1, 1] = 1.0
        kernel = self.q_local.kernel + ops.convert_to_tensor(centre, dtype=self.q_local.kernel.dtype)
        return ops.depthwise_conv(pad1(x), kernel, strides=2, padding="valid") + self.q_local.bias

    def call(self, x, training=None):
        _, h, w, _ = x.shape
        if (h, w) != self.resolution:
            raise ValueError(f"Attention4DDownsample built for a {self.resolution} grid got {(h, w)}")
        q = self._local_global_query(x)
        q = _heads_first(self.q_proj_bn(self.q_proj_conv(q), training=training), self.num_heads, self.num_queries)
        k = _heads_first(self.k_bn(self.k_conv(x), training=training), self.num_heads, self.num_keys)
        v_map = self.v_bn(self.v_conv(x), training=training)
        v_local = self.v_local_bn(self.v_local_conv(pad1(v_map)), training=training)
        v = _heads_first(v_map, self.num_heads, self.num_keys)
        bias = ops.take(self.attention_biases, self.bias_index, axis=1)  # (heads, N2, N)
        attn = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.scale + bias, axis=-1)
        out = _to_map(ops.matmul(attn, v), self.resolution2) + v_local
        return self.proj_bn(self.proj_conv(gelu(out)), training=training)

    def compute_output_shape(self, input_shape):
        return _halved(tuple(input_shape), self.out_dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "out_dim": self.out_dim,
                "resolution": list(self.resolution), "key_dim": self.key_dim, "num_heads": self.num_heads,
                "attn_ratio": self.attn_ratio}


@_register
class V2Downsample(keras.layers.Layer):
    """Patch embedding between stages: BN(Conv3x3 stride 2 (x)), plus `Attention4DDownsample(x)` if `use_attn`.

    The reference adds the attention branch only into the last stage (3 -> 4).
    """

    def __init__(self, in_channels, out_channels, use_attn=False, resolution=None, key_dim=16, num_heads=8,
                 attn_ratio=4, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.use_attn = in_channels, out_channels, use_attn
        self.resolution = None if resolution is None else tuple(resolution)
        self.key_dim, self.num_heads, self.attn_ratio = key_dim, num_heads, attn_ratio
        self.conv = stride2_conv(out_channels, "conv")
        self.norm = batch_norm("norm")
        if use_attn:
            if self.resolution is None:
                raise ValueError("V2Downsample with use_attn needs the input resolution")
            self.attn = Attention4DDownsample(in_channels, out_channels, self.resolution, key_dim, num_heads,
                                              attn_ratio, name="attn")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv.build(padded_shape(shape))
        self.norm.build(_halved(shape, self.out_channels))
        if self.use_attn:
            self.attn.build(shape)

    def call(self, x, training=None):
        out = self.norm(self.conv(pad1(x)), training=training)
        if self.use_attn:
            out = self.attn(x, training=training) + out
        return out

    def compute_output_shape(self, input_shape):
        return _halved(tuple(input_shape), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "in_channels": self.in_channels, "out_channels": self.out_channels,
                "use_attn": self.use_attn, "resolution": None if self.resolution is None else list(self.resolution),
                "key_dim": self.key_dim, "num_heads": self.num_heads, "attn_ratio": self.attn_ratio}


@_register
class V2Block(keras.layers.Layer):
    """One V2 block: an optional attention token mixer, then the FFN, each residual with layer scale.

        y = x + γ₁ ⊙ Attention4D(x)      (AttnFFN blocks only)
        z = y + γ₂ ⊙ FFN(y)

    Args:
        dim: channels; mlp_ratio: FFN hidden / dim (searched per block in V2).
        use_attn: AttnFFN (True) or FFN (False).
        resolution, attn_stride, key_dim, num_heads, attn_ratio: passed to `Attention4D`.
        layer_scale_init: initial γ; drop_path: stochastic-depth rate of both branches.
    """

    def __init__(self, dim, mlp_ratio=4, use_attn=False, resolution=None, attn_stride=None, key_dim=32,
                 num_heads=8, attn_ratio=4, layer_scale_init=1e-5, drop_path=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mlp_ratio, self.use_attn = dim, mlp_ratio, use_attn
        self.resolution = None if resolution is None else tuple(resolution)
        self.attn_stride, self.key_dim, self.num_heads, self.attn_ratio = attn_stride, key_dim, num_heads, attn_ratio
        self.layer_scale_init, self.drop_path = layer_scale_init, drop_path
        if use_attn:
            if self.resolution is None:
                raise ValueError("V2Block with use_attn needs the input resolution")
            self.token_mixer = Attention4D(dim, self.resolution, key_dim, num_heads, attn_ratio, attn_stride,
                                           name="token_mixer")
            self.ls1 = LayerScale(layer_scale_init, name="ls1")
            self.drop1 = DropPath(drop_path, name="drop_path1")
        self.mlp = V2FFN(dim, int(dim * mlp_ratio), name="mlp")
        self.ls2 = LayerScale(layer_scale_init, name="ls2")
        self.drop2 = DropPath(drop_path, name="drop_path2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.use_attn:
            self.token_mixer.build(shape)
            self.ls1.build(shape)
        self.mlp.build(shape)
        self.ls2.build(shape)

    def call(self, x, training=None):
        if self.use_attn:
            x = x + self.drop1(self.ls1(self.token_mixer(x, training=training)), training=training)
        return x + self.drop2(self.ls2(self.mlp(x, training=training)), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "mlp_ratio": self.mlp_ratio, "use_attn": self.use_attn,
                "resolution": None if self.resolution is None else list(self.resolution),
                "attn_stride": self.attn_stride, "key_dim": self.key_dim, "num_heads": self.num_heads,
                "attn_ratio": self.attn_ratio, "layer_scale_init": self.layer_scale_init,
                "drop_path": self.drop_path}


__all__ = ["V2Stem", "V2FFN", "Attention4D", "Attention4DDownsample", "V2Downsample", "V2Block",
           "upsample_bilinear_2x", "downsample_bias_index"]

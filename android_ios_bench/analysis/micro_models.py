"""The paper's Section 3 latency analysis as small Keras models, one per design choice.

Li et al. (2022), Section 3, profile ViTs on an iPhone 12 and draw four observations
(facts file §5). Each observation here is a group of micro-models that differ only in the
design choice under test, at the shapes where EfficientFormer-L1 (and the baselines the paper
profiles) make that choice:

(a) patch embedding on a 224×224 image: DeiT-S's 16×16 stride-16 conv (→ 14×14×384) and
    PoolFormer's 7×7 stride-4 conv (→ 56×56×64) against the two 3×3 stride-2 conv stem
    (→ 56×56×64, same output as PoolFormer's);
(b) token mixers at stage 4 (7×7×448, 4 blocks): the pool mixer (Meta4D) and MHSA on
    consistent 3D tokens (one Flat, then Meta3D), and the LeViT-style split that switches
    between 4D (conv-BN MLP) and 3D (MHSA) in every block, as an NHWC reshape and as the NCHW
    flatten+transpose a PyTorch export carries, against the same math on 3D tokens only;
(c) normalisation at stage 3 (14×14×224, 8 layers): Conv1×1-BN (BN folded by the converter)
    against LayerNorm-Linear on the same 196×224 data, each beside its norm-free twin so that
    the cost of the norm itself shows;
(d) activations in a Conv-MLP at stage 2 (28×28×96, ×4 expansion, 2 blocks): none, ReLU,
    GELU (exact, erf form), HardSwish.

Widths are data (`SIZES`), so a reduced set (`REDUCED`) runs in tests in seconds.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
from keras import ops

from ef_keras import layers as ef_layers

__all__ = ["Sizes", "SIZES", "REDUCED", "Variant", "Observation", "observations"]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Shapes of the micro-models (defaults: EfficientFormer-L1 and the paper's baselines)."""

    image: int = 224
    embed_width: int = 64      # PoolFormer-S24's first stage; the stem is built to the same output
    deit_width: int = 384      # DeiT-S
    s4_res: int = 7
    s4_width: int = 448
    mixer_blocks: int = 4
    s3_res: int = 14
    s3_width: int = 224
    norm_layers: int = 8
    s2_res: int = 28
    s2_width: int = 96
    act_blocks: int = 2


SIZES = Sizes()
REDUCED = Sizes(image=64, embed_width=16, deit_width=32, s4_res=4, s4_width=32, mixer_blocks=1,
                s3_res=4, s3_width=16, norm_layers=1, s2_res=8, s2_width=16, act_blocks=1)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One micro-model: `build(sizes)` returns a Keras model whose input is (1, *shape(sizes))."""

    name: str
    label: str
    build: Callable[[Sizes], keras.Model]
    shape: Callable[[Sizes], tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class Observation:
    key: str
    title: str
    paper: str          # what the paper observed on the iPhone 12
    baseline: str       # the variant the others are compared to
    variants: tuple[Variant, ...]


def _model(name, shape, body):
    inputs = keras.Input(shape, batch_size=1, name="x")
    return keras.Model(inputs, body(inputs), name=name)


# (a) patch embedding ---------------------------------------------------------------------------

def _embed_16(s):
    return _model("embed_16x16_s16", (s.image, s.image, 3),
                  lambda x: keras.layers.Conv2D(s.deit_width, 16, strides=16, name="proj")(x))


def _embed_7(s):
    def body(x):
        x = keras.layers.ZeroPadding2D(2)(x)  # PoolFormer: kernel 7, stride 4, padding 2
        return keras.layers.Conv2D(s.embed_width, 7, strides=4, name="proj")(x)
    return _model("embed_7x7_s4", (s.image, s.image, 3), body)


def _stem(s):
    return _model("stem_3x3_s2_x2", (s.image, s.image, 3), lambda x: ef_layers.Stem(s.embed_width, name="stem")(x))


# (b) token mixers ------------------------------------------------------------------------------

def _pool_4d(s):
    def body(x):
        for i in range(s.mixer_blocks):
            x = ef_layers.Meta4D(s.s4_width, name=f"block{i}")(x)
        return x
    return _model("pool_mixer_4d", (s.s4_res, s.s4_res, s.s4_width), body)


def _mhsa_3d(s):
    def body(x):
        x = ef_layers.Flat(name="flat")(x)
        for i in range(s.mixer_blocks):
            x = ef_layers.Meta3D(s.s4_width, resolution=(s.s4_res, s.s4_res), name=f"block{i}")(x)
        return x
    return _model("mhsa_3d", (s.s4_res, s.s4_res, s.s4_width), body)


def _attention(s, i, tokens):
    """tokens + γ ⊙ MHSA(LN(tokens)), the attention half of a Meta3D block."""
    h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln{i}")(tokens)
    h = ef_layers.Attention(s.s4_width, resolution=(s.s4_res, s.s4_res), name=f"attn{i}")(h)
    return tokens + ef_layers.LayerScale(name=f"ls{i}")(h)


def _bn_mlp(s, i, x, axis=-1):
    """x + BN(Conv1x1(GELU(BN(Conv1x1(x))))), the MLP of Meta4D (and of LeViT); 1x1 conv = Linear on tokens."""
    hidden = 4 * s.s4_width
    if len(x.shape) == 3:
        fc1, fc2 = keras.layers.Dense(hidden, name=f"fc1_{i}"), keras.layers.Dense(s.s4_width, name=f"fc2_{i}")
    else:
        fmt = "channels_first" if axis == 1 else "channels_last"
        fc1 = keras.layers.Conv2D(hidden, 1, data_format=fmt, name=f"fc1_{i}")
        fc2 = keras.layers.Conv2D(s.s4_width, 1, data_format=fmt, name=f"fc2_{i}")
    h = ef_layers.gelu(keras.layers.BatchNormalization(axis=axis, epsilon=1e-5, name=f"bn1_{i}")(fc1(x)))
    return x + keras.layers.BatchNormalization(axis=axis, epsilon=1e-5, name=f"bn2_{i}")(fc2(h))


def _mhsa_bnmlp_3d(s):
    """MHSA + Conv-BN-style MLP, all on consistent 3D tokens: the math of the LeViT-style models below."""
    def body(x):
        x = ef_layers.Flat(name="flat")(x)
        for i in range(s.mixer_blocks):
            x = _bn_mlp(s, i, _attention(s, i, x))
        return x
    return _model("mhsa_bnmlp_3d", (s.s4_res, s.s4_res, s.s4_width), body)


def _levit_reshape(s):
    """LeViT-style in NHWC: 4D features, reshaped to tokens for MHSA and back to 4D for the conv MLP."""
    n, c = s.s4_res * s.s4_res, s.s4_width

    def body(x):
        for i in range(s.mixer_blocks):
            t = _attention(s, i, ops.reshape(x, (1, n, c)))
            x = _bn_mlp(s, i, ops.reshape(t, (1, s.s4_res, s.s4_res, c)))
        return x
    return _model("levit_4d3d_reshape", (s.s4_res, s.s4_res, s.s4_width), body)


def _levit_transpose(s):
    """LeViT-style as a PyTorch (NCHW) graph has it: `flatten(2).transpose(1, 2)` to tokens and back."""
    n, c = s.s4_res * s.s4_res, s.s4_width

    def body(x):
        for i in range(s.mixer_blocks):
            t = _attention(s, i, ops.transpose(ops.reshape(x, (1, c, n)), (0, 2, 1)))
            x = _bn_mlp(s, i, ops.reshape(ops.transpose(t, (0, 2, 1)), (1, c, s.s4_res, s.s4_res)), axis=1)
        return x
    return _model("levit_4d3d_nchw", (s.s4_width, s.s4_res, s.s4_res), body)


# (c) normalisation -----------------------------------------------------------------------------

def _conv(s, norm):
    def body(x):
        for i in range(s.norm_layers):
            x = keras.layers.Conv2D(s.s3_width, 1, name=f"conv{i}")(x)
            if norm:
                x = keras.layers.BatchNormalization(epsilon=1e-5, name=f"bn{i}")(x)
        return x
    return _model("conv1x1_bn" if norm else "conv1x1", (s.s3_res, s.s3_res, s.s3_width), body)


def _linear(s, norm):
    def body(x):
        for i in range(s.norm_layers):
            if norm:
                x = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln{i}")(x)
            x = keras.layers.Dense(s.s3_width, name=f"linear{i}")(x)
        return x
    return _model("layernorm_linear" if norm else "linear", (s.s3_res * s.s3_res, s.s3_width), body)


# (d) activations -------------------------------------------------------------------------------

_ACTIVATIONS = {"none": None, "relu": ops.relu, "gelu": ef_layers.gelu, "hardswish": ops.hard_swish}


def _act_mlp(activation):
    fn = _ACTIVATIONS[activation]

    def build(s):
        def body(x):
            for i in range(s.act_blocks):
                h = keras.layers.Conv2D(4 * s.s2_width, 1, name=f"fc1_{i}")(x)
                if fn is not None:
                    h = fn(h)
                x = x + keras.layers.Conv2D(s.s2_width, 1, name=f"fc2_{i}")(h)
            return x
        return _model(f"mlp_{activation}", (s.s2_res, s.s2_res, s.s2_width), body)
    return build


def _image(s):
    return (s.image, s.image, 3)


def _s4(s):
    return (s.s4_res, s.s4_res, s.s4_width)


def _s3(s):
    return (s.s3_res, s.s3_res, s.s3_width)


def _s3_tokens(s):
    return (s.s3_res * s.s3_res, s.s3_width)


def _s2(s):
    return (s.s2_res, s.s2_res, s.s2_width)


def observations() -> tuple[Observation, ...]:
    """The four observations of the paper's Section 3, each with its micro-models."""
    return (
        Observation(
            "a", "Patch embedding: large kernel vs 3×3-s2 conv stem",
            "large-kernel, large-stride patch embedding is a bottleneck on mobile (no Winograd, poor "
            "compiler support); a stem of two 3×3 stride-2 convs is faster",
            "stem_3x3_s2_x2",
            (Variant("embed_16x16_s16", "16×16/16 conv (DeiT-S)", _embed_16, _image),
             Variant("embed_7x7_s4", "7×7/4 conv (PoolFormer)", _embed_7, _image),
             Variant("stem_3x3_s2_x2", "3×3-s2 ×2 stem (ours)", _stem, _image))),
        Observation(
            "b", "Token mixer and feature-dimension consistency",
            "consistent features matter more than the mixer: MHSA is not necessarily the bottleneck, "
            "but 4D↔3D reshapes around every block (LeViT) are costly",
            "mhsa_bnmlp_3d",
            (Variant("pool_mixer_4d", "pool mixer, 4D (Meta4D)", _pool_4d, _s4),
             Variant("mhsa_3d", "MHSA + LN-MLP, 3D (Meta3D)", _mhsa_3d, _s4),
             Variant("mhsa_bnmlp_3d", "MHSA + BN-MLP, 3D", _mhsa_bnmlp_3d, _s4),
             Variant("levit_4d3d_reshape", "MHSA 3D + BN-MLP 4D, reshapes", _levit_reshape, _s4),
             Variant("levit_4d3d_nchw", "same, NCHW (PyTorch) layout", _levit_transpose,
                     lambda s: (s.s4_width, s.s4_res, s.s4_res)))),
        Observation(
            "c", "Conv-BN (folded) vs LayerNorm-Linear",
            "Conv-BN is cheaper than LN-Linear: BN folds into the conv, LN computes statistics at "
            "inference (10-20% of latency)",
            "conv1x1_bn",
            (Variant("conv1x1", "Conv1×1", lambda s: _conv(s, False), _s3),
             Variant("conv1x1_bn", "Conv1×1-BN (folded)", lambda s: _conv(s, True), _s3),
             Variant("linear", "Linear", lambda s: _linear(s, False), _s3_tokens),
             Variant("layernorm_linear", "LayerNorm-Linear", lambda s: _linear(s, True), _s3_tokens))),
        Observation(
            "d", "Activation: GELU vs ReLU vs HardSwish",
            "the cost of a non-linearity depends on the backend: on the iPhone 12 GELU is about as "
            "fast as ReLU, HardSwish is slow (LeViT-256: 44.5 vs 11.9 ms)",
            "mlp_relu",
            tuple(Variant(f"mlp_{a}", label, _act_mlp(a), _s2) for a, label in
                  (("none", "no activation"), ("relu", "ReLU"), ("gelu", "GELU (erf)"),
                   ("hardswish", "HardSwish")))),
    )

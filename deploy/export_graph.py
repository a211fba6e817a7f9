"""The inference graph every converter exports: layer scales folded away, and the int8 rewrites.

Layer scales (`LayerScale`, y = x + s ⊙ F(x)) are a per-channel MUL after every residual
branch: two per block. Where F ends in a linear op they fold into it exactly, at export:

| block | scale | folded into |
|---|---|---|
| Meta4D (V1) | ls2 | `norm2` (BN after the MLP's last 1x1 conv): γ, β ← s·γ, s·β |
| Meta3D (V1) | ls1, ls2 | `token_mixer.proj`, `fc2` (Dense): kernel, bias ← s·kernel, s·bias |
| V2Block | ls1, ls2 | `token_mixer.proj_bn`, `mlp.norm2` (BN after the last 1x1 conv) |
| Meta4D (V1) | ls1 | float: nothing (below); int8: the pool mixer's depthwise kernel |

Scaling a BN's γ and β by s scales its output by s; the converters then fold that BN into
the conv before it, as they fold every BN. The scale's layer becomes an identity.

**The pool mixer** y = x + s ⊙ (AvgPool(x) − x) has no linear op of its own. In float its
scale stays a MUL, named in the report: AvgPool excludes the padding from the average, so
a border cell is divided by 4 or 6 instead of 9, and no single per-channel depthwise kernel
can carry both that per-cell factor and s. In the int8 graph the pool is already a
depthwise conv (1/9 weights) times a per-cell border correction c (`PoolMixer`), and the
scale folds into that kernel: y = (1 − s) ⊙ x + c ⊙ DW_{s/9}(x). That is one MUL by (1 − s)
where there were a SUB and a MUL by s, and no int8 MUL by s ≈ 1e-5 at initialisation
(XNNPACK rejects such a MUL, whose output scale is ~10⁸ below its inputs' product).

The export graph shares nothing mutable with the model: each block is a clone with its own
(folded) weights. Its float output equals the model's to rounding; every converter still
verifies the converted file against the original model.

GELU forms (int8 only): the TFLite int8 GELU kernel is a table lookup that XNNPACK cannot
run, so exact GELU stays a float island. Two approximations that quantise to int8 ops
(LOGISTIC, MUL, ADD) are opt-in (`to_tflite(..., int8_gelu=...)`, `--int8-gelu`); they change
the float model, and the report says by how much.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ef_keras import layers as ef_layers

#: GELU forms of the int8 export graph: "exact" is the model's own (erf) GELU; the others approximate it.
GELU_FORMS = ("exact", "tanh", "sigmoid")

_TANH_GELU_SCALE = 2.0 * math.sqrt(2.0 / math.pi)  # 0.5(1 + tanh(z)) = sigmoid(2z)
_SIGMOID_GELU_SCALE = 1.702

#: Where each block's layer scales fold: {block class: {scale attribute: sub-layer path or None}}.
#: None: no linear op before the scale (the pool mixer; folded in the int8 graph only).
FOLD_TARGETS = {
    ef_layers.Meta4D: {"ls1": None, "ls2": "norm2"},
    ef_layers.Meta3D: {"ls1": "token_mixer.proj", "ls2": "fc2"},
    ef_layers.V2Block: {"ls1": "token_mixer.proj_bn", "ls2": "mlp.norm2"},
}
POOL_MIXER_REASON = "pool mixer x + s*(pool(x) - x): no linear op before the scale (float graphs)"


def gelu(x, form: str = "exact"):
    """GELU in one of `GELU_FORMS`.

    "tanh" is the tanh approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), written as
    x * sigmoid(2 sqrt(2/pi)(x + 0.044715x^3)) (the same function) so the TFLite converter
    does not fuse it back into a GELU op; "sigmoid" is x * sigmoid(1.702x).
    """
    if form == "exact":
        return ef_layers.gelu(x)
    if form == "tanh":
        return x * ops.sigmoid(_TANH_GELU_SCALE * (x + 0.044715 * x * x * x))
    if form == "sigmoid":
        return x * ops.sigmoid(_SIGMOID_GELU_SCALE * x)
    raise ValueError(f"unknown GELU form {form!r}; choose one of {', '.join(GELU_FORMS)}")


def border_correction(height: int, width: int, pool_size: int) -> np.ndarray:
    """(1, H, W, 1) factors k^2 / (in-bounds positions of the k x k window centred at each cell)."""
    def counts(n):
        idx = np.arange(n)
        r = pool_size // 2
        return np.minimum(idx + r, n - 1) - np.maximum(idx - r, 0) + 1

    count = counts(height)[:, None] * counts(width)[None, :]
    return (pool_size * pool_size / count).astype("float32")[None, :, :, None]


@keras.saving.register_keras_serializable(package="ef_keras_deploy")
class PoolMixer(keras.layers.Layer):
    """Average pooling (padding excluded) as int8-friendly ops, optionally with the pool mixer's scale folded in.

    AvgPool_k(x) = c ⊙ DW_{1/k²}(x), with c the constant (1, H, W, 1) border correction
    (DEPTHWISE_CONV_2D and MUL, which XNNPACK runs in int8). With `scale` s (per channel)
    it returns the whole pool-mixer residual x + s ⊙ (AvgPool_k(x) − x) as
    (1 − s) ⊙ x + c ⊙ DW_{s/k²}(x); without, AvgPool_k(x). Needs a static H and W.
    """

    def __init__(self, pool_size=3, scale=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.scale = None if scale is None else [float(s) for s in np.ravel(scale)]

    def build(self, input_shape):
        _, h, w, c = input_shape
        if h is None or w is None:
            raise ValueError("the int8 export graph needs a static input size (the border correction is per cell)")
        k = self.pool_size
        s = np.ones(c, "float32") if self.scale is None else np.asarray(self.scale, "float32")
        self.kernel = self.add_weight(name="kernel", shape=(k, k, c, 1), trainable=False,
                                      initializer=keras.initializers.Constant(
                                          np.broadcast_to(s[None, None, :, None] / (k * k), (k, k, c, 1))))
        self.identity = None if self.scale is None else self.add_weight(
            name="identity", shape=(c,), trainable=False, initializer=keras.initializers.Constant(1.0 - s))
        self.correction = self.add_weight(name="correction", shape=(1, h, w, 1), trainable=False,
                                          initializer=keras.initializers.Constant(border_correction(h, w, k)))

    def call(self, x):
        pooled = ops.depthwise_conv(x, self.kernel, strides=1, padding="same") * self.correction
        return pooled if self.identity is None else x * self.identity + pooled

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "scale": self.scale}


def _sublayer(layer, path: str):
    for name in path.split("."):
        layer = getattr(layer, name)
    return layer


def _can_scale_output(layer) -> bool:
    """Whether `_scale_output` can fold a per-channel scale into `layer`."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return bool(layer.scale and layer.center)
    return isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and not isinstance(
        layer, keras.layers.DepthwiseConv2D)


def _scale_output(layer, scale: np.ndarray) -> None:
    """Multiplies the output channels of a Dense/Conv2D or a BatchNormalization (γ and β) by `scale`."""
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.gamma.assign(np.asarray(layer.gamma) * scale)
        layer.beta.assign(np.asarray(layer.beta) * scale)
        return
    layer.kernel.assign(np.asarray(layer.kernel) * scale)
    if layer.use_bias:
        layer.bias.assign(np.asarray(layer.bias) * scale)


def _clone(block, input_shape, identities=()):
    """A fresh copy of `block` (same config, its own variables holding the same values).

    The attributes named in `identities` (layer scales) become `keras.layers.Identity` before
    the clone is built; every other variable is copied from `block` by its path.
    """
    clone = type(block).from_config(block.get_config())
    for attr in identities:
        setattr(clone, attr, keras.layers.Identity(name=attr))
    clone.build(input_shape)
    values = {v.path.split("/", 1)[-1]: v for v in block.weights}
    for var in clone.weights:
        var.assign(values[var.path.split("/", 1)[-1]])
    return clone


def fold_block(block, input_shape, int8: bool = False):
    """(clone of `block` with its layer scales folded, {scale: "folded into ..." or the reason it is not}).

    A folded scale's layer is replaced by an identity. With `int8`, Meta4D's pool-mixer scale
    is left to `ExportBlock`'s `PoolMixer` (reported as folded into its depthwise kernel).
    Blocks without layer scales are returned as they are, with an empty dict.
    """
    targets = next((t for cls, t in FOLD_TARGETS.items() if isinstance(block, cls)), None)
    if targets is None:
        return block, {}
    present = {attr: path for attr, path in targets.items() if hasattr(block, attr)}  # a V2Block may lack ls1
    foldable = {attr: path for attr, path in present.items()
                if path is not None and _can_scale_output(_sublayer(block, path))}
    clone = _clone(block, input_shape, identities=tuple(foldable))
    outcome = {}
    for attr, path in present.items():
        where = f"{block.name}.{attr}"
        if attr in foldable:
            _scale_output(_sublayer(clone, path), np.asarray(getattr(block, attr).layer_scale))
            outcome[where] = f"folded into {path}"
        elif path is None:
            outcome[where] = ("folded into the int8 pool mixer's depthwise kernel" if int8 else
                              f"not folded: {POOL_MIXER_REASON}")
        else:
            outcome[where] = f"not folded: {path} is not a Dense/Conv2D or a BatchNormalization with scale and center"
    return clone, outcome


class ExportBlock(keras.layers.Layer):
    """A V1 block's inference forward in the int8 export form (pool mixer as `PoolMixer`, GELU in `gelu_form`).

    `block` is the (possibly folded) clone whose sub-layers it calls; `pool_scale` is the
    Meta4D pool mixer's layer scale to fold into `PoolMixer` (None: it stays the block's
    `ls1` MUL after `PoolMixer(x) − x`). Export only: not serialisable.
    """

    def __init__(self, block, gelu_form: str = "exact", pool_scale=None, **kwargs):
        super().__init__(name=f"{block.name}_export", **kwargs)
        self.block, self.gelu_form = block, gelu_form
        self.pool_mixer = (PoolMixer(block.pool_size, pool_scale, name="pool_mixer")
                           if isinstance(block, ef_layers.Meta4D) else None)

    def build(self, input_shape):
        if self.pool_mixer is not None:
            self.pool_mixer.build(input_shape)

    def call(self, x):
        b, form = self.block, self.gelu_form
        if self.pool_mixer is not None:
            x = self.pool_mixer(x) if self.pool_mixer.scale is not None else x + b.ls1(self.pool_mixer(x) - x)
            h = gelu(b.norm1(b.fc1(x), training=False), form)
            return x + b.ls2(b.norm2(b.fc2(h), training=False))
        x = x + b.ls1(b.token_mixer(b.norm1(x)))
        return x + b.ls2(b.fc2(gelu(b.fc1(b.norm2(x)), form)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def export_model(model: keras.Model, *, fold_scales: bool = True, int8: bool = False,
                 gelu_form: str = "exact") -> tuple[keras.Model, dict]:
    """(the export graph of `model`, {scale name: what happened to it}).

    With `fold_scales`, every block's layer scales are folded (`fold_block`). With `int8`,
    every V1 `Meta4D` gets the depthwise-conv `PoolMixer` (its scale folded in when
    `fold_scales`), and with `gelu_form` other than "exact" every V1 block's GELU is
    approximated. A model with nothing to rewrite (e.g. a MobileNet, or fold_scales=False
    on a float export) is returned as is. With "exact" GELU the output equals `model`'s to
    float rounding (tests/test_deploy_export_graph.py checks <= 1e-5 on every family).
    """
    if gelu_form not in GELU_FORMS:
        raise ValueError(f"unknown GELU form {gelu_form!r}; choose one of {', '.join(GELU_FORMS)}")
    blocks = (*FOLD_TARGETS,) if fold_scales else ()
    rewritten = (ef_layers.Meta4D,) if int8 else ()
    if int8 and gelu_form != "exact":
        rewritten = (ef_layers.Meta4D, ef_layers.Meta3D)
    if not any(isinstance(layer, blocks + rewritten) for layer in model.layers):
        return model, {}
    outcome = {}

    def call(layer, *args, **kwargs):
        if not isinstance(layer, blocks + rewritten):
            return layer(*args, **kwargs)
        block, pool_scale = layer, None
        if isinstance(layer, ef_layers.Meta4D) and int8:
            pool_scale = np.asarray(layer.ls1.layer_scale) if fold_scales else None
        if fold_scales:
            block, folded = fold_block(layer, tuple(args[0].shape), int8=int8)
            outcome.update(folded)
        if isinstance(layer, rewritten):
            return ExportBlock(block, gelu_form, pool_scale)(args[0])
        return block(*args, **kwargs)

    graph = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    return graph, outcome


def graph_report(model, graph, spec, outcome: dict, gelu_form: str | None = None) -> dict:
    """The report's `export_graph` entry: what was folded, what was not and why, and the float delta.

    `float_max_abs_diff` / `float_max_rel_diff` compare the export graph with `model` in
    float on the verification inputs (rounding only, unless an approximate `gelu_form`).
    The converter adds `ops_removed` (census of the unfolded conversion minus this one).
    """
    from deploy import verify
    from deploy.common import keras_predict

    left = {}
    for name, what in outcome.items():
        if what.startswith("not folded: "):
            left.setdefault(what[len("not folded: "):], []).append(name)
    result = {"rewritten": graph is not model, "scales": len(outcome),
              "folded": len(outcome) - sum(len(v) for v in left.values()), "left_unfolded": left}
    if gelu_form is not None:
        result["gelu"] = gelu_form
    if graph is not model:
        inputs = verify.sample_inputs(spec)
        reference, exported = keras_predict(model, inputs), keras_predict(graph, inputs)
        diff = float(np.abs(reference - exported).max())
        result.update(float_max_abs_diff=diff,
                      float_max_rel_diff=diff / max(1.0, float(np.sqrt(np.mean(reference ** 2)))))
    return result


__all__ = ["GELU_FORMS", "FOLD_TARGETS", "gelu", "border_correction", "PoolMixer", "ExportBlock", "fold_block",
           "export_model", "graph_report"]

"""An int8-friendly export graph for EfficientFormer, and the full-integer quantisation that keeps it in one XNNPACK partition.

The converter's own full-integer TFLite of an EfficientFormer splits into 38 XNNPACK
partitions for L1 (75 for L3, 119 for L7). Measured on LiteRT 2.3 with
`deploy.tflite.reference_ops`, the int8 ops that XNNPACK rejects, so that they run on the
reference kernels between partitions, are:

| op (int8) | where | fix here |
|---|---|---|
| AVERAGE_POOL_2D | the pool mixer of every 4D block | rewritten: depthwise 3x3 conv x border correction (int8, delegated) |
| GELU | every MLP | kept in float between QUANTIZE/DEQUANTIZE (a float island) |
| SOFTMAX, BATCH_MATMUL | attention | float island |
| SQUARED_DIFFERENCE, RSQRT, ADD of eps | LayerNorm's variance | float island |

XNNPACK delegates QUANTIZE, DEQUANTIZE and all of these ops in float, so with the islands
the whole graph is one partition: convolutions, fully connected layers, the pool mixer and
the residual adds stay int8.

The pool mixer `AvgPool3x3(x) - x` (padding excluded from the average, PyTorch
`count_include_pad=False`) is exactly `DepthwiseConv3x3(x; all weights 1/9) * c - x`, where
`c[h, w] = 9 / (number of in-bounds window positions)` is a constant per-position tensor of
shape (1, H, W, 1) (1 inside, 1.5 on edges, 2.25 in corners) broadcast over channels.

GELU: the TFLite int8 GELU kernel is itself a table lookup, but XNNPACK has no such op,
so exact GELU stays a float island. Two approximations that quantise to ops XNNPACK runs
in int8 (LOGISTIC, MUL, ADD) are available as an opt-in (`export_model(model, "tanh")` or
`"sigmoid"`; `to_tflite(..., int8_gelu=...)`, `--int8-gelu`); they change the float model,
and the converter reports by how much.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from deploy.common import litert_interpreter
from ef_keras import layers as ef_layers

#: GELU forms of the export graph: "exact" is the model's own (erf) GELU; the others approximate it.
GELU_FORMS = ("exact", "tanh", "sigmoid")
#: Ops that XNNPACK (LiteRT 2.3) runs in float but not in int8: quantisation leaves them in float.
#: AVERAGE_POOL_2D is gone from an EfficientFormer's export graph; it stays listed for other models.
FLOAT_ISLAND_OPS = ("GELU", "AVERAGE_POOL_2D", "SOFTMAX", "BATCH_MATMUL", "RSQRT", "SQUARED_DIFFERENCE")

_TANH_GELU_SCALE = 2.0 * math.sqrt(2.0 / math.pi)  # 0.5(1 + tanh(z)) = sigmoid(2z)
_SIGMOID_GELU_SCALE = 1.702


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
    """`AvgPool_k(x) - x` (padding excluded) as depthwise conv x border correction - x.

    The depthwise kernel is the constant 1/k^2 for every channel and the correction a
    constant (1, H, W, 1) tensor, so the TFLite graph holds DEPTHWISE_CONV_2D, MUL and
    SUB, all of which XNNPACK runs in int8. Needs a static H and W.
    """

    def __init__(self, pool_size=3, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def build(self, input_shape):
        _, h, w, c = input_shape
        if h is None or w is None:
            raise ValueError("the int8 export graph needs a static input size (the border correction is per cell)")
        k = self.pool_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, c, 1), trainable=False,
                                      initializer=keras.initializers.Constant(1.0 / (k * k)))
        self.correction = self.add_weight(name="correction", shape=(1, h, w, 1), trainable=False,
                                          initializer=keras.initializers.Constant(border_correction(h, w, k)))

    def call(self, x):
        pooled = ops.depthwise_conv(x, self.kernel, strides=1, padding="same")
        return pooled * self.correction - x

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


class ExportBlock(keras.layers.Layer):
    """A Meta4D or Meta3D block's inference forward in the export form, sharing the block's weights.

    Meta4D gets the depthwise-conv `PoolMixer`; both get GELU in `gelu_form`. Wrapping the
    block (instead of calling its sublayers in the outer graph) keeps layer names unique.
    Export only: it is not serialisable on its own.
    """

    def __init__(self, block, gelu_form: str = "exact", **kwargs):
        super().__init__(name=f"{block.name}_export", **kwargs)
        self.block, self.gelu_form = block, gelu_form
        self.pool_mixer = PoolMixer(block.pool_size, name="pool_mixer") if isinstance(block, ef_layers.Meta4D) else None

    def build(self, input_shape):
        if self.pool_mixer is not None:
            self.pool_mixer.build(input_shape)

    def call(self, x):
        b, form = self.block, self.gelu_form
        if self.pool_mixer is not None:
            x = x + b.ls1(self.pool_mixer(x))
            h = gelu(b.norm1(b.fc1(x), training=False), form)
            return x + b.ls2(b.norm2(b.fc2(h), training=False))
        x = x + b.ls1(b.token_mixer(b.norm1(x)))
        return x + b.ls2(b.fc2(gelu(b.fc1(b.norm2(x)), form)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def quantize(converter, float_ops=FLOAT_ISLAND_OPS) -> bytes:
    """Full-integer quantisation (float input/output) that leaves `float_ops` in float islands.

    `converter` is a `tf.lite.TFLiteConverter` with `Optimize.DEFAULT` and a
    `representative_dataset` set. It calibrates once, then quantises with the ops in
    `float_ops` denylisted, plus, when RSQRT is among them, the ADD of LayerNorm's epsilon
    feeding each RSQRT (XNNPACK rejects that int8 ADD: epsilon's scale is far below the
    variance's). This is the step `tf.lite.experimental.QuantizationDebugger` runs for
    selective quantisation (`get_nondebug_quantized_model`), called directly. With
    `float_ops=()` the result is the converter's plain full-integer model.
    """
    from tensorflow.lite.python import convert as tflite_convert

    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # no public switch; the debugger sets it the same way
    calibrated = converter.convert()
    nodes = _epsilon_adds(calibrated) if "RSQRT" in float_ops else []
    return tflite_convert.mlir_quantize(calibrated, fully_quantize=False, denylisted_ops=list(float_ops) or None,
                                        denylisted_nodes=nodes or None)


def _epsilon_adds(flatbuffer: bytes) -> list:
    """Output tensor names of the ADD ops that feed an RSQRT (LayerNorm's variance + epsilon)."""
    Interpreter = litert_interpreter()

    interpreter = Interpreter(model_content=flatbuffer)
    nodes = interpreter._get_ops_details()  # no public API lists the ops
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    producer = {int(t): n for n in nodes for t in n["outputs"]}
    feeding = [producer.get(int(n["inputs"][0])) for n in nodes if n["op_name"] == "RSQRT"]
    return [names[int(n["outputs"][0])] for n in feeding if n is not None and n["op_name"] == "ADD"]


def export_model(model: keras.Model, gelu_form: str = "exact") -> keras.Model:
    """The int8-friendly inference graph of `model`, sharing its weights.

    Every `Meta4D` block gets the depthwise-conv pool mixer; with `gelu_form` other than
    "exact", every GELU of Meta4D and Meta3D blocks is approximated. Every other layer is
    reused as is. A model without EfficientFormer blocks (e.g. a MobileNet) is returned
    unchanged. With "exact" the output equals `model`'s to float rounding
    (tests/test_deploy_int8.py checks <= 1e-5 on every variant).
    """
    if gelu_form not in GELU_FORMS:
        raise ValueError(f"unknown GELU form {gelu_form!r}; choose one of {', '.join(GELU_FORMS)}")
    if not any(isinstance(layer, (ef_layers.Meta4D, ef_layers.Meta3D)) for layer in model.layers):
        return model

    def call(layer, *args, **kwargs):
        if isinstance(layer, ef_layers.Meta4D) or (isinstance(layer, ef_layers.Meta3D) and gelu_form != "exact"):
            return ExportBlock(layer, gelu_form)(args[0])
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


__all__ = ["GELU_FORMS", "FLOAT_ISLAND_OPS", "gelu", "border_correction", "PoolMixer", "ExportBlock", "export_model", "quantize"]

"""Full-integer int8 that stays in one XNNPACK partition, whatever the weights and the calibration data.

The converter's own full-integer TFLite of an EfficientFormer splits into 38 XNNPACK
partitions for L1 (75 for L3, 119 for L7). Measured on LiteRT 2.3 with
`deploy.tflite.reference_ops`, the int8 ops that XNNPACK rejects, so that they run on the
reference kernels between partitions, are:

| op (int8) | where | fix |
|---|---|---|
| AVERAGE_POOL_2D | the pool mixer of every 4D block | `deploy.export_graph.PoolMixer`: depthwise 3x3 conv x border correction (int8, delegated) |
| GELU | every MLP | kept in float between QUANTIZE/DEQUANTIZE (a float island) |
| SOFTMAX, BATCH_MATMUL | attention | float island |
| SQUARED_DIFFERENCE, RSQRT, ADD of eps | LayerNorm's variance | float island |
| ADD, MUL with a tiny operand | residual branches at initialisation (layer scale 1e-5) | range floor (below) |

XNNPACK delegates QUANTIZE, DEQUANTIZE and all of these ops in float, so with the islands
the whole graph is one partition: convolutions, fully connected layers, the pool mixer and
the residual adds stay int8.

**Range floor.** XNNPACK runs an int8 ADD only when each input's scale is at least 2^-10 of
the output's (`xnn_define_add2`); with layer scales at their 1e-5 initialisation a residual
branch is ~10^5 below the stream it is added to, and every such ADD (and, unfolded, the MUL
by the scale) fell back to the reference kernels: 15 partitions for L1 at initialisation.
`quantize` therefore widens, in the calibrated statistics, the range of any ADD/SUB input
that is below `RANGE_FLOOR` (2^-8) of the output's range to that floor. This costs nothing
measurable: such an input is below half an output step, and it still has 2^-15 of the
output's range as its own step.

**Ranges and islands chosen by agreement with float** (`python -m benchmarks.int8_agreement`, a
trained proxy on 5,000 held-out images; the README's "Full int8 agreement with float" has the table):
- activation ranges (`RANGES`): "percentile" (default) clips each tensor's range to leave
  out the `PERCENTILE_TAIL` (1e-4) most extreme calibration values on each side, instead of
  the converter's min/max ("minmax"), which spends int8 steps on rare outliers;
- the input convolution stays int8: keeping it (and the PAD before it) in float
  (`float_input_conv`, measured because a normalised 8-bit image spans ~4.8 units, so an
  int8 input step of ~0.019 is coarser than a pixel step of ~0.017) agreed no better once
  the ranges are percentiles;
- weights stay per-channel (the converter's default); per-tensor agreed less.
"""

from __future__ import annotations

import warnings

import numpy as np

from deploy.common import litert_interpreter

#: Ops that XNNPACK (LiteRT 2.3) runs in float but not in int8: quantisation leaves them in float.
#: AVERAGE_POOL_2D is gone from an EfficientFormer's int8 export graph; it stays listed for other models.
FLOAT_ISLAND_OPS = ("GELU", "AVERAGE_POOL_2D", "SOFTMAX", "BATCH_MATMUL", "RSQRT", "SQUARED_DIFFERENCE")
#: The smallest range of an ADD/SUB input relative to the output's (XNNPACK's own limit is 2^-10 of the scale).
RANGE_FLOOR = 2.0 ** -8
#: Activation range methods and the fewest calibration samples each needs.
RANGES = {"percentile": 16, "minmax": 4}
#: "percentile" leaves this fraction of a tensor's calibration values outside its range, on each side.
PERCENTILE_TAIL = 1e-4


def quantize(converter, float_ops=FLOAT_ISLAND_OPS, samples=None, ranges: str = "percentile",
             float_input_conv: bool = False, per_channel: bool = True) -> bytes:
    """Full-integer quantisation (float input/output) that leaves `float_ops` in float islands.

    `converter` is a `tf.lite.TFLiteConverter` with `Optimize.DEFAULT` and a
    `representative_dataset` set; `samples` are the same calibration inputs (for
    "percentile" `ranges`). It calibrates once, sets the activation ranges
    (`percentile_ranges` unless "minmax"), floors the residual-branch ranges
    (`floor_residual_ranges`), then quantises with the ops in `float_ops` denylisted, plus
    the ADD of LayerNorm's epsilon feeding each RSQRT when RSQRT is among them (XNNPACK
    rejects that int8 ADD: epsilon's scale is far below the variance's) and, with
    `float_input_conv`, the input convolution; `per_channel=False` gives weights one scale
    per tensor (these two are off by default and kept to measure them). This is the step
    `tf.lite.experimental.QuantizationDebugger` runs for selective quantisation
    (`get_nondebug_quantized_model`), called directly. With `float_ops=()` the result is
    the converter's plain full-integer model (min/max ranges, no islands, no floors).
    """
    from tensorflow.lite.python import convert as tflite_convert

    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # no public switch; the debugger sets it the same way
    calibrated = converter.convert()
    if not float_ops:
        return tflite_convert.mlir_quantize(calibrated, fully_quantize=False)
    if ranges == "percentile":
        calibrated = percentile_ranges(calibrated, samples)
    calibrated = floor_residual_ranges(calibrated)
    nodes = _epsilon_adds(calibrated) if "RSQRT" in float_ops else []
    if float_input_conv:
        nodes += input_conv(calibrated)
    return tflite_convert.mlir_quantize(calibrated, fully_quantize=False, denylisted_ops=list(float_ops),
                                        denylisted_nodes=nodes or None, disable_per_channel=not per_channel)


def _graph(flatbuffer: bytes):
    """(ops, {tensor index: name}, {tensor index: producing op}, {tensor index: consuming ops}) of a model."""
    Interpreter = litert_interpreter()

    interpreter = Interpreter(model_content=flatbuffer)
    nodes = interpreter._get_ops_details()  # no public API lists the ops
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    producer = {int(t): n for n in nodes for t in n["outputs"]}
    consumers = {}
    for n in nodes:
        for t in n["inputs"]:
            consumers.setdefault(int(t), []).append(n)
    return interpreter, nodes, names, producer, consumers


def input_conv(flatbuffer: bytes) -> list:
    """Output tensor names of the ops from the graph input to its first convolution (PAD, CONV_2D), or []."""
    interpreter, _, names, _, consumers = _graph(flatbuffer)
    tensor, chain = interpreter.get_input_details()[0]["index"], []
    while len(consumers.get(tensor, [])) == 1 and len(chain) < 4:
        node = consumers[tensor][0]
        chain.append(names[int(node["outputs"][0])])
        if node["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return chain
        if node["op_name"] not in ("PAD", "RESHAPE"):
            break
        tensor = int(node["outputs"][0])
    return []


def _epsilon_adds(flatbuffer: bytes) -> list:
    """Output tensor names of the ADD ops that feed an RSQRT (LayerNorm's variance + epsilon)."""
    _, nodes, names, producer, _ = _graph(flatbuffer)
    feeding = [producer.get(int(n["inputs"][0])) for n in nodes if n["op_name"] == "RSQRT"]
    return [names[int(n["outputs"][0])] for n in feeding if n is not None and n["op_name"] == "ADD"]


def percentile_ranges(calibrated: bytes, samples, tail: float = PERCENTILE_TAIL) -> bytes:
    """The calibrated model with each activation's range set to leave out its `tail` most extreme values per side.

    Runs the calibrated float model on `samples` (every intermediate tensor kept) and, per
    tensor, takes the k-th smallest and k-th largest of all its values over the samples,
    k = max(1, round(tail x count)): exact order statistics, kept in running top-k arrays
    so memory stays at the size of one activation. Ranges always include 0.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    Interpreter = litert_interpreter()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    ranged = [i for i, t in enumerate(tensors) if t.quantization is not None and t.quantization.min is not None
              and len(t.quantization.min) == 1 and model.buffers[t.buffer].data is None]
    with warnings.catch_warnings():  # "intended for debugging purposes only": keeping every tensor is the point here
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    size = {i: int(np.prod(tensors[i].shape)) for i in ranged}
    keep = {i: max(1, round(tail * size[i] * len(samples))) for i in ranged}
    low, high = {}, {}
    for sample in samples:
        interpreter.set_tensor(inp["index"], np.asarray(sample, np.float32)[None])
        interpreter.invoke()
        for i in ranged:
            values = np.concatenate([interpreter.get_tensor(i).ravel(), low.get(i, []), high.get(i, [])])
            k = min(keep[i], values.size)
            low[i] = np.partition(values, k - 1)[:k]
            high[i] = np.partition(values, values.size - k)[-k:]
    for i in ranged:
        q = tensors[i].quantization
        q.min = np.array([min(0.0, float(low[i].max()))], np.float32)
        q.max = np.array([max(0.0, float(high[i].min()))], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def floor_residual_ranges(calibrated: bytes, floor: float = RANGE_FLOOR) -> bytes:
    """The calibrated model with tiny residual-branch ranges raised to `floor` x the range they are added to.

    `calibrated` is the converter's calibrate-only output: float tensors whose quantisation
    holds the calibration min/max; a range here is the bound max(|min|, |max|). Walking
    the ops from the output back, every non-constant ADD/SUB input gets at least `floor` x
    the output's range, and the non-constant input of a MUL by a constant at least the
    output's range / max|constant|, the range whose product covers the output's (so that a
    branch ending in such a MUL, like the pool mixer's border correction, is floored all
    the way back; XNNPACK also rejects a MUL whose output scale is far above its inputs').
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    op = schema.BuiltinOperator
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors

        def constant(index):
            data = model.buffers[tensors[index].buffer].data
            return None if data is None else np.frombuffer(bytes(data), np.float32)

        def bound(index):
            q = tensors[index].quantization
            if q is None or q.min is None or q.max is None or len(q.min) != 1:
                return None
            return max(abs(float(q.min[0])), abs(float(q.max[0])))

        def raise_to(index, low):
            q = tensors[index].quantization
            current = bound(index)
            if current is not None and constant(index) is None and current < low:
                q.min = np.minimum(q.min, -low).astype(np.float32)
                q.max = np.maximum(q.max, low).astype(np.float32)

        for node in reversed(subgraph.operators):
            code, out = codes[node.opcodeIndex], bound(node.outputs[0])
            if out is None:
                continue
            if code in (op.ADD, op.SUB):
                for index in node.inputs:
                    raise_to(index, floor * out)
            elif code == op.MUL:
                consts = [constant(i) for i in node.inputs]
                if sum(c is not None for c in consts) == 1:
                    c = next(c for c in consts if c is not None)
                    other = next(i for i, k in zip(node.inputs, consts) if k is None)
                    if c.size and np.abs(c).max() > 0:
                        raise_to(other, out / float(np.abs(c).max()))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


__all__ = ["FLOAT_ISLAND_OPS", "RANGE_FLOOR", "RANGES", "PERCENTILE_TAIL", "quantize", "input_conv", "percentile_ranges",
           "floor_residual_ranges"]

"""What an exported .tflite micro-model runs: its op census and multiply-accumulates.

The analysis reports latency beside MACs, because the paper's first observation is about
efficiency per operation (large-kernel convs map poorly onto mobile kernels), and beside the
op census, which shows what the converter did (BN folded into convs, ReLU fused, transposes
inserted for an NCHW layout).
"""

from __future__ import annotations

import collections
import math

from ef_keras.errors import require

__all__ = ["describe_tflite", "ops_to_text", "ops_from_text"]


def describe_tflite(path: str) -> dict:
    """Op census and multiply-accumulates of the exported graph (what the runtime actually runs).

    MACs count CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and BATCH_MATMUL from the tensor
    shapes of the flatbuffer; element-wise ops, norms and pooling count 0.
    """
    litert = require("ai_edge_litert.interpreter", "search", "the latency analysis")
    Interpreter, OpResolverType = litert.Interpreter, litert.OpResolverType

    # without the default XNNPACK delegate, so the op list is the flatbuffer's, not one DELEGATE node
    interpreter = Interpreter(model_path=path,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    census: collections.Counter = collections.Counter()
    macs = 0
    for op in interpreter._get_ops_details():  # noqa: SLF001 (the only API that lists a graph's ops)
        name = op["op_name"]
        census[name] += 1
        inputs = [i for i in op["inputs"] if i >= 0]
        out = math.prod(shapes[op["outputs"][0]])
        if name == "CONV_2D":
            _, kh, kw, cin = shapes[inputs[1]]
            macs += out * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = shapes[inputs[1]]
            macs += out * kh * kw
        elif name == "FULLY_CONNECTED":
            macs += out * shapes[inputs[1]][-1]
        elif name == "BATCH_MATMUL":
            a, n = shapes[inputs[0]], shapes[op["outputs"][0]][-1]
            macs += math.prod(a) * n  # = out * K, whichever operand is transposed
    details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    return {"ops": dict(census), "macs": int(macs), "input_shape": [int(d) for d in details[0]["shape"]],
            "output_shape": [int(d) for d in details[1]["shape"]]}


def ops_to_text(ops: dict[str, int]) -> str:
    """{"CONV_2D": 4, "ADD": 2} -> "ADD:2,CONV_2D:4" (a manifest/LUT unit field is a scalar)."""
    return ",".join(f"{name}:{count}" for name, count in sorted(ops.items()))


def ops_from_text(text: str) -> dict[str, int]:
    return {name: int(count) for name, count in (part.split(":") for part in text.split(",") if part)}

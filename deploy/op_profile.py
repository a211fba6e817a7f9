"""Per-op time of a TFLite model on LiteRT + XNNPACK: every op cut out into a model of its own and timed.

The pip package of LiteRT (ai-edge-litert 2.3) runs models but exposes no op profiler: the
interpreter takes no profiler and the CompiledModel's profiler is reachable from C only,
and `benchmark_model` is not shipped. The equivalent used here: each operator of the graph
becomes a one-op model (`single_op_models`: the same op, its constant tensors and
quantisation, its other inputs made graph inputs), and all of them are timed with the
whole model in one interleaved loop (`ef_keras.timing`). The call overhead of `invoke`
(measured on a one-element ADD) is subtracted from every op. What this cannot see:
effects between ops (a tensor still in cache from its producer, XNNPACK's own fusions
inside a partition); `coverage` (sum of the ops / the whole model) says how far the sum
is from the real run.
"""

from __future__ import annotations

import collections
import copy

import numpy as np

from deploy.common import litert_interpreter
from ef_keras import timing


def _op_names(model) -> list:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]


def single_op_models(flatbuffer: bytes) -> list:
    """[(op type, output tensor name, one-op flatbuffer)] for every op of the model's first subgraph, in order.

    Each one-op model keeps the op, its options, its constant inputs (buffers) and every
    tensor's quantisation; its non-constant inputs become the graph inputs and its outputs
    the graph outputs.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    subgraph, kinds = model.subgraphs[0], _op_names(model)
    out = []
    for op in subgraph.operators:
        used = [i for i in list(op.inputs) + list(op.outputs) if i >= 0]
        index = {old: new for new, old in enumerate(dict.fromkeys(used))}
        one = schema.ModelT()
        one.version, one.description = model.version, model.description
        one.operatorCodes = [copy.deepcopy(model.operatorCodes[op.opcodeIndex])]
        one.buffers = [schema.BufferT()]
        tensors = []
        for old in index:
            tensor = copy.deepcopy(subgraph.tensors[old])
            data = model.buffers[tensor.buffer].data
            if data is not None:
                one.buffers.append(copy.deepcopy(model.buffers[tensor.buffer]))
                tensor.buffer = len(one.buffers) - 1
            else:
                tensor.buffer = 0
            tensors.append(tensor)
        new_op = copy.deepcopy(op)
        new_op.opcodeIndex = 0
        new_op.inputs = [index[i] if i >= 0 else -1 for i in op.inputs]
        new_op.outputs = [index[i] for i in op.outputs]
        graph = schema.SubGraphT()
        graph.tensors, graph.operators = tensors, [new_op]
        graph.inputs = [index[i] for i in op.inputs if i >= 0 and model.buffers[subgraph.tensors[i].buffer].data is None]
        graph.outputs = list(new_op.outputs)
        one.subgraphs = [graph]
        name = subgraph.tensors[op.outputs[0]].name
        out.append((kinds[op.opcodeIndex], name.decode() if isinstance(name, bytes) else name,
                    bytes(flatbuffer_utils.convert_object_to_bytearray(one))))
    return out


def _invoker(flatbuffer: bytes, num_threads: int):
    interpreter = litert_interpreter()(model_content=flatbuffer, num_threads=num_threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        values = (rng.integers(-100, 100, detail["shape"]) if dtype.kind in "iu"
                  else rng.standard_normal(detail["shape"]))
        interpreter.set_tensor(detail["index"], values.astype(dtype))
    return interpreter.invoke


def _overhead_model() -> bytes:
    """A model of one ADD on one float: what an `invoke` costs with (almost) nothing to compute."""
    import keras

    from deploy import tflite
    from deploy.common import InputSpec

    inputs = keras.Input((1,))
    return tflite.convert(keras.Model(inputs, inputs + 1.0), InputSpec("x", (1, 1)), "fp32")


def profile(flatbuffer: bytes, runs: int = 50, warmup: int = 5, num_threads: int = 2, progress=None) -> dict:
    """Per-op and per-op-type time of a TFLite model; see the module docstring for the method.

    Returns {"model_ms", "overhead_ms", "ops": [{"op", "name", "ms"}], "by_type": [{"op",
    "count", "ms", "share"}] (largest first), "coverage"}, all times medians of `runs`
    interleaved rounds (`ef_keras.timing.summarize`), op times less the invoke overhead.
    """
    ops = single_op_models(flatbuffer)
    runners = {"model": _invoker(flatbuffer, num_threads), "overhead": _invoker(_overhead_model(), num_threads)}
    runners.update({i: _invoker(one, num_threads) for i, (_, _, one) in enumerate(ops)})
    times = timing.time_interleaved(runners, runs, warmup, progress=progress)
    median = {key: timing.summarize(t)["median_ms"] for key, t in times.items()}
    overhead = median["overhead"]
    per_op = [{"op": kind, "name": name, "ms": max(0.0, median[i] - overhead)}
              for i, (kind, name, _) in enumerate(ops)]
    total = sum(op["ms"] for op in per_op)
    by_type = collections.defaultdict(lambda: {"count": 0, "ms": 0.0})
    for op in per_op:
        by_type[op["op"]]["count"] += 1
        by_type[op["op"]]["ms"] += op["ms"]
    ranked = sorted(({"op": k, **v, "share": v["ms"] / total if total else 0.0} for k, v in by_type.items()),
                    key=lambda row: -row["ms"])
    return {"model_ms": median["model"], "overhead_ms": overhead, "sum_of_ops_ms": total,
            "coverage": total / median["model"], "ops": per_op, "by_type": ranked, "runs": runs,
            "threads": num_threads}


__all__ = ["single_op_models", "profile"]

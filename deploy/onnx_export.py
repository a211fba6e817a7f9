"""Keras -> ONNX through tf2onnx (opset >= 17), verified with ONNX Runtime.

Route (facts §8.2): `tf2onnx.convert.from_function` on a tf.function with a named batch-1
TensorSpec. GELU must be the erf form: Keras' exact GELU becomes an `Erfc` op that tf2onnx
cannot map; it then writes an invalid file that only fails when loaded (ORT: "No Op
registered for Erfc"). Loading the result in ONNX Runtime is part of verification, so such
a file is never kept.
"""

from __future__ import annotations

import collections
import functools
import os

import numpy as np

from deploy import export_graph, report as report_lib, roofline, verify as verification
from deploy.common import DeployError, check_output_path, input_spec
from ef_keras.errors import require
from ef_keras.output import commit, remove, temp_path

MIN_OPSET = 17
NUM_THREADS = 2


def to_onnx(model, out_path, *, opset=MIN_OPSET, verify=True, overwrite=False, fold_scales=True) -> dict:
    """Converts a Keras model with one static-shape input to a verified `.onnx` file (fp32).

    Args:
        model: a Keras 3 model (batch None or 1; exported with batch 1).
        out_path: the `.onnx` file to write; its directory must exist.
        opset: ONNX opset, >= 17.
        verify: compare with Keras in ONNX Runtime (always on in the CLI); False keeps the
            load and NaN check.
        overwrite: replace an existing output.
        fold_scales: fold the layer scales into the linear ops before them (`deploy.export_graph`;
            default); False exports the unfolded graph, for debugging.

    Returns:
        The report dict, also written to `<out_path>.report.json`.
    """
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise DeployError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    spec = input_spec(model)
    out_path = check_output_path(out_path, overwrite, ".onnx")
    report_path = report_lib.report_path(out_path)
    check_output_path(report_path, overwrite, ".json")

    graph, outcome = export_graph.export_model(model, fold_scales=fold_scales)
    graph_report = export_graph.graph_report(model, graph, spec, outcome)
    proto = convert(graph, spec, opset)
    if outcome:  # what folding removed: the same conversion of the unfolded model, census only
        graph_report["ops_removed"] = report_lib.census_delta(node_census(convert(model, spec, opset)),
                                                              node_census(proto))
    tmp = temp_path(out_path)
    try:
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        session = open_session(tmp)
        metrics = verification.check(model, spec, lambda x: run(session, x), "fp32", "ONNX", verify)
        census = node_census(proto)
        result = report_lib.build(
            target="onnx", path=out_path, model=model, spec=spec, precision="fp32", census=census,
            size=os.path.getsize(tmp), verification=metrics,
            extra={"export_graph": graph_report, "onnx": {"opset": opset, "runtime": "onnxruntime CPU"},
                   **timed(session, proto)})
        commit(tmp, out_path)
    finally:
        remove(tmp)
    report_lib.write(result, report_path)
    return result


def convert(model, spec, opset: int):
    """Runs tf2onnx on a traced batch-1 function; returns the ModelProto."""
    import tensorflow as tf

    tf2onnx = require("tf2onnx", "deploy", "ONNX conversion")

    forward = tf.function(lambda x: model(x, training=False))
    try:
        proto, _ = tf2onnx.convert.from_function(
            forward, input_signature=[tf.TensorSpec(spec.shape, tf.float32, name=spec.name)], opset=opset)
    except Exception as e:  # tf2onnx raises assorted errors with long messages
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"ONNX conversion failed ({type(e).__name__}): {first}") from e
    return proto


def node_census(proto) -> dict:
    """{ONNX node type: count} of a ModelProto's graph."""
    return dict(sorted(collections.Counter(node.op_type for node in proto.graph.node).items()))


def open_session(model):
    """An ONNX Runtime CPU session (2 intra-op threads) for a model path or its serialised bytes."""
    ort = require("onnxruntime", "deploy", "ONNX verification")

    options = ort.SessionOptions()
    options.intra_op_num_threads = NUM_THREADS
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. INVALID_GRAPH for ops tf2onnx could not map
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"ONNX Runtime cannot load the converted model: {first}") from e


def run(session, inputs: np.ndarray) -> np.ndarray:
    """Runs a batch-1 ONNX session on each sample; returns the stacked float32 outputs."""
    name = session.get_inputs()[0].name
    return np.stack([np.asarray(session.run(None, {name: s[None].astype("float32")})[0], "float32")[0]
                     for s in inputs])


def invoker(session):
    """A no-argument callable that runs the session once on a fixed seeded input."""
    inp = session.get_inputs()[0]
    feed = {inp.name: np.random.default_rng(0).standard_normal(inp.shape).astype("float32")}
    return lambda: session.run(None, feed)


def flops(proto) -> float:
    """2 x the multiply-adds of an ONNX model's Conv, MatMul and Gemm nodes (shapes from ONNX shape inference)."""
    onnx = require("onnx", "deploy", "ONNX FLOP count")

    graph = onnx.shape_inference.infer_shapes(proto).graph
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in (*graph.value_info, *graph.input, *graph.output)}
    shapes.update({t.name: tuple(t.dims) for t in graph.initializer})
    macs = 0
    for node in graph.node:
        out = int(np.prod(shapes.get(node.output[0], (0,))))
        if node.op_type == "Conv":  # W (O, I/groups, kh, kw)
            macs += out * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            a = shapes[node.input[0]]
            macs += out * (a[-2] if trans_a else a[-1])
    return 2.0 * macs


@functools.lru_cache(maxsize=None)
def probe_session():
    """The roofline probe in ONNX Runtime (converted once per process)."""
    return open_session(convert(roofline.probe_model(), roofline.PROBE_SPEC, MIN_OPSET).SerializeToString())


def timed(session, proto, runs: int = 20, warmup: int = 3) -> dict:
    """The report's host latency and roofline: the model and the matmul probe in ONNX Runtime, timed interleaved."""
    result = roofline.measure(invoker(session), flops(proto), invoker(probe_session()), "fp32", runs, warmup)
    return {"latency_ms": result["model_median_ms"], "latency_p10_ms": result["model_p10_ms"], "roofline": result}

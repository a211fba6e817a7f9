"""Keras -> ONNX through tf2onnx (opset >= 17), verified with ONNX Runtime.

Route (facts §8.2): `tf2onnx.convert.from_function` on a tf.function with a named batch-1
TensorSpec. GELU must be the erf form: Keras' exact GELU becomes an `Erfc` op that tf2onnx
cannot map; it then writes an invalid file that only fails when loaded (ORT: "No Op
registered for Erfc"). Loading the result in ONNX Runtime is part of verification, so such
a file is never kept.
"""

from __future__ import annotations

import collections
import os

import numpy as np

from deploy import export_graph, report as report_lib, verify as verification
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
        session = _session(tmp)
        metrics = verification.check(model, spec, lambda x: run(session, x), "fp32", "ONNX", verify)
        census = node_census(proto)
        result = report_lib.build(
            target="onnx", path=out_path, model=model, spec=spec, precision="fp32", census=census,
            size=os.path.getsize(tmp), verification=metrics,
            extra={"export_graph": graph_report, "onnx": {"opset": opset, "runtime": "onnxruntime CPU"},
                   "latency_ms": latency_ms(session, spec)})
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


def _session(path: str):
    ort = require("onnxruntime", "deploy", "ONNX verification")

    options = ort.SessionOptions()
    options.intra_op_num_threads = NUM_THREADS
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. INVALID_GRAPH for ops tf2onnx could not map
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"ONNX Runtime cannot load the converted model: {first}") from e


def run(session, inputs: np.ndarray) -> np.ndarray:
    """Runs a batch-1 ONNX session on each sample; returns the stacked float32 outputs."""
    name = session.get_inputs()[0].name
    return np.stack([np.asarray(session.run(None, {name: s[None].astype("float32")})[0], "float32")[0]
                     for s in inputs])


def latency_ms(session, spec, warmup: int = 3, runs: int = 20) -> float:
    """Median host latency of one ONNX Runtime call (CPU, 2 threads) in milliseconds."""
    name = session.get_inputs()[0].name
    feed = {name: verification.sample_inputs(spec, count=1)}
    return report_lib.median_ms(lambda: session.run(None, feed), warmup, runs)

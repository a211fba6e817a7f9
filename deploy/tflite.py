"""Keras -> TFLite (LiteRT): builtin ops only, static batch 1, fp32 / fp16 / full-integer int8.

Route (facts §8.2): `keras.export.ExportArchive` with one endpoint whose input signature
has batch 1, then `TFLiteConverter.from_saved_model`. This route writes the weights as
constants, so the converter folds BatchNorm into the convolutions and the attention-bias
gather into a constant. The two routes that silently produce weightless NaN models
(`from_concrete_functions` on a Keras 3 model, `tf.saved_model.save`) are not used, and
verification would catch them (tests/test_deploy_tflite.py shows it does).
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile

import numpy as np

from deploy import calibration, report as report_lib, verify as verification
from deploy.common import DeployError, check_output_path, check_precision, commit, input_spec, remove, temp_path

NUM_THREADS = 2
#: Dynamic-range quantisation: int8 weights, float activations quantised on the fly (no calibration).
DYNAMIC_INT8 = "int8-dynamic"


def to_tflite(model, out_path, *, precision="fp32", calibration_data=None, verify=True, overwrite=False) -> dict:
    """Converts a Keras model with one static-shape input to a verified `.tflite` file.

    Args:
        model: a Keras 3 model (batch dimension None or 1; exported with batch 1).
        out_path: the `.tflite` file to write; its directory must exist.
        precision: "fp32", "fp16" (fp16 weights, fp32 compute), "int8" (full integer with
            float input/output; needs `calibration_data`) or "int8-dynamic" (int8 weights,
            float activations; XNNPACK runs it as one partition, unlike full int8 whose
            int8 GELU and average pooling it does not support).
        calibration_data: for int8: an image folder, a tfds name or preprocessed arrays
            (see `deploy.calibration`).
        verify: compare the converted model with Keras (on by default, always on in the
            CLI). False only for callers that check numerics themselves; the NaN check and
            the op census still run.
        overwrite: replace an existing output.

    Returns:
        The report dict (also written to `<out_path>.report.json`): size, op census,
        reshape/transpose/gather counts, XNNPACK partitions, diffs vs Keras, host latency.
    """
    precision = precision if precision == DYNAMIC_INT8 else check_precision(precision)
    spec = input_spec(model)
    out_path = check_output_path(out_path, overwrite)
    report_path = report_lib.report_path(out_path)
    check_output_path(report_path, overwrite)
    samples = calibration.calibration_samples(calibration_data, spec) if precision == "int8" else None

    flatbuffer = convert(model, spec, precision, samples)
    tmp = temp_path(out_path)
    try:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
        metrics = verification.check(model, spec, lambda x: run(tmp, x), precision, "TFLite", verify)
        census = op_census(tmp)
        _check_builtins(census)
        result = report_lib.build(
            target="tflite", path=out_path, model=model, spec=spec, precision=precision, census=census,
            size=os.path.getsize(tmp), verification=metrics,
            extra={"xnnpack": xnnpack_summary(tmp), "latency_ms": latency_ms(tmp, spec),
                   "calibration_samples": None if samples is None else int(len(samples))})
        commit(tmp, out_path)
    finally:
        remove(tmp)
    report_lib.write(result, report_path)
    return result


def convert(model, spec, precision: str, calibration_samples=None) -> bytes:
    """Runs the TFLite converter (builtins only) and returns the flatbuffer bytes."""
    import tensorflow as tf
    import keras

    export_dir = tempfile.mkdtemp(prefix="deploy_tflite_")
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec(spec.shape, tf.float32, name=spec.name)])
        archive.write_out(export_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == DYNAMIC_INT8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: ([s[None]] for s in calibration_samples)
        try:
            return converter.convert()
        except Exception as e:  # the converter raises ConverterError with a multi-page log
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DeployError(f"TFLite conversion failed ({precision}): {first}") from None
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)


def _interpreter(path: str, num_threads: int = NUM_THREADS):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def run(path: str, inputs: np.ndarray) -> np.ndarray:
    """Runs a batch-1 TFLite model on each sample of `inputs`; returns the stacked float32 outputs."""
    interpreter = _interpreter(path)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for sample in inputs:
        interpreter.set_tensor(inp["index"], sample[None].astype(inp["dtype"]))
        interpreter.invoke()
        results.append(np.array(interpreter.get_tensor(out["index"]), "float32")[0])
    return np.stack(results)


def op_census(path: str) -> dict:
    """{op name: count} over the model's primary subgraph, before any delegate is applied."""
    from ai_edge_litert.interpreter import Interpreter

    ops = Interpreter(model_path=path)._get_ops_details()  # no public API lists the ops
    return dict(sorted(collections.Counter(op["op_name"] for op in ops).items()))


def xnnpack_summary(path: str) -> dict:
    """How the default XNNPACK delegate partitions the graph.

    `partitions` counts the delegate kernels created at `allocate_tensors`. The graph is
    `fully_delegated` when there is one partition that reads only the graph inputs (and
    constants) and writes exactly the graph outputs: any op left to the reference kernels
    would have to feed or consume such a partition boundary.
    """
    interpreter = _interpreter(path)
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    graph_outputs = {d["index"] for d in interpreter.get_output_details()}
    produced = {i for n in nodes for i in n["outputs"]}
    constants = {t["index"] for t in interpreter.get_tensor_details()} - produced - graph_inputs
    full = (len(delegates) == 1 and set(delegates[0]["outputs"]) == graph_outputs
            and set(i for i in delegates[0]["inputs"] if i >= 0) <= graph_inputs | constants)
    return {"partitions": len(delegates), "fully_delegated": bool(full),
            "graph_ops": len(nodes) - len(delegates)}


def latency_ms(path: str, spec, warmup: int = 3, runs: int = 20, num_threads: int = NUM_THREADS) -> float:
    """Median host latency of one invoke (XNNPACK, `num_threads`) in milliseconds."""
    interpreter = _interpreter(path, num_threads)
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], verification.sample_inputs(spec, count=1).astype(inp["dtype"]))
    return report_lib.median_ms(interpreter.invoke, warmup, runs)


def _check_builtins(census: dict) -> None:
    custom = sorted(op for op in census if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE"))
    if custom:
        raise DeployError(f"TFLite model uses non-builtin ops {custom}; only builtin ops are allowed")

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
import functools
import os
import shutil
import tempfile

import numpy as np

from deploy import calibration, export_graph, int8_graph, report as report_lib, roofline, verify as verification
from deploy.common import (DYNAMIC_INT8, DeployError, check_output_path, check_precision, input_spec,
                           litert_interpreter)
from ef_keras.output import commit, remove, temp_path

NUM_THREADS = 2


def to_tflite(model, out_path, *, precision="fp32", calibration_data=None, verify=True, overwrite=False,
              int8_gelu="exact", int8_ranges="percentile", fold_scales=True, measure=True) -> dict:
    """Converts a Keras model with one static-shape input to a verified `.tflite` file.

    Args:
        model: a Keras 3 model (batch dimension None or 1; exported with batch 1).
        out_path: the `.tflite` file to write; its directory must exist.
        precision: "fp32", "fp16" (fp16 weights, fp32 compute), "int8" (full integer with
            float input/output; needs `calibration_data`) or "int8-dynamic" (int8 weights,
            float activations). int8 converts the int8 export graph
            (`deploy.export_graph`) and leaves the ops XNNPACK cannot run in int8 in float
            islands, so an EfficientFormer runs in one XNNPACK partition
            (`op_census_by_dtype` in the report lists every op that stayed float).
        calibration_data: for int8: an image folder, a tfds name or preprocessed arrays
            (see `deploy.calibration`).
        int8_gelu: int8 only: "exact" (default, the model's GELU in a float island), or the
            opt-in approximations "tanh" / "sigmoid" that quantise to int8 ops; the report's
            `export_graph` says how far the approximated float model is from `model`.
        int8_ranges: int8 only: how activation ranges come from the calibration data,
            "percentile" (default: all but the 1e-4 most extreme values per side; needs 16
            samples) or "minmax" (the converter's own; needs 4). See `deploy.int8_graph`.
        fold_scales: fold every layer scale into the linear op before it (default; the
            report's `export_graph` names any that cannot be folded and the ops removed).
            False exports the unfolded graph, for debugging.
        verify: compare the converted model with Keras (on by default, always on in the
            CLI). False only for callers that check numerics themselves; the NaN check and
            the op census still run.
        overwrite: replace an existing output.
        measure: also convert the unfolded graph once more for the report's `ops_removed`,
            and time the model against the roofline probe (`latency_ms`, `roofline`).
            The latency table's micro-model export turns both off: they would double its
            conversions and time every unit twice.

    Returns:
        The report dict (also written to `<out_path>.report.json`): size, op census,
        reshape/transpose/gather counts, XNNPACK partitions, diffs vs Keras, host latency.
    """
    precision = precision if precision == DYNAMIC_INT8 else check_precision(precision)
    if int8_gelu not in export_graph.GELU_FORMS:
        raise DeployError(f"unknown int8 GELU form {int8_gelu!r}; choose one of {', '.join(export_graph.GELU_FORMS)}")
    if int8_gelu != "exact" and precision != "int8":
        raise DeployError(f"the GELU approximation {int8_gelu!r} applies to full-integer int8 only, not {precision}")
    if int8_ranges not in int8_graph.RANGES:
        raise DeployError(f"unknown int8 range method {int8_ranges!r}; choose one of {', '.join(int8_graph.RANGES)}")
    if int8_ranges != "percentile" and precision != "int8":
        raise DeployError(f"int8 range method {int8_ranges!r} applies to full-integer int8 only, not {precision}")
    spec = input_spec(model)
    out_path = check_output_path(out_path, overwrite, ".tflite")
    report_path = report_lib.report_path(out_path)
    check_output_path(report_path, overwrite, ".json")
    samples = calibration.calibration_samples(calibration_data, spec) if precision == "int8" else None
    if samples is not None and len(samples) < int8_graph.RANGES[int8_ranges]:
        others = ", ".join(f"{name} needs {n}" for name, n in int8_graph.RANGES.items() if name != int8_ranges)
        raise DeployError(f"calibration data has {len(samples)} sample(s); int8 with {int8_ranges} ranges needs at "
                          f"least {int8_graph.RANGES[int8_ranges]} real inputs ({calibration.DEFAULT_SAMPLES} "
                          f"recommended; {others})")
    graph, outcome = export_graph.export_model(model, fold_scales=fold_scales, int8=precision == "int8",
                                               gelu_form=int8_gelu)
    graph_report = export_graph.graph_report(model, graph, spec, outcome, int8_gelu if precision == "int8" else None)
    flatbuffer = convert(graph, spec, precision, samples, ranges=int8_ranges)
    if outcome and measure:  # what folding removed: the same conversion of the unfolded graph, census only
        unfolded, _ = export_graph.export_model(model, fold_scales=False, int8=precision == "int8", gelu_form=int8_gelu)
        graph_report["ops_removed"] = report_lib.census_delta(
            op_census(convert(unfolded, spec, precision, samples, ranges=int8_ranges)), op_census(flatbuffer))
    tmp = temp_path(out_path)
    try:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
        metrics = verification.check(model, spec, lambda x: run(tmp, x), precision, "TFLite", verify)
        census = op_census(flatbuffer)
        _check_builtins(census)
        result = report_lib.build(
            target="tflite", path=out_path, model=model, spec=spec, precision=precision, census=census,
            size=os.path.getsize(tmp), verification=metrics,
            extra={"xnnpack": xnnpack_summary(tmp), "xnnpack_reference_ops": reference_ops(tmp),
                   "op_census_by_dtype": dtype_census(tmp), **(timed(flatbuffer, precision) if measure else {}),
                   "calibration_samples": None if samples is None else int(len(samples)),
                   "int8_ranges": int8_ranges if precision == "int8" else None,
                   "export_graph": graph_report})
        commit(tmp, out_path)
    finally:
        remove(tmp)
    report_lib.write(result, report_path)
    return result


def convert(model, spec, precision: str, calibration_samples=None,
            float_ops=int8_graph.FLOAT_ISLAND_OPS, ranges="percentile", float_input_conv=False,
            per_channel=True) -> bytes:
    """Runs the TFLite converter (builtins only) and returns the flatbuffer bytes.

    For int8, `float_ops` are the op types left in float islands, `ranges` the activation
    range method, `float_input_conv` whether the input convolution stays float and
    `per_channel` whether weights get per-channel scales (`int8_graph.quantize`; the last
    three for measuring the choices); `float_ops=()` gives the converter's plain
    full-integer model.
    """
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
            converter.representative_dataset = lambda: ([s[None]] for s in calibration_samples)
        try:
            if precision == "int8":
                return int8_graph.quantize(converter, float_ops, calibration_samples, ranges, float_input_conv,
                                           per_channel)
            return converter.convert()
        except Exception as e:  # the converter raises ConverterError with a multi-page log
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DeployError(f"TFLite conversion failed ({precision}): {first}") from e
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)


def _interpreter(path: str, num_threads: int = NUM_THREADS):
    Interpreter = litert_interpreter()

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


def op_census(flatbuffer: bytes) -> dict:
    """{op name: count} over a model's primary subgraph (its flatbuffer bytes), before any delegate is applied."""
    Interpreter = litert_interpreter()

    ops = Interpreter(model_content=flatbuffer)._get_ops_details()  # no public API lists the ops
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


def reference_ops(path: str) -> dict:
    """{"OP (dtype)": count} of the ops XNNPACK leaves to LiteRT's reference kernels ({} when fully delegated).

    The interpreter lists the original nodes beside the delegate kernels but not which
    nodes each kernel replaced, so this follows the data flow: a tensor produced by a
    delegated node is visible outside its partition only as a delegate output. A node is
    therefore on the reference kernels when an output that is not a delegate output is
    read by a delegate or is a graph output, or is read by another such node.
    """
    interpreter = _interpreter(path)
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    original = {n["index"]: n for n in nodes if n["op_name"] != "DELEGATE"}
    delegate_out = {int(t) for d in delegates for t in d["outputs"]}
    delegate_in = {int(t) for d in delegates for t in d["inputs"] if t >= 0}
    graph_outputs = {d["index"] for d in interpreter.get_output_details()}
    producer = {int(t): i for i, n in original.items() for t in n["outputs"]}
    left = {i for i, n in original.items()
            if any(int(t) not in delegate_out and int(t) in delegate_in | graph_outputs for t in n["outputs"])}
    stack = list(left)
    while stack:
        for t in original[stack.pop()]["inputs"]:
            i = producer.get(int(t))
            if i is not None and i not in left and int(t) not in delegate_out:
                left.add(i)
                stack.append(i)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    return dict(sorted(collections.Counter(
        f"{original[i]['op_name']} ({dtypes[int(original[i]['outputs'][0])]})" for i in left).items()))


def dtype_census(path: str) -> dict:
    """{output dtype: {op: count}}: which ops compute in int8 and which stayed float (QUANTIZE counts as int8)."""
    Interpreter = litert_interpreter()

    interpreter = Interpreter(model_path=path)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    census = collections.defaultdict(collections.Counter)
    for op in interpreter._get_ops_details():
        census[dtypes[int(op["outputs"][0])]][op["op_name"]] += 1
    return {dtype: dict(sorted(ops.items())) for dtype, ops in sorted(census.items())}


def invoker(flatbuffer: bytes, num_threads: int = NUM_THREADS):
    """A no-argument callable that runs the model once (XNNPACK, `num_threads`) on a fixed seeded input."""
    interpreter = litert_interpreter()(model_content=flatbuffer, num_threads=num_threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.default_rng(0).standard_normal(detail["shape"]).astype(
        detail["dtype"]))
    return interpreter.invoke


def flops(flatbuffer: bytes) -> float:
    """2 x the multiply-adds of a TFLite model's CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and BATCH_MATMUL ops."""
    interpreter = litert_interpreter()(model_content=flatbuffer)
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    macs = 0
    for op in interpreter._get_ops_details():  # no public API lists the ops
        name, ins = op["op_name"], [int(i) for i in op["inputs"]]
        out = int(np.prod(shapes[int(op["outputs"][0])]))
        if name == "CONV_2D":  # filter (O, kh, kw, I)
            macs += out * int(np.prod(shapes[ins[1]][1:]))
        elif name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, C)
            macs += out * shapes[ins[1]][1] * shapes[ins[1]][2]
        elif name == "FULLY_CONNECTED":  # weights (O, I)
            macs += out * shapes[ins[1]][-1]
        elif name == "BATCH_MATMUL":  # (..., M, K) x (..., K, N); the converter writes transposes as ops
            macs += out * shapes[ins[0]][-1]
    return 2.0 * macs


@functools.lru_cache(maxsize=None)
def roofline_probe(precision: str) -> bytes:
    """The roofline probe's TFLite flatbuffer at `precision` (converted once per process; int8 is the plain
    full-integer model)."""
    samples = np.random.default_rng(1).standard_normal((4, *roofline.PROBE[:3])).astype("float32")
    return convert(roofline.probe_model(), roofline.PROBE_SPEC, precision, samples if precision == "int8" else None,
                   float_ops=())


def probe_precision(precision: str) -> str:
    """The probe precision for a TFLite model: int8 and int8-dynamic as they are, fp32 for fp32 and fp16 weights."""
    return precision if precision in ("int8", DYNAMIC_INT8) else "fp32"


def timed(flatbuffer: bytes, precision: str, runs: int = 20, warmup: int = 3) -> dict:
    """The report's host latency and roofline: the model and the matmul probe timed interleaved (`deploy.roofline`)."""
    result = roofline.measure(invoker(flatbuffer), flops(flatbuffer), invoker(roofline_probe(probe_precision(precision))),
                              precision, runs, warmup)
    return {"latency_ms": result["model_median_ms"], "latency_p10_ms": result["model_p10_ms"], "roofline": result}


def _check_builtins(census: dict) -> None:
    custom = sorted(op for op in census if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE"))
    if custom:
        raise DeployError(f"TFLite model uses non-builtin ops {custom}; only builtin ops are allowed")

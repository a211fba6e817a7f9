"""Keras -> Core ML `.mlpackage` (ML program, iOS 16+), verified on any OS.

Route (facts §8.2/8.3): trace the model into ONE concrete function with a named batch-1
input (a Keras SavedModel has two signatures, which coremltools rejects) and convert that.
GELU must be the erf form (ef_keras.layers.gelu); Keras' built-in exact GELU lowers to a
TF `Erfc` op that coremltools cannot convert. Inputs and outputs are float32 (coremltools
defaults to fp16 I/O); the output is renamed `logits` afterwards because the converter only
knows TF node names.

Image input: `ct.ImageType` applies one scalar scale and a per-channel bias, which cannot
express ImageNet's per-channel std. So the image input takes raw RGB pixels in [0, 255]
(scale 1, bias 0) and the exact normalisation, x·(1/(255·std)) − mean/std per channel, is
traced into the function in front of the model as one multiply and one add.

Verification: on macOS with Core ML itself; elsewhere by executing the saved ML program
with the independent NumPy evaluator `deploy.mil_eval` (fp16 programs in emulated fp16).
"""

from __future__ import annotations

import os
import platform

import numpy as np

from deploy import export_graph, report as report_lib, verify as verification
from deploy.common import DeployError, check_output_path, check_precision, input_spec, size_bytes
from ef_keras.errors import require
from ef_keras.output import commit, remove, temp_path
from deploy.mil_eval import MilProgram, block_census, main_block
from ef_keras.preprocessing import IMAGENET_MEAN, IMAGENET_STD, preprocess_input

OUTPUT_NAME = "logits"


def to_coreml(model, out_path, *, precision="fp16", image_input=False, class_labels=None, verify=True,
              overwrite=False, fold_scales=True, measure=True) -> dict:
    """Converts a Keras model with one static-shape input to a verified `.mlpackage`.

    Args:
        model: a Keras 3 model (batch None or 1; exported with batch 1).
        out_path: the `.mlpackage` directory to write; its parent directory must exist.
        precision: "fp16" (fp16 compute, default), "fp32", or "int8" (fp16 compute with
            8-bit linearly quantised weights via `coremltools.optimize`).
        image_input: take an RGB image (pixels 0..255) instead of a normalised float
            tensor; ImageNet mean/std normalisation is folded in (needs an (H, W, 3) input).
        class_labels: optional list of class names (or path of a text file, one per line);
            makes the model a Core ML classifier whose score output is `logits`.
        verify: compare with Keras (always on in the CLI); False keeps only the NaN check.
        overwrite: replace an existing output.
        fold_scales: fold the layer scales into the linear ops before them (`deploy.export_graph`;
            default); False exports the unfolded graph, for debugging.
        measure: also convert the unfolded model once more for the report's `ops_removed`
            (the latency table's micro-model export turns it off).

    Returns:
        The report dict, also written to `<out_path>.report.json`.
    """
    precision = check_precision(precision)
    spec = input_spec(model)
    if image_input and not spec.is_image:
        raise DeployError(f"image_input needs an (H, W, 3) image input; the model input is {spec.shape[1:]}")
    labels = _labels(class_labels, model)
    out_path = check_output_path(out_path, overwrite, ".mlpackage")
    report_path = report_lib.report_path(out_path)
    check_output_path(report_path, overwrite, ".json")

    graph, outcome = export_graph.export_model(model, fold_scales=fold_scales)
    graph_report = export_graph.graph_report(model, graph, spec, outcome)
    mlmodel = convert(graph, spec, precision, image_input, labels)
    if outcome and measure:  # what folding removed: the same conversion of the unfolded model, census only
        graph_report["ops_removed"] = report_lib.census_delta(
            mil_census(convert(model, spec, precision, image_input, labels)), mil_census(mlmodel))
    tmp = temp_path(out_path)
    try:
        mlmodel.save(tmp)
        program = MilProgram(tmp)
        if image_input:
            pixels = verification.photo_pixels(spec.shape[1], spec.shape[2])
            inputs, keras_inputs = pixels, preprocess_input(pixels)
        else:
            inputs = keras_inputs = verification.sample_inputs(spec)
        runner, evaluator = _runner(tmp, program, spec.name, image_input, labels)
        metrics = verification.check(model, spec, runner, precision, "CoreML", verify, inputs, keras_inputs)
        metrics["evaluator"] = evaluator
        result = report_lib.build(
            target="coreml", path=out_path, model=model, spec=spec, precision=precision,
            census=program.op_census(), size=size_bytes(tmp), verification=metrics,
            extra={"export_graph": graph_report, "coreml": {"format": "mlprogram", "minimum_deployment_target": "iOS16",
                              "compute_precision": "fp32" if precision == "fp32" else "fp16",
                              "weights": {"fp32": "fp32", "fp16": "fp16", "int8": "int8 (linear symmetric)"}[precision],
                              "image_input": bool(image_input), "class_labels": len(labels) if labels else None,
                              "output": OUTPUT_NAME}})
        commit(tmp, out_path)
    finally:
        remove(tmp)
    report_lib.write(result, report_path)
    return result


def convert(model, spec, precision: str, image_input: bool = False, labels=None):
    """Runs coremltools on one traced concrete function; returns the in-memory MLModel."""
    ct = require("coremltools", "deploy", "Core ML conversion")
    import tensorflow as tf

    if image_input:
        mean = np.array(IMAGENET_MEAN, "float32")
        std = np.array(IMAGENET_STD, "float32")
        scale, offset = tf.constant(1.0 / (255.0 * std)), tf.constant(-mean / std)
        forward = tf.function(lambda x: model(x * scale + offset, training=False))
        ct_input = ct.ImageType(name=spec.name, shape=spec.shape, scale=1.0, bias=[0.0, 0.0, 0.0],
                                color_layout=ct.colorlayout.RGB, channel_first=False)
    else:
        forward = tf.function(lambda x: model(x, training=False))
        ct_input = ct.TensorType(name=spec.name, shape=spec.shape, dtype=np.float32)
    concrete = forward.get_concrete_function(tf.TensorSpec(spec.shape, tf.float32, name=spec.name))
    kwargs = {}
    if labels:
        kwargs["classifier_config"] = ct.ClassifierConfig(labels)
    else:
        kwargs["outputs"] = [ct.TensorType(dtype=np.float32)]
    try:
        mlmodel = ct.convert([concrete], source="tensorflow", inputs=[ct_input], convert_to="mlprogram",
                             minimum_deployment_target=ct.target.iOS16,
                             compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
                             **kwargs)
        if precision == "int8":
            from coremltools.optimize import coreml as cto

            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                                        dtype="int8"))
            mlmodel = cto.linear_quantize_weights(mlmodel, config=config)
    except Exception as e:  # coremltools raises many types with long messages; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployError(f"Core ML conversion failed ({type(e).__name__}): {first}") from e
    return _rename_output(mlmodel, labels)


def mil_census(mlmodel) -> dict:
    """{MIL op type: count} of an in-memory ML program (what `MilProgram.op_census` gives for the saved file)."""
    return block_census(main_block(mlmodel.get_spec()))


def _rename_output(mlmodel, labels):
    """Names the score output `logits` (the converter can only use TF node names)."""
    import coremltools as ct

    spec = mlmodel.get_spec()
    if labels:
        old = spec.description.predictedProbabilitiesName
    else:
        old = spec.description.output[0].name
    if old != OUTPUT_NAME:
        ct.utils.rename_feature(spec, old, OUTPUT_NAME)
    return ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)


def _runner(path, program: MilProgram, input_name: str, image_input: bool, labels):
    """Returns (run(inputs) -> logits, evaluator name): Core ML on macOS, deploy.mil_eval elsewhere."""
    if platform.system() == "Darwin":
        import coremltools as ct
        from PIL import Image

        mlmodel = ct.models.MLModel(path)

        def run_coreml(inputs):
            outs = []
            for sample in inputs:
                feed = Image.fromarray(np.uint8(np.clip(np.round(sample), 0, 255))) if image_input else sample[None]
                out = mlmodel.predict({input_name: feed})[OUTPUT_NAME]
                outs.append(np.array([out[k] for k in labels], np.float32) if labels else np.asarray(out, np.float32)[0])
            return np.stack(outs)
        return run_coreml, "coreml"

    score_var = _score_variable(program)
    # Core ML hands an image input to the program as (1, 3, H, W) whatever the TF layout was.
    channel_first = image_input and program.input_shapes[input_name][1] == 3

    def run_mil(inputs):
        outs = []
        for sample in inputs:
            feed = np.asarray(sample[None], np.float32)
            out = program.run({input_name: feed.transpose(0, 3, 1, 2) if channel_first else feed})
            outs.append(np.asarray(out[score_var], np.float32)[0])
        return np.stack(outs)
    return run_mil, "deploy.mil_eval (NumPy)"


def _score_variable(program: MilProgram) -> str:
    """The program's output variable that carries the scores (classifiers add a label output)."""
    if len(program.output_names) == 1:
        return program.output_names[0]
    return OUTPUT_NAME if OUTPUT_NAME in program.output_names else program.output_names[-1]


def _labels(class_labels, model):
    if class_labels is None:
        return None
    if isinstance(class_labels, (str, os.PathLike)):
        if not os.path.isfile(class_labels):
            raise DeployError(f"class labels file {class_labels} does not exist (expected one label per line)")
        with open(class_labels, encoding="utf-8") as f:
            class_labels = [line.strip() for line in f if line.strip()]
    labels = [str(label) for label in class_labels]
    classes = model.outputs[0].shape[-1]
    if len(model.outputs[0].shape) != 2 or len(labels) != classes:
        raise DeployError(f"got {len(labels)} class labels for a model output of shape {tuple(model.outputs[0].shape)}; "
                          f"give exactly one label per class")
    return labels


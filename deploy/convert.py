r"""Convert an EfficientFormer (or any single-input Keras model) to TFLite, Core ML or ONNX, verified.

    python deploy/convert.py --to tflite --model l1                      # l1_fp32.tflite + report
    python deploy/convert.py --to tflite --model l1 --precision int8 --calibration-data ~/imagenette/val
    python deploy/convert.py --to tflite --model l1 --precision int8 --calibration-data DIR --int8-gelu sigmoid
    python deploy/convert.py --to coreml --model l3 --image-input --class-labels labels.txt
    python deploy/convert.py --to onnx --model arch.json --weights ckpt.safetensors --out m.onnx
    python deploy/convert.py --to tflite --model l1 --nofold-scales   # debugging: layer scales left as MULs

`--model` is a registered variant name (V1 l1, l3, l7; V2 s0, s1, s2, l), a saved `.keras` model, or an architecture JSON
(as written by the search). Every conversion is verified against the Keras model; a
failure exits non-zero and leaves no file. A JSON report is written next to the output
(`<out>.report.json`) and a short table is printed.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from deploy.common import TARGET_PRECISIONS, DeployError  # noqa: E402
from ef_keras.checks import check_int  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

TARGETS = {"tflite": ".tflite", "coreml": ".mlpackage", "onnx": ".onnx"}
DEFAULT_PRECISION = {"tflite": "fp32", "coreml": "fp16", "onnx": "fp32"}


def load_model(model: str, weights: str | None = None, image_size: int = 224):
    """Builds or loads the Keras model named by `--model`; raises DeployError on bad input."""
    import keras

    import ef_keras

    if model.lower() in _variant_names():
        built = _build(ef_keras, model.lower(), image_size)
    elif model.endswith(".keras"):
        if not os.path.isfile(model):
            raise DeployError(f"model file {model} does not exist or is not a file")
        import ef_keras.tasks.segmentation  # noqa: F401  (registers SemanticFPN / PyramidBackbone for .keras files)

        try:
            built = keras.saving.load_model(model, compile=False)
        except Exception as e:  # zip, h5 and deserialisation errors of many types
            raise DeployError(f"cannot load Keras model {model} ({type(e).__name__}: {_first_line(e)}); "
                              "is it a complete .keras file?") from e
    elif model.endswith(".json"):
        if not os.path.isfile(model):
            raise DeployError(f"architecture file {model} does not exist or is not a file")
        from ef_keras.registry import architecture

        try:
            config = architecture(model)  # either family: the file's "family" field says which
        except ef_keras.ConfigError as e:
            raise DeployError(f"invalid architecture {model}: {_first_line(e)}") from e
        built = _build(ef_keras, config, image_size)
    else:
        raise DeployError(f"--model {model!r}: give {', '.join(_variant_names())}, a .keras file or an architecture "
                          ".json")
    if weights:
        if not os.path.isfile(weights):
            raise DeployError(f"checkpoint {weights} does not exist or is not a file")
        try:
            ef_keras.load_weights_from_checkpoint(built, weights)
        except ef_keras.CheckpointError as e:
            raise DeployError(f"cannot load checkpoint {weights} ({_first_line(e)})") from e
    return built


def _variant_names() -> tuple:
    """Every registered variant name, V1 (l1, l3, l7) then V2 (s0, s1, s2, l): `ef_keras.registry`."""
    from ef_keras.registry import list_models

    return tuple(list_models())


def _build(ef_keras, config, image_size):
    """A registered name or an architecture config of either family, built by its family's model class."""
    from ef_keras.registry import build_model

    try:
        return build_model(config, input_shape=(image_size, image_size, 3))
    except (ef_keras.ConfigError, ef_keras.ModelArgumentError) as e:
        raise DeployError(_first_line(e)) from e


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def default_out(model: str, to: str, precision: str) -> str:
    stem = os.path.splitext(os.path.basename(model))[0]
    return f"{stem}_{precision}{TARGETS[to]}"


def convert(to: str, model: str, *, weights=None, precision=None, calibration_data=None, out=None,
            overwrite=False, image_size=224, image_input=False, class_labels=None, opset=17,
            int8_gelu="exact", int8_ranges="percentile", fold_scales=True) -> dict:
    """What the CLI does, as a function: load `model`, convert to `to`, verify, write; returns the report."""
    import deploy

    if to not in TARGETS:
        raise DeployError(f"unknown --to {to!r}; choose one of {', '.join(TARGETS)}")
    precision = precision or DEFAULT_PRECISION[to]
    if precision not in TARGET_PRECISIONS[to]:
        raise DeployError(f"--precision {precision!r} is not available for {to}; choose one of "
                          f"{', '.join(TARGET_PRECISIONS[to])}")
    if to == "tflite" and precision == "int8" and not calibration_data:
        raise DeployError("--precision int8 for TFLite needs --calibration-data (an image folder, an ImageFolder "
                          "directory or a tfds dataset name); random calibration is never used")
    if int8_gelu != "exact" and (to, precision) != ("tflite", "int8"):
        raise DeployError(f"--int8-gelu {int8_gelu} applies to --to tflite --precision int8 only")
    if int8_ranges != "percentile" and (to, precision) != ("tflite", "int8"):
        raise DeployError(f"--int8-ranges {int8_ranges} applies to --to tflite --precision int8 only")
    if (image_input or class_labels) and to != "coreml":
        raise DeployError("--image-input and --class-labels apply to --to coreml only")
    check_int("--image-size", image_size, low=32, error=DeployError)
    out = out or default_out(model, to, precision)
    from deploy.common import check_output_path

    check_output_path(out, overwrite, TARGETS[to])  # fail fast, before building or loading the model
    keras_model = load_model(model, weights, image_size)
    if to == "tflite":
        return deploy.to_tflite(keras_model, out, precision=precision, calibration_data=calibration_data,
                                overwrite=overwrite, int8_gelu=int8_gelu, int8_ranges=int8_ranges,
                                fold_scales=fold_scales)
    if to == "coreml":
        return deploy.to_coreml(keras_model, out, precision=precision, image_input=image_input,
                                class_labels=class_labels, overwrite=overwrite, fold_scales=fold_scales)
    return deploy.to_onnx(keras_model, out, opset=opset, overwrite=overwrite, fold_scales=fold_scales)


FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    flags.DEFINE_string("to", None, f"target format: {', '.join(TARGETS)}")
    flags.DEFINE_string("model", None, "l1 | l3 | l7 | s0 | s1 | s2 | l | PATH.keras | ARCH.json")
    flags.DEFINE_string("weights", None, "checkpoint to load (.safetensors / .pth, official or timm layout)")
    flags.DEFINE_string("precision", None, "fp32 | fp16 | int8 (default: fp32 for tflite/onnx, fp16 for coreml); "
                                           "tflite also takes int8-dynamic (int8 weights, float activations)")
    flags.DEFINE_string("calibration-data", None, "int8 TFLite: image folder, ImageFolder root, embedded / digits / "
                                                  "fashion_mnist (train split) or a tfds dataset name")
    flags.DEFINE_string("out", None, "output path (default: <model>_<precision>.<ext> in the current directory)")
    flags.DEFINE_boolean("overwrite", False, "replace an existing output")
    flags.DEFINE_integer("image-size", 224, "input height and width for l1/l3/l7/ARCH.json (multiple of 32)")
    flags.DEFINE_boolean("image-input", False, "coreml: RGB image input (0..255) with ImageNet normalisation folded in")
    flags.DEFINE_string("class-labels", None, "coreml: text file with one class label per line")
    flags.DEFINE_integer("opset", 17, "onnx: opset (>= 17)")
    flags.DEFINE_enum("int8-gelu", "exact", ["exact", "tanh", "sigmoid"],
                      "tflite int8: GELU exact (float island, default) or an approximation that runs in int8 "
                      "(changes the float model; the report gives the difference)")
    flags.DEFINE_enum("int8-ranges", "percentile", ["percentile", "minmax"],
                      "tflite int8: activation ranges from the calibration data, percentile (all but the 1e-4 most "
                      "extreme values per side; >= 16 samples) or minmax (the converter's own; >= 4 samples)")
    flags.DEFINE_boolean("fold-scales", True, "fold every layer scale into the linear op before it (the report names "
                                              "any that cannot be folded); --nofold-scales exports the unfolded graph")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    if not FLAGS.to or not FLAGS.model:
        print("error: --to and --model are required (e.g. --to tflite --model l1)", file=sys.stderr)
        return 2
    print(f"converting {FLAGS.model} to {FLAGS.to} ...", flush=True)
    report = convert(FLAGS.to, FLAGS.model, weights=FLAGS.weights, precision=FLAGS.precision,
                     calibration_data=FLAGS["calibration-data"].value, out=FLAGS.out, overwrite=FLAGS.overwrite,
                     image_size=FLAGS["image-size"].value, image_input=FLAGS["image-input"].value,
                     class_labels=FLAGS["class-labels"].value, opset=FLAGS.opset,
                     int8_gelu=FLAGS["int8-gelu"].value, int8_ranges=FLAGS["int8-ranges"].value,
                     fold_scales=FLAGS["fold-scales"].value)
    from deploy.report import delegation_warning, format_table, report_path

    print(format_table(report))
    warning = delegation_warning(report)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {report_path(report['path'])}")
    return 0


def run():
    """Console entry point (`ef-convert`, `python deploy/convert.py`, `python -m deploy.convert`)."""
    define_flags()
    run_cli(main)


if __name__ == "__main__":
    run()

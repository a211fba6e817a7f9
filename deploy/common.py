"""Pieces every converter shares: the error type, the static-shape model spec and atomic output.

Every converter works the same way: check the model and the output path up front (so bad
input fails before minutes of conversion), write the converted model to a temporary path
beside the final one (`ef_keras.output`), verify that temporary file, and only then rename
it into place. A conversion that fails verification therefore leaves no file behind.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ef_keras.errors import EfKerasError, require
from ef_keras.output import check_output, is_mlpackage


class DeployError(EfKerasError):
    """A conversion that cannot run or did not verify; the message says what to do."""


def litert_interpreter():
    """LiteRT's `Interpreter` class (runs .tflite files for verification and timing; an extra's package)."""
    return require("ai_edge_litert.interpreter", "deploy", "running a .tflite model").Interpreter


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The single input of a model, with the batch fixed to 1 for export."""

    name: str
    shape: tuple  # full shape, batch included (always 1)
    dtype: str = "float32"

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 4 and self.shape[-1] == 3


def input_spec(model) -> InputSpec:
    """The model's one static-shape input as an export spec with batch 1.

    XNNPACK and CoreML need static shapes; a `None` batch would add SHAPE/PACK/GATHER ops
    to the TFLite graph (facts §8.3), so every export uses batch 1.
    """
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise DeployError(f"model {getattr(model, 'name', model)!r} has no defined input; build it with keras.Input "
                          "(a functional or Sequential model with an input shape)")
    if len(inputs) != 1:
        raise DeployError(f"model {model.name!r} has {len(inputs)} inputs; deploy supports models with exactly one input")
    if len(model.outputs) != 1:
        raise DeployError(f"model {model.name!r} has {len(model.outputs)} outputs; deploy supports exactly one output "
                          "(for EfficientFormer use the model itself, not heads_model())")
    shape = tuple(inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise DeployError(f"model {model.name!r} input shape {shape} has unknown dimensions; rebuild it with a fixed "
                          "input_shape, e.g. (224, 224, 3)")
    if shape[0] not in (None, 1):
        raise DeployError(f"model {model.name!r} has a fixed batch of {shape[0]}; deploy exports batch 1, so build "
                          "it with batch None or 1")
    name = _tensor_name(inputs[0])
    return InputSpec(name=name, shape=(1,) + tuple(int(d) for d in shape[1:]),
                     dtype=str(np.dtype(getattr(inputs[0], "dtype", "float32") or "float32")))


def _tensor_name(tensor) -> str:
    """A clean input name: the Keras input's name, sanitised for TF placeholders / CoreML features."""
    raw = getattr(tensor, "name", None) or "input"
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in raw.split(":")[0])
    return clean if clean and clean[0].isalpha() else f"input_{clean}"


def keras_predict(model, batch: np.ndarray) -> np.ndarray:
    """Reference outputs of the Keras model in inference mode, one sample at a time (batch 1)."""
    return np.concatenate([np.asarray(model(batch[i:i + 1], training=False), dtype="float32")
                           for i in range(len(batch))])


def check_output_path(out_path: str, overwrite: bool, suffix: str | None = None) -> str:
    """Validates the output path before any work (see `ef_keras.output.check_output`); returns it absolute.

    The parent directory must exist and be writable, the name must end in `suffix`, and an
    existing output needs `overwrite`, which never replaces a directory other than a
    `.mlpackage` written by Core ML.
    """
    return check_output(out_path, overwrite=overwrite, suffix=suffix, ours=is_mlpackage, error=DeployError)


def size_bytes(path: str) -> int:
    """Size of a file, or the total size of a directory (.mlpackage)."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


#: The precisions every converter takes (`check_precision`), and the micro-model export's.
PRECISIONS = ("fp32", "fp16", "int8")
#: TFLite's extra precision: int8 weights, float activations (no calibration data).
DYNAMIC_INT8 = "int8-dynamic"
#: What each target of `deploy.convert` accepts.
TARGET_PRECISIONS = {"tflite": (*PRECISIONS, DYNAMIC_INT8), "coreml": PRECISIONS, "onnx": ("fp32",)}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise DeployError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision

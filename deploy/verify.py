"""Numerical verification of a converted model against the Keras model it came from.

Verification always runs and a failure raises `DeployError`, so a converter never leaves an
unverified file behind. It feeds a few real-looking inputs (crops of the two photographs
that ship with scikit-learn, ImageNet-normalised like `ef_keras.preprocess_input`; seeded
Gaussian samples for non-image inputs) through both models and applies, per precision:

- fp32: max |diff| <= 1e-4, measured relative to logits of unit scale (the diff is divided
  by max(1, RMS of the Keras outputs), so large-scale outputs are not held to an
  impossibly tight absolute bound and small ones are never given a looser one);
- fp16: the same relative diff <= 1e-2 and, for (batch, classes) outputs, identical top-1;
- int8: top-1 agreement and diffs are reported; the check only demands finite outputs and a
  cosine similarity >= 0.9 with the Keras outputs, which catches a broken calibration or
  an unconverted model without pretending that post-training quantisation is exact.

Any NaN/Inf in the converted outputs fails at every precision: that is what the two silent
TFLite routes (a concrete function or `tf.saved_model.save` of a Keras 3 model) produce.
"""

from __future__ import annotations

import numpy as np

from deploy.common import DeployError, InputSpec, keras_predict
from ef_keras.errors import require
from ef_keras.preprocessing import preprocess_input

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
INT8_MIN_COSINE = 0.9
NUM_SAMPLES = 4


def photo_pixels(height: int, width: int, count: int = NUM_SAMPLES) -> np.ndarray:
    """`count` RGB crops (uint8 values as float32) of scikit-learn's two bundled photographs.

    Real photographs (not zeros, not noise), available offline; crops differ in position,
    zoom and mirroring so the samples are not trivially alike.
    """
    Image = require("PIL.Image", "deploy", "verification")
    load_sample_images = require("sklearn.datasets", "deploy", "verification").load_sample_images

    photos = load_sample_images().images  # two (427, 640, 3) uint8 images
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        zoom = 1.0 - 0.25 * (i // len(photos) % 3)  # 1.0, 0.75, 0.5 of the short side
        side = int(min(h, w) * zoom)
        top, left = (h - side) // 2, (w - side) // (2 + i % 3)
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        crop = np.asarray(crop.resize((width, height), Image.BILINEAR), "float32")  # integer values, as uint8
        out.append(crop[:, ::-1] if i % 4 >= 2 else crop)
    return np.stack(out)


def sample_inputs(spec: InputSpec, count: int = NUM_SAMPLES, seed: int = 0) -> np.ndarray:
    """Verification inputs for a model input: normalised photos for images, seeded N(0, 1) otherwise."""
    if spec.is_image:
        return preprocess_input(photo_pixels(spec.shape[1], spec.shape[2], count))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count,) + tuple(spec.shape[1:])).astype("float32")


def compare(reference: np.ndarray, converted: np.ndarray, precision: str, target: str) -> dict:
    """Compares converted outputs with the Keras outputs; raises DeployError if they disagree.

    Returns the metrics for the report: max_abs_diff, max_rel_diff (diff / max(1, RMS)),
    output_rms, cosine, top1_agreement (None unless outputs are (batch, classes)) and the
    tolerance applied.
    """
    reference = np.asarray(reference, "float64")
    converted = np.asarray(converted, "float64").reshape(reference.shape) if np.size(converted) == np.size(
        reference) else np.asarray(converted, "float64")
    if converted.shape != reference.shape:
        raise DeployError(f"{target} verification failed: output shape {converted.shape} differs from the Keras "
                          f"output shape {reference.shape}")
    if not np.all(np.isfinite(converted)):
        raise DeployError(f"{target} verification failed: the converted model outputs NaN/Inf (weights missing or "
                          "broken conversion route); nothing was written")
    diff = np.abs(converted - reference)
    rms = float(np.sqrt(np.mean(reference ** 2)))
    rel = float(diff.max() / max(rms, 1.0))
    denom = np.linalg.norm(reference) * np.linalg.norm(converted)
    cosine = float(np.sum(reference * converted) / denom) if denom > 0 else float(np.array_equal(reference, converted))
    top1 = None
    if reference.ndim == 2 and reference.shape[1] > 1:
        top1 = float(np.mean(np.argmax(reference, -1) == np.argmax(converted, -1)))
    metrics = {"max_abs_diff": float(diff.max()), "max_rel_diff": rel, "output_rms": rms, "cosine": cosine,
               "top1_agreement": top1, "samples": int(reference.shape[0])}
    if precision in TOLERANCE:
        tol = TOLERANCE[precision]
        metrics["tolerance"] = tol
        if rel > tol:
            raise DeployError(f"{target} {precision} verification failed: max |diff| {diff.max():.3g} "
                              f"(relative {rel:.3g}) exceeds {tol:g}; nothing was written")
        if precision == "fp16" and top1 is not None and top1 < 1.0:
            raise DeployError(f"{target} fp16 verification failed: top-1 agrees on only {top1:.0%} of the samples; "
                              "nothing was written")
    else:
        metrics["min_cosine"] = INT8_MIN_COSINE
        if cosine < INT8_MIN_COSINE:
            raise DeployError(f"{target} {precision} verification failed: cosine similarity {cosine:.3f} with the "
                              f"Keras outputs is below {INT8_MIN_COSINE} (broken quantisation or calibration data); "
                              "nothing was written")
    return metrics


def check(model, spec: InputSpec, run_converted, precision: str, target: str, enabled: bool = True,
          inputs: np.ndarray | None = None, keras_inputs: np.ndarray | None = None) -> dict:
    """Runs the sample inputs through Keras and through `run_converted`; returns `compare`'s metrics.

    `inputs` are what the converted model receives; `keras_inputs` (default: the same) what
    Keras receives, e.g. raw pixels vs their normalised form for a CoreML image input. With
    `enabled=False` only the NaN/Inf check runs and the metrics say `"verified": False`.
    """
    inputs = sample_inputs(spec) if inputs is None else inputs
    converted = np.asarray(run_converted(inputs), "float32")
    if not enabled:
        if not np.all(np.isfinite(converted)):
            raise DeployError(f"{target} conversion produced NaN/Inf outputs; nothing was written")
        return {"verified": False}

    reference = keras_predict(model, inputs if keras_inputs is None else keras_inputs)
    return {"verified": True, **compare(reference, converted, precision, target)}

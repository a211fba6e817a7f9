"""Input pipeline of the published weights: the evaluation resize + centre crop, and normalisation.

Both read a preset (`ef_keras.presets`): `eval_transform` its crop ratio and interpolation,
`preprocess_input` its mean/std. `eval_transform` is the only evaluation transform in the
project: the training data pipeline, `describe --image` and deploy's int8 calibration all
call it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ef_keras.presets import DEFAULT, IMAGENET_MEAN, IMAGENET_STD, Preset, preset_for

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "preprocess_input"]


def _preset(preset) -> Preset:
    return preset if isinstance(preset, Preset) else preset_for(preset)


def preprocess_input(images, preset: Preset | str | None = None):
    """RGB images with values in [0, 255] (NHWC) -> float32 normalised by the preset's mean/std.

    Equivalent to scale 1/(255·std) and offset −mean/std per channel. `preset` is a `Preset`
    or a variant name (default: the ImageNet mean/std every EfficientFormer preset uses).
    """
    p = _preset(preset) if preset is not None else DEFAULT
    x = np.asarray(images, dtype="float32") / 255.0
    return (x - np.asarray(p.mean, "float32")) / np.asarray(p.std, "float32")


def eval_transform(image, image_size: int | tuple[int, int] | None = None, crop_pct: float | None = None,
                   interpolation: str | None = None, preset: Preset | str | None = None):
    """Resize so the crop covers crop_pct of the short side, then take the centre crop (float 0-255).

    As timm's eval transform (`transforms_factory.transforms_imagenet_eval`): for a square
    size S the short side becomes floor(S / crop_pct) and the long side keeps the aspect
    ratio (truncated); the crop's offset is round((resized - S) / 2) with ties to even, as
    torchvision's `center_crop`. Works eagerly and inside tf.data (graph) on an (H, W, 3)
    image of any dtype; the result is clipped to [0, 255] (bicubic overshoots).

    Args:
        image: (H, W, 3) RGB pixels in [0, 255].
        image_size: output size S or (height, width); default the preset's.
        crop_pct, interpolation: default the preset's (timm: 0.95, bicubic).
        preset: a `Preset` or variant name supplying the defaults (None: `presets.DEFAULT`).
    """
    p = _preset(preset) if preset is not None else DEFAULT
    size = image_size if image_size is not None else p.image_size
    out_h, out_w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    crop_pct = p.crop_pct if crop_pct is None else crop_pct
    method = p.interpolation if interpolation is None else interpolation
    # The scaled size each side must reach; the side needing the larger scale decides it. Integer arithmetic,
    # so e.g. a 256 short side at crop 0.875 is an exact no-op.
    target_h, target_w = int(out_h / crop_pct), int(out_w / crop_pct)
    shape = tf.cast(tf.shape(image)[:2], tf.int64)
    h, w = shape[0], shape[1]
    by_height = target_h * w >= target_w * h
    new_h = tf.where(by_height, tf.constant(target_h, tf.int64), target_w * h // w)
    new_w = tf.where(by_height, target_h * w // h, tf.constant(target_w, tf.int64))
    new = tf.cast(tf.maximum(tf.stack([new_h, new_w]), [out_h, out_w]), tf.int32)
    resized = tf.image.resize(tf.cast(image, tf.float32), new, method=method, antialias=method != "nearest")
    resized = tf.clip_by_value(resized, 0.0, 255.0)
    top = tf.cast(tf.round(tf.cast(new[0] - out_h, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new[1] - out_w, tf.float32) / 2.0), tf.int32)
    return tf.ensure_shape(resized[top:top + out_h, left:left + out_w], (out_h, out_w, 3))

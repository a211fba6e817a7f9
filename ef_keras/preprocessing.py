"""Input pipeline of the published weights: the evaluation resize + centre crop, and normalisation.

Both read a preset (`ef_keras.presets`): `eval_transform` its crop ratio and interpolation,
`preprocess_input` its mean/std. `eval_transform` is the only evaluation transform in the
project: the training data pipeline, `describe --image` and deploy's int8 calibration all
call it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ef_keras.checks import check_number
from ef_keras.errors import InputError
from ef_keras.presets import DEFAULT, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, Preset, variant_preset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "preprocess_input"]

#: The largest side `eval_transform` resizes to (and the pixel count of its square): a tiny crop_pct, a huge
#: image_size or an extreme aspect ratio would otherwise ask for gigabytes.
MAX_RESIZED_SIDE = 8192


def _preset(preset) -> Preset:
    """None -> DEFAULT; a Preset as is; a variant name of any family via `variant_preset` (unknown: PresetError)."""
    if preset is None:
        return DEFAULT
    return preset if isinstance(preset, Preset) else variant_preset(preset)


def _channel_hint(shape) -> str:
    """What to do about an image whose last axis is not 3 RGB channels."""
    if len(shape) == 2 or (shape and shape[-1] == 1):
        return "a grey image needs 3 channels: np.repeat(image[..., None], 3, -1) or PIL's image.convert('RGB')"
    if shape and shape[-1] == 4:
        return "drop the alpha channel: image[..., :3] (or PIL's image.convert('RGB'))"
    return "give RGB pixels in [0, 255] with channels last"


def _check_pixels(array: np.ndarray, what: str, ranks: tuple[int, ...]) -> None:
    """Refuses a pixel array of the wrong rank, channel count, size or dtype, or with NaN / Inf values."""
    want = " or ".join({3: "(H, W, 3)", 4: "(batch, H, W, 3)"}[r] for r in ranks)
    if array.ndim not in ranks or array.shape[-1] != 3:
        raise InputError(f"{what} expects {want} RGB pixels, got shape {array.shape}; {_channel_hint(array.shape)}")
    if 0 in array.shape:
        raise InputError(f"{what} got an empty image of shape {array.shape}; give an image at least 1x1")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"{what} expects real-valued pixels in [0, 255], got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32's range becomes Inf here
            finite = np.isfinite(array.astype(np.float32)).all()
        if not finite:
            raise InputError(f"{what} got NaN, Inf or out-of-range pixel values; give pixels in [0, 255] (check "
                             "how the image was decoded or scaled)")


def as_pixels(images, what: str, ranks: tuple[int, ...]) -> np.ndarray:
    """`images` as a NumPy array of RGB pixels of one of `ranks` (3, 4); InputError naming `what` otherwise."""
    try:
        array = np.asarray(images)
    except (ValueError, TypeError) as e:  # ragged lists, objects numpy cannot stack
        raise InputError(f"{what} expects an array of RGB pixels: {e}") from e
    _check_pixels(array, what, ranks)
    return array


def preprocess_input(images, preset: Preset | str | None = None):
    """RGB images with values in [0, 255] (NHWC) -> float32 normalised by the preset's mean/std.

    Equivalent to scale 1/(255·std) and offset −mean/std per channel. `preset` is a `Preset`
    or a variant name (default: the ImageNet mean/std every EfficientFormer preset uses).
    """
    p = _preset(preset)
    x = as_pixels(images, "preprocess_input", (3, 4)).astype("float32") / 255.0
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

    Bad arguments raise `InputError` (one line): an image that is not (H, W, 3), empty, or holds
    NaN / Inf (values are checked on eager inputs; inside tf.data only the static shape is), a size
    that is not a positive integer (pair), a crop_pct outside (0, 1], an unknown interpolation, or a
    resize beyond `MAX_RESIZED_SIDE`.
    """
    p = _preset(preset)
    size = image_size if image_size is not None else p.image_size
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise InputError(f"image_size must be a positive integer or a (height, width) pair, got {size!r}")
    out_h, out_w = (check_number("image_size", v, low=1, integer=True) for v in pair)
    crop_pct = check_number("crop_pct", p.crop_pct if crop_pct is None else crop_pct, low=0, high=1, low_open=True)
    method = p.interpolation if interpolation is None else interpolation
    if method not in INTERPOLATIONS:
        raise InputError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {method!r}")
    symbolic = tf.is_symbolic_tensor(image)  # inside tf.data or a tf.function: the values are not known yet
    if symbolic:
        static = tuple(image.shape)
        if image.shape.rank is not None and (len(static) != 3 or static[-1] not in (3, None)):
            raise InputError(f"eval_transform expects (H, W, 3) RGB pixels, got shape {static}; "
                             f"{_channel_hint(static)}")
    # The scaled size each side must reach; the side needing the larger scale decides it. Integer arithmetic,
    # so e.g. a 256 short side at crop 0.875 is an exact no-op.
    target_h, target_w = int(out_h / crop_pct), int(out_w / crop_pct)
    if max(target_h, target_w) > MAX_RESIZED_SIDE:
        raise InputError(f"image_size {(out_h, out_w)} at crop_pct {crop_pct:g} resizes the image to "
                         f"{max(target_h, target_w)} px, over {MAX_RESIZED_SIDE}: crop_pct is the share of the "
                         "short side the crop keeps (timm: 0.95); give a larger crop_pct or a smaller image_size")
    if not symbolic:
        image = as_pixels(image, "eval_transform", (3,))
        h, w = image.shape[:2]
        scale = max(target_h / h, target_w / w)
        if h * w * scale * scale > MAX_RESIZED_SIDE ** 2:
            raise InputError(f"an {h}x{w} image resized for a {out_h}x{out_w} crop would be "
                             f"{round(h * scale)}x{round(w * scale)} px: crop the image to a less extreme aspect "
                             "ratio first")
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

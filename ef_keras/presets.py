"""Presets: everything about a variant's published weights besides the architecture, one row each.

A row holds where the weights are (URL, cache file name, sha256 when known), how they were
evaluated (input size, centre-crop ratio, interpolation), the input normalisation (mean/std
of RGB in [0, 1]) and which class list the classifier predicts. Every consumer reads the row
instead of its own constant: `load_imagenet_weights` (download), `preprocess_input` and the
data pipeline's `normalize` (mean/std), `eval_transform` through `describe`, deploy's
calibration and training evaluation (crop and interpolation), `decode_predictions`
(class names).

Source of the values: timm's pretrained configs (`timm/models/efficientformer.py` and
`efficientformer_v2.py`, `_cfg`): input 224, crop_pct 0.95, bicubic, ImageNet mean/std,
1000 classes, weights on the Hugging Face hub as `timm/<model>.<tag>/model.safetensors`.
The official evaluation script uses crop 0.875 instead (facts file §2.9 item 7); the
published numbers of these weights are timm's, at 0.95.

Adding a family (e.g. EfficientFormerV2) adds rows to `PRESETS` with `timm_imagenet`; no
code changes. The sha256 of the weight files is None: the files could not be downloaded
where this table was written and the hub listing was not found in the searchable sources,
so the download is checked only by its safetensors header and the key/shape check on load.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from ef_keras.errors import EfKerasError

#: ImageNet RGB mean and std (inputs in [0, 1]); timm's IMAGENET_DEFAULT_MEAN / _STD.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Resize methods the eval transform accepts (names of `tf.image.ResizeMethod`).
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "area", "lanczos3")
#: Class-name lists shipped in ef_keras/datasets (name -> file); see IMAGENET1K_CLASSES_LICENSE.
CLASS_LISTS = {"imagenet1k": "imagenet1k_classes.tsv"}


class PresetError(EfKerasError):
    """A preset name that does not exist, or predictions that do not fit a preset's classes."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """One variant's published weights and how to feed them (see the module docstring).

    Attributes:
        name: the registered variant name (`ef_keras.list_models()`) this row belongs to ("l1").
        weights_url: where the weights are downloaded from (None: no published weights).
        weights_file: the file name in the Keras cache (`~/.keras/models/ef_keras/`).
        weights_sha256: the file's sha256, or None where it could not be established.
        image_size: the evaluation input size (height = width).
        crop_pct: centre-crop ratio of the evaluation: the short side is resized to
            floor(image_size / crop_pct), then the centre image_size square is taken.
        interpolation: resize method of the evaluation (one of `INTERPOLATIONS`).
        mean, std: per-channel RGB normalisation of inputs in [0, 1].
        classes: the class list the classifier predicts (a key of `CLASS_LISTS`).
    """

    name: str
    weights_url: str | None = None
    weights_file: str | None = None
    weights_sha256: str | None = None
    image_size: int = 224
    crop_pct: float = 0.95
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classes: str = "imagenet1k"

    def __post_init__(self):
        if not 0 < self.crop_pct <= 1:
            raise PresetError(f"preset {self.name}: crop_pct must lie in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise PresetError(f"preset {self.name}: interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                              f"got {self.interpolation!r}")
        if self.classes not in CLASS_LISTS:
            raise PresetError(f"preset {self.name}: unknown class list {self.classes!r}; "
                              f"known: {', '.join(CLASS_LISTS)}")

    @property
    def timm_model(self) -> str | None:
        """timm's name of the weights ("efficientformer_l1.snap_dist_in1k"; the hub repository `timm/<it>`)."""
        return self.weights_file.removesuffix(".safetensors") if self.weights_file else None

    @property
    def num_classes(self) -> int:
        return len(class_names(self.classes))


def timm_imagenet(name: str, timm_model: str, sha256: str | None = None) -> Preset:
    """A row for timm's ImageNet-1k weights of `timm_model` ("efficientformer_l1.snap_dist_in1k").

    The weights are the hub's `timm/<timm_model>/model.safetensors`; evaluation and
    normalisation are timm's `_cfg` defaults for the EfficientFormer families (the `Preset`
    field defaults).
    """
    return Preset(name=name, weights_url=f"https://huggingface.co/timm/{timm_model}/resolve/main/model.safetensors",
                  weights_file=f"{timm_model}.safetensors", weights_sha256=sha256)


#: The preset of every variant with published weights, by variant name.
PRESETS: dict[str, Preset] = {p.name: p for p in (
    timm_imagenet("l1", "efficientformer_l1.snap_dist_in1k"),
    timm_imagenet("l3", "efficientformer_l3.snap_dist_in1k"),
    timm_imagenet("l7", "efficientformer_l7.snap_dist_in1k"),
    timm_imagenet("s0", "efficientformerv2_s0.snap_dist_in1k"),
    timm_imagenet("s1", "efficientformerv2_s1.snap_dist_in1k"),
    timm_imagenet("s2", "efficientformerv2_s2.snap_dist_in1k"),
    timm_imagenet("l", "efficientformerv2_l.snap_dist_in1k"),
)}
#: Evaluation and normalisation for architectures without a preset (searched or custom
#: configs, models trained here): the family's settings, no weights.
DEFAULT = Preset(name="default")


def get_preset(name: str) -> Preset:
    """The preset of variant `name`; PresetError naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError) as e:
        raise PresetError(f"no preset {name!r}: published weights exist for {', '.join(sorted(PRESETS))}") from e


def preset_for(name: str | None) -> Preset:
    """The preset of variant `name` if it has one, else `DEFAULT` (same evaluation, no weights).

    For a model's own config name, which may be a custom or searched architecture's; a name a
    user passes as a preset goes through `variant_preset`, which refuses unknown names.
    """
    return PRESETS.get(name, DEFAULT) if isinstance(name, str) else DEFAULT


def variant_preset(name) -> Preset:
    """The preset of a registered variant of any family ("l1", "S0", "efficientformerv2_l").

    A variant without published weights gets `DEFAULT`; a name no family registers (`ef_keras.list_models()`,
    the one list of every family's names) raises PresetError naming them, instead of silently
    falling back to the defaults.
    """
    from ef_keras.registry import UnknownModelError, list_models, registered

    try:
        entry = registered(name)
    except UnknownModelError as e:
        raise PresetError(f"unknown preset {name!r}: give a Preset or a variant name ({', '.join(list_models())})") \
            from e
    return PRESETS.get(entry.name, DEFAULT)


@functools.lru_cache(maxsize=None)
def class_names(classes: str = "imagenet1k") -> tuple[tuple[str, str], ...]:
    """The (id, description) of every class of a shipped class list, in classifier index order.

    For "imagenet1k": (WordNet synset id, lemmas), e.g. ("n02123045", "tabby, tabby cat") at 281.
    """
    if classes not in CLASS_LISTS:
        raise PresetError(f"unknown class list {classes!r}; known: {', '.join(CLASS_LISTS)}")
    path = os.path.join(os.path.dirname(__file__), "datasets", CLASS_LISTS[classes])
    with open(path, encoding="utf-8") as f:
        return tuple(tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip())


def decode_predictions(preds, top: int = 5, classes: str = "imagenet1k") -> list[list[tuple[str, str, float]]]:
    """The `top` classes of each prediction, as `keras.applications` returns them.

    Args:
        preds: (batch, num_classes) scores, e.g. softmax probabilities (EfficientFormer
            outputs logits; `keras.ops.softmax(logits)` gives probabilities). The order of
            the scores decides; they are returned as given.
        top: how many classes per example.
        classes: the class list (a key of `CLASS_LISTS`).

    Returns:
        One list per example of (class id, description, score), highest score first, e.g.
        [("n02123045", "tabby, tabby cat", 0.71), ...].
    """
    names = class_names(classes)
    try:
        preds = np.asarray(preds)
    except (ValueError, TypeError) as e:  # ragged lists, objects numpy cannot stack
        raise PresetError(f"decode_predictions expects a (batch, {len(names)}) array of scores: {e}") from e
    if preds.ndim != 2 or preds.shape[1] != len(names):
        raise PresetError(f"decode_predictions expects a batch of {len(names)}-class predictions, shape "
                          f"(batch, {len(names)}), got an array of shape {preds.shape}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= len(names):
        raise PresetError(f"top must be an integer from 1 to {len(names)}, got {top!r}")
    if not np.issubdtype(preds.dtype, np.number) or np.issubdtype(preds.dtype, np.complexfloating):
        raise PresetError(f"decode_predictions expects real-valued scores, got an array of dtype {preds.dtype}")
    if not np.isfinite(preds).all():
        raise PresetError("decode_predictions got NaN or Inf scores: the model's output is not finite "
                          "(check the input images and the weights); nothing to decode")
    # Descending, ties in index order; ~x orders integers descending without -x's overflow at the dtype's minimum.
    order = np.argsort(~preds if np.issubdtype(preds.dtype, np.integer) else -preds, axis=1, kind="stable")[:, :top]
    return [[(*names[i], float(row[i])) for i in idx] for row, idx in zip(preds, order)]

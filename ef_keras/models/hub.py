"""keras-hub classes for every family: backbone, image classifier, its preprocessor and image converter, presets.

Each family folder holds keras-hub's five files (`<model>_backbone.py`, `_image_classifier.py`,
`_image_classifier_preprocessor.py`, `_image_converter.py`, `_presets.py`), each a few lines
naming its family; what they share is here, once:

- `HubBackbone`: a `keras_hub.models.FeaturePyramidBackbone` whose graph *is* the family's
  `include_top=False` model (the same layers, names and variables; no second network), with
  `pyramid_outputs` P2-P5 and the stride-32 map as its output.
- `HubImageClassifier`: pooled backbone features into the family's heads (`classifier_top`:
  `head`, and `head_dist` averaged with it), so timm's distilled weights load as they are.
- `HubImageConverter`: timm's evaluation transform (`ef_keras.preprocessing.eval_transform`: short
  side to size / crop_pct, bicubic, centre crop) and the preset's mean/std as keras-hub's
  `scale`/`offset`; the values come from the `ef_keras.presets` row.
- `hub_presets(family)`: one keras-hub preset per published timm weight of the family,
  "efficientformer_l1_imagenet" -> handle "hf://timm/efficientformer_l1.snap_dist_in1k".
- `PresetMixin.from_preset`: our preset names, `hf://timm/efficientformer...` handles and local
  directories laid out like a timm Hugging Face repository load through `ef_keras.weights` (the
  one checkpoint importer); anything else (a directory written by `save_to_preset`) goes to
  keras-hub. keras-hub's own timm loader cannot be extended from outside: it picks a converter
  from a fixed if/elif chain (`keras_hub/src/utils/timm/preset_loader.py`, `TimmPresetLoader.__init__`,
  "KerasHub has no converter for timm models"), so `keras_hub.models.ImageClassifier.from_preset`
  on a timm EfficientFormer repository fails there; the family classes' `from_preset` works.
- `save_to_preset` writes through `ef_keras.output.writing`: the preset appears whole or not at
  all, and a directory that is neither empty nor a keras-hub preset is never replaced.

Needs the `[dense]` extra (keras-hub); the converter runs TensorFlow ops (tf.data pipelines).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import ClassVar

import keras

from ef_keras.errors import InputError, require
from ef_keras.models.base import DEFAULT_SIZE, ModelArgumentError, classifier_top
from ef_keras.output import writing
from ef_keras.preprocessing import as_pixels
from ef_keras.presets import PRESETS, Preset, PresetError
from ef_keras.registry import UnknownModelError, architecture, get_family, list_models, registered

keras_hub = require("keras_hub", "dense", "the keras-hub classes (EfficientFormerBackbone, ...)")
from keras_hub.src.utils import preset_utils  # noqa: E402  (keras-hub's preset registry and file access)

#: Files of a timm Hugging Face repository that `from_preset` reads.
TIMM_CONFIG, TIMM_WEIGHTS = "config.json", "model.safetensors"
HF_TIMM_PREFIX = "hf://timm/"


class HubPresetError(PresetError):
    """A keras-hub preset that does not exist, belongs to the other family, or cannot be written."""


# --------------------------------------------------------------------------- presets
def preset_name(preset: Preset) -> str:
    """keras-hub's name of an `ef_keras.presets` row: timm's architecture + "_imagenet".

    E.g. "efficientformer_l1_imagenet", "efficientformerv2_s0_imagenet".
    """
    return f"{preset.timm_model.split('.')[0]}_imagenet"


def hub_presets(family: str) -> dict[str, dict]:
    """keras-hub preset entries (for `register_presets`) of every published weight of `family` ("v1", "v2")."""
    title = get_family(family).title
    return {preset_name(p): {
        "metadata": {"description": f"{title}-{p.name.upper()} with timm's distilled ImageNet-1k weights "
                                    f"({p.timm_model}), evaluated at {p.image_size}x{p.image_size}, crop {p.crop_pct}, "
                                    f"{p.interpolation}.",
                     "path": title.lower(), "model_card": f"https://huggingface.co/timm/{p.timm_model}"},
        "kaggle_handle": f"{HF_TIMM_PREFIX}{p.timm_model}",  # keras-hub's field name for any handle
    } for p in PRESETS.values() if registered(p.name).family == family}


def all_preset_names() -> list[str]:
    """keras-hub names of every family's presets (for messages)."""
    return [preset_name(p) for p in PRESETS.values()]


# --------------------------------------------------------------------------- weights between graphs
def copy_weights(source: keras.Model, target: keras.Model, skip: tuple[str, ...] = ()) -> None:
    """Assigns every variable of `target` from the variable of `source` with the same path.

    The hub classes are built from the same layers as the family's model, so the paths agree
    ("stem/conv1/kernel"); a path missing from `source` is a bug, and raises. Paths starting with
    one of `skip` (e.g. fresh heads) are left as they are.
    """
    values = {v.path: v for v in source.weights}
    for variable in target.weights:
        if variable.path.startswith(skip):
            continue
        variable.assign(values[variable.path])


# --------------------------------------------------------------------------- timm sources
def _timm_config(source: str) -> dict | None:
    """timm's config.json of `source` (a handle or directory) when it is a timm EfficientFormer repository."""
    if not (source.startswith(HF_TIMM_PREFIX) or os.path.isdir(source)):
        return None
    try:
        config = preset_utils.load_json(source, TIMM_CONFIG)
    except FileNotFoundError:
        return None
    arch = config.get("architecture", "") if isinstance(config, dict) else ""
    return config if arch.startswith("efficientformer") else None


def _check_family(cls, family: str, what: str) -> None:
    """HubPresetError unless the preset's `family` is the class's."""
    if family != cls.family:
        other = get_family(family).title
        raise HubPresetError(f"{what} is an {other} preset, but {cls.__name__} is an {get_family(cls.family).title} "
                             f"class; load it with {other}{cls.role}.from_preset({what!r})")


def timm_source(cls, preset) -> tuple[str, str] | None:
    """(handle or directory, variant name) when `preset` is one of ours or a timm repository; None for keras-hub.

    Our names and timm handles are checked against `cls`'s family; an unknown bare name raises
    HubPresetError listing the known ones; a keras-hub preset directory of the other family too.
    """
    if not isinstance(preset, (str, os.PathLike)):
        raise HubPresetError(f"a preset is a name ({', '.join(all_preset_names())}), an hf://timm/ handle or a "
                             f"directory; got {preset!r}")
    preset = os.fspath(preset)
    ours = {preset_name(p): p for p in PRESETS.values()}
    if preset in ours:
        variant = registered(ours[preset].name)
        _check_family(cls, variant.family, preset)
        return f"{HF_TIMM_PREFIX}{ours[preset].timm_model}", variant.name
    if "://" not in preset and not os.path.exists(preset):
        raise HubPresetError(f"unknown preset {preset!r}: {cls.__name__} has presets "
                             f"{', '.join(hub_presets(cls.family))} (give a directory written by save_to_preset or "
                             "an hf://timm/ handle otherwise)")
    config = _timm_config(preset)
    if config is not None:
        try:
            variant = registered(config["architecture"])
        except UnknownModelError as e:
            raise HubPresetError(f"{preset}: timm architecture {config['architecture']!r} has no ef_keras variant "
                                 f"(known: {', '.join(list_models())})") from e
        _check_family(cls, variant.family, preset)
        return preset, variant.name
    if os.path.isdir(preset) and os.path.isfile(os.path.join(preset, preset_utils.CONFIG_FILE)):
        found = preset_utils.get_preset_loader(preset).check_backbone_class()
        if issubclass(found, HubBackbone):
            _check_family(cls, found.family, preset)
    return None


def load_timm(cls, source: str, variant: str, load_weights: bool = True, **kwargs):
    """An instance of hub class `cls` for a timm repository (`source`: handle or directory) of `variant`.

    The weights are timm's `model.safetensors`, read and checked key by key by `ef_keras.weights`
    into the family's model, then copied into the keras-hub graph (same layers, same paths). An
    `ImageClassifier` given `num_classes` keeps fresh heads (fine-tuning), as keras-hub's.
    """
    from ef_keras.weights import load_state_dict, read_state_dict

    preset = PRESETS[variant]
    if issubclass(cls, keras_hub.layers.ImageConverter):
        return cls.for_preset(preset, **kwargs)
    if issubclass(cls, keras_hub.models.Preprocessor):
        return cls(image_converter=cls.image_converter_cls.for_preset(preset), **kwargs)
    state = read_state_dict(preset_utils.get_file(source, TIMM_WEIGHTS)) if load_weights else None
    image_shape = tuple(kwargs.pop("image_shape", (preset.image_size, preset.image_size, 3)))
    family = get_family(registered(variant).family)
    if issubclass(cls, HubBackbone):
        backbone = cls(config=variant, image_shape=image_shape, **kwargs)
        if state is not None:
            source_model = family.model_class(variant, include_top=False, input_shape=image_shape)
            copy_weights(load_state_dict(source_model, state, skip_head=True, source=source), backbone)
        return backbone
    fresh_heads = "num_classes" in kwargs
    num_classes = kwargs.pop("num_classes", preset.num_classes)
    backbone = cls.backbone_cls(config=variant, image_shape=image_shape)
    preprocessor = cls.preprocessor_cls(image_converter=cls.preprocessor_cls.image_converter_cls.for_preset(preset))
    classifier = cls(backbone=backbone, num_classes=num_classes, preprocessor=preprocessor, **kwargs)
    if state is not None:
        source_model = family.model_class(variant, input_shape=image_shape, classes=num_classes,
                                          distillation=classifier.distillation)
        load_state_dict(source_model, state, skip_head=fresh_heads, source=source)
        copy_weights(source_model, classifier, skip=("head",) if fresh_heads else ())
    return classifier


# --------------------------------------------------------------------------- saving
_SAVING = contextvars.ContextVar("ef_keras_hub_preset_save", default=False)


def is_preset_directory(path: str) -> bool:
    """An empty directory or one keras-hub's saver wrote (config.json and metadata.json): ours to replace."""
    names = set(os.listdir(path))
    return not names or {preset_utils.CONFIG_FILE, preset_utils.METADATA_FILE} <= names


def save_preset(save, preset_dir, overwrite: bool) -> None:
    """Runs keras-hub's `save(directory)` into a temp directory and moves it to `preset_dir` when complete.

    A save that is part of an outer one (a task saving its backbone and preprocessor) writes
    straight into the outer temp directory.
    """
    if _SAVING.get():
        save(preset_dir)
        return
    if os.path.lexists(preset_dir) and not os.path.isdir(preset_dir):
        raise HubPresetError(f"{preset_dir} is a file, not a preset directory; it is left as it is. Give a "
                             "directory path (new, empty, or a preset written before)")
    token = _SAVING.set(True)
    try:
        with writing(preset_dir, overwrite=overwrite, ours=is_preset_directory, error=HubPresetError) as tmp:
            save(tmp)
    finally:
        _SAVING.reset(token)


class PresetMixin:
    """`from_preset` for our names and timm repositories, `save_to_preset` through `ef_keras.output`.

    Class attributes: `family` ("v1", "v2") and `role` ("Backbone", "ImageClassifier", ...), for messages.
    """

    family: ClassVar[str]
    role: ClassVar[str]

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """As keras-hub's, plus our preset names and timm repositories (see the module docstring)."""
        timm = timm_source(cls, preset)
        if timm is None:
            return super().from_preset(preset, **kwargs)
        return load_timm(cls, *timm, **kwargs)

    def save_to_preset(self, preset_dir, *args, overwrite: bool = True, **kwargs):
        """keras-hub's save, written atomically; `overwrite=False` refuses an existing preset directory."""
        save_preset(lambda d: super(PresetMixin, self).save_to_preset(d, *args, **kwargs), preset_dir, overwrite)


@contextlib.contextmanager
def dtype_policy(dtype):
    """Keras's global dtype policy set to `dtype` (None: unchanged) while the block runs.

    The family models build their layers with the global policy, as keras-hub's backbones pass
    `dtype` to each layer; Keras has no scope for it, so it is set and restored here.
    """
    if dtype is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras.dtype_policies.get(dtype))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# --------------------------------------------------------------------------- the classes
class HubBackbone(PresetMixin, keras_hub.models.FeaturePyramidBackbone):
    """The family's `include_top=False` model as a keras-hub `FeaturePyramidBackbone`.

    Args:
        config: an architecture config, a variant name ("l1", "s0") or an architecture JSON path.
        image_shape: (H, W, 3), H and W multiples of 32.
        drop_path_rate: stochastic depth at the last block.
        dtype: the layers' dtype policy (e.g. "mixed_float16", "bfloat16"; None: Keras's global one).

    The output is the (B, H/32, W/32, C4) map after the final norm; `pyramid_outputs` are the
    four stage outputs P2-P5 (timm's `forward_intermediates`, as the family model's).
    """

    role = "Backbone"
    default_config: ClassVar[str]

    def __init__(self, config=None, image_shape=(DEFAULT_SIZE, DEFAULT_SIZE, 3), drop_path_rate=0.0, dtype=None,
                 **kwargs):
        config = architecture(self.default_config if config is None else config, family=self.family)
        # === Functional model (the family's own graph, its layers under `dtype`) ===
        with dtype_policy(dtype):
            model = get_family(self.family).model_class(config, include_top=False, input_shape=tuple(image_shape),
                                                        drop_path_rate=drop_path_rate)
        super().__init__(inputs=model.input, outputs=model.output, dtype=dtype, **kwargs)
        self.pyramid_outputs = model.pyramid_outputs
        # === Config ===
        self.config = config
        self.image_shape = tuple(image_shape)
        self.drop_path_rate = drop_path_rate

    @property
    def pyramid_outputs(self):
        """{"P2": ..., "P5": ...} as a plain dict (Keras tracks a dict attribute, and JAX cannot return its wrapper)."""
        return dict(keras_hub.models.FeaturePyramidBackbone.pyramid_outputs.fget(self))

    @pyramid_outputs.setter
    def pyramid_outputs(self, value):
        keras_hub.models.FeaturePyramidBackbone.pyramid_outputs.fset(self, value)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(), "image_shape": list(self.image_shape),
                "drop_path_rate": self.drop_path_rate}


class HubImageClassifier(PresetMixin, keras_hub.models.ImageClassifier):
    """Image classifier on a family backbone with the family's heads.

    Args:
        backbone: the family's `...Backbone`.
        num_classes: classes of the heads.
        preprocessor: the family's `...ImageClassifierPreprocessor` (or None: inputs already normalised).
        distillation: add `head_dist`, averaged with `head` (timm's distilled weights have it).
        activation: None for logits, or e.g. "softmax".
        dropout: dropout on the pooled features (training only).
    """

    role = "ImageClassifier"

    def __init__(self, backbone, num_classes=1000, preprocessor=None, distillation=True, activation=None,
                 dropout=0.0, **kwargs):
        if not isinstance(backbone, self.backbone_cls):
            raise ModelArgumentError(f"{type(self).__name__} needs an {self.backbone_cls.__name__}, got "
                                 f"{type(backbone).__name__}")
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.pooler = keras.layers.GlobalAveragePooling2D(name="pooler")
        self.output_dropout = keras.layers.Dropout(dropout, name="output_dropout")
        # === Functional model ===
        inputs = backbone.input
        pooled = self.output_dropout(self.pooler(backbone(inputs)))
        outputs = classifier_top(pooled, num_classes, distillation, activation)
        keras_hub.models.Task.__init__(self, inputs=inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.num_classes, self.distillation = num_classes, distillation
        self.activation, self.dropout = activation, dropout

    def get_config(self):
        return {**keras_hub.models.Task.get_config(self), "num_classes": self.num_classes,
                "distillation": self.distillation, "activation": self.activation, "dropout": self.dropout}


class HubImageConverter(PresetMixin, keras_hub.layers.ImageConverter):
    """timm's evaluation transform and normalisation as a keras-hub `ImageConverter`.

    Args:
        image_size: (height, width) of the output.
        crop_pct: the share of the short side the centre crop keeps (timm: 0.95): the image is
            resized so its short side is floor(size / crop_pct), then the centre crop is taken.
        interpolation: resize method (timm: "bicubic"; antialiased when downsampling, as timm's PIL resize).
        scale, offset: per-channel x * scale + offset on [0, 255] pixels (1 / (255 std), -mean / std).

    Takes (H, W, 3) or (B, H, W, 3) RGB pixels in [0, 255] of any size; returns float32
    (B, height, width, 3). Bounding boxes are not supported (classification only).
    """

    role = "ImageConverter"

    def __init__(self, image_size=(DEFAULT_SIZE, DEFAULT_SIZE), crop_pct=0.95, interpolation="bicubic", scale=None,
                 offset=None, **kwargs):
        super().__init__(image_size=None, scale=scale, offset=offset, interpolation=interpolation, **kwargs)
        self._size = tuple(image_size)
        self.crop_pct = crop_pct

    @classmethod
    def for_preset(cls, preset: Preset, **kwargs):
        """The converter of an `ef_keras.presets` row (size, crop, interpolation, mean/std)."""
        return cls(image_size=(preset.image_size, preset.image_size), crop_pct=preset.crop_pct,
                   interpolation=preset.interpolation, scale=[1.0 / (255.0 * s) for s in preset.std],
                   offset=[-m / s for m, s in zip(preset.mean, preset.std)], **kwargs)

    @property
    def image_size(self):
        return self._size

    @image_size.setter
    def image_size(self, value):
        self._size = None if value is None else tuple(value)

    def __call__(self, inputs, *args, **kwargs):
        """Checks eager pixels before Keras runs `call` (which would wrap a one-line error in its own text)."""
        import tensorflow as tf

        if not isinstance(inputs, (keras.KerasTensor, dict)) and not tf.is_symbolic_tensor(inputs):
            as_pixels(inputs, type(self).__name__, (3, 4))
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        import tensorflow as tf

        from ef_keras.preprocessing import eval_transform

        def crop(image):
            return eval_transform(image, image_size=self._size, crop_pct=self.crop_pct,
                                  interpolation=self.interpolation)

        images = tf.convert_to_tensor(inputs)
        if images.shape.rank not in (3, 4) or images.shape[-1] not in (3, None):
            raise InputError(f"{type(self).__name__} expects (H, W, 3) or (batch, H, W, 3) RGB pixels in [0, 255], "
                             f"got shape {tuple(images.shape)}")
        if images.shape.rank == 3:
            x = crop(images)
        elif tf.executing_eagerly():  # image by image, so eval_transform checks the values (NaN, Inf) too
            x = tf.stack([crop(image) for image in images])
        else:  # in tf.data: one graph over the batch
            x = tf.map_fn(crop, images, fn_output_signature=tf.TensorSpec((*self._size, 3), tf.float32))
        if self.scale is not None:
            x = x * tf.constant(self.scale, tf.float32)
        if self.offset is not None:
            x = x + tf.constant(self.offset, tf.float32)
        return x

    def get_config(self):
        return {**super().get_config(), "image_size": list(self._size), "crop_pct": self.crop_pct}


class HubImageClassifierPreprocessor(PresetMixin, keras_hub.models.ImageClassifierPreprocessor):
    """keras-hub's classifier preprocessor with the family's image converter."""

    role = "ImageClassifierPreprocessor"


__all__ = ["HubBackbone", "HubImageClassifier", "HubImageConverter", "HubImageClassifierPreprocessor",
           "HubPresetError", "hub_presets", "copy_weights", "load_timm", "timm_source"]

"""The model surface both families share: arguments, classifier top, pyramid, config, resizing, weights.

`EfficientFormerBase` is a functional graph built inside a `keras.Model` subclass (the keras-hub
pattern): `summary()`, feature taps, `.keras` saving and export work with no custom `call`, and
`get_config()` carries the architecture so `from_config` rebuilds it. The constructor follows
keras.applications (`include_top, weights, input_shape, input_tensor, pooling, classes,
classifier_activation`). A family subclass names its config class and wires its backbone
(`backbone`); everything else (argument checks, the heads, pooling, the feature pyramid,
`heads_model`, `at_input_shape`, checkpoint loading) is here, once.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import keras

from ef_keras.checks import check_int, check_number
from ef_keras.errors import EfKerasError
from ef_keras.models.common_layers import describe_grid_changes, resize_bias_table
from ef_keras.registry import architecture, list_models, registered
from ef_keras.weights import load_imagenet_weights, load_weights_from_checkpoint

#: Every stride-2 step halves the grid; the last stage sits at input / 32.
TOTAL_STRIDE = 32
DEFAULT_SIZE = 224
#: Pyramid level of each stage's output: stage s runs at stride 2^(s+2), so it is P(s+2).
PYRAMID_LEVELS = ("P2", "P3", "P4", "P5")


class ModelArgumentError(EfKerasError):
    """Inconsistent model-constructor arguments."""


def check_input_shape(input_shape, fixed_size: bool):
    """Checks (H, W, 3) and returns the last stage's (H/32, W/32) grid (None for a variable size).

    `fixed_size`: the architecture has attention, whose bias tables are per grid cell.
    """
    if len(input_shape) != 3 or input_shape[-1] != 3 or isinstance(input_shape[-1], bool):
        raise ModelArgumentError(f"input_shape must be (height, width, 3), got {tuple(input_shape)}")
    h, w = input_shape[0], input_shape[1]
    for size in (h, w):
        if size is not None:
            check_int(f"input_shape {tuple(input_shape)}: height and width", size, low=TOTAL_STRIDE,
                      error=ModelArgumentError)
    if h is None or w is None:
        if fixed_size:
            raise ModelArgumentError(
                "the attention bias table needs a fixed input size: pass input_shape=(H, W, 3) with H and W "
                f"multiples of {TOTAL_STRIDE} (e.g. (224, 224, 3))")
        return None
    if h % TOTAL_STRIDE or w % TOTAL_STRIDE:
        raise ModelArgumentError(
            f"input_shape {tuple(input_shape)}: height and width must be multiples of {TOTAL_STRIDE} "
            f"(the network downsamples by {TOTAL_STRIDE}); e.g. (224, 224, 3)")
    return (h // TOTAL_STRIDE, w // TOTAL_STRIDE)


def check_arguments(config, include_top, weights, pooling, classes, drop_path_rate, distillation, features_only):
    """The keras.applications argument rules, the same for every family; ModelArgumentError (one line)."""
    if pooling not in (None, "avg", "max"):
        raise ModelArgumentError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and pooling is not None:
        raise ModelArgumentError("pooling applies only with include_top=False (the heads already pool)")
    check_int("classes", classes, low=1, error=ModelArgumentError)
    for name, value in (("include_top", include_top), ("distillation", distillation),
                        ("features_only", features_only)):
        if not isinstance(value, bool):
            raise ModelArgumentError(f"{name} must be True or False, got {value!r}")
    if features_only and (include_top or pooling is not None):
        raise ModelArgumentError("features_only=True returns the feature pyramid: build it with include_top=False "
                                 "and pooling=None")
    if weights == "imagenet":
        _check_published(config, include_top, classes)
    check_number("drop_path_rate", drop_path_rate, low=0, high=1, high_open=True, error=ModelArgumentError)


def _check_published(config, include_top, classes):
    """weights='imagenet' needs a published architecture (the whole config, not just its name) and its heads."""
    if include_top and classes != 1000:
        raise ModelArgumentError(
            f"weights='imagenet' has 1000-class heads; got classes={classes}. Build with classes=1000, or "
            "load the backbone with include_top=False and add your own head")
    names = list_models(config.family)
    if config.name in names and config == registered(config.name).config:
        return
    differs = (f" (a custom config named {config.name!r} that differs from the published one)"
               if config.name in names else "")
    raise ModelArgumentError(f"weights='imagenet' exists only for {', '.join(names[:-1])} and {names[-1]}, not for "
                             f"architecture {config.name!r}{differs}")


def classifier_top(pooled, classes, distillation, classifier_activation):
    """The heads on pooled features: `head`, optionally `head_dist` averaged with it.

    The layer names are what checkpoint import, `heads_model()` and the LUT's head unit refer to.
    """
    head = keras.layers.Dense(classes, name="head")(pooled)
    if distillation:
        dist = keras.layers.Dense(classes, name="head_dist")(pooled)
        logits = keras.layers.Average(name="head_average")([head, dist])
    else:
        logits = head
    return keras.layers.Activation(classifier_activation or "linear", name="predictions")(logits)


class EfficientFormerBase(keras.Model):
    """Image classifier or backbone of one family (`EfficientFormer`, `EfficientFormerV2`).

    Subclasses set `config_class` and `default_config` and implement `backbone` (and
    `needs_fixed_size` when a variable input size is possible). The arguments are documented on
    the subclasses; a family's final features are (B, N, C) tokens or a (B, H, W, C) map, and
    pooling, the heads and the output map follow from their rank.
    """

    config_class: ClassVar[type]
    default_config: ClassVar[str]

    def __init__(self, config=None, include_top=True, weights=None, input_shape=None, input_tensor=None,
                 pooling=None, classes=1000, classifier_activation=None, distillation=True, drop_path_rate=0.0,
                 features_only=False, name=None, **kwargs):
        config = architecture(self.default_config if config is None else config, family=self.config_class.family)
        check_arguments(config, include_top, weights, pooling, classes, drop_path_rate, distillation, features_only)
        if input_shape is None:
            input_shape = (DEFAULT_SIZE, DEFAULT_SIZE, 3) if input_tensor is None else tuple(input_tensor.shape[1:])
        input_shape = tuple(input_shape)
        grid = check_input_shape(input_shape, self.needs_fixed_size(config))

        # === Functional model ===
        inputs = keras.Input(shape=input_shape, name="image") if input_tensor is None else input_tensor
        x, pyramid = self.backbone(inputs, config, input_shape[:2], drop_path_rate, pyramid=not include_top)
        global_pool = {"avg": (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D),
                       "max": (keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D)}
        tokens = len(x.shape) == 3
        if include_top:
            pooled = global_pool["avg"][0 if tokens else 1](name="pool")(x)
            outputs = classifier_top(pooled, classes, distillation, classifier_activation)
        elif pooling is not None:
            outputs = global_pool[pooling][0 if tokens else 1](name=f"{pooling}_pool")(x)
        elif features_only:
            outputs = pyramid
        elif tokens and grid:  # the token grid back as a map; with a variable input size the tokens
            outputs = keras.layers.Reshape((*grid, config.widths[3]), name="features")(x)
        else:
            outputs = x
        super().__init__(inputs=inputs, outputs=outputs, name=name or f"{type(self).__name__.lower()}_{config.name}",
                         **kwargs)

        # === Config ===
        self.config = config
        self.include_top, self.pooling, self.classes = include_top, pooling, classes
        self.classifier_activation, self.distillation = classifier_activation, distillation
        self.drop_path_rate = drop_path_rate
        self.features_only = features_only
        self.image_shape = input_shape
        self._pyramid = pyramid
        if weights == "imagenet":
            load_imagenet_weights(self)
        elif weights is not None:
            load_weights_from_checkpoint(self, weights)

    @staticmethod
    def needs_fixed_size(config) -> bool:
        """Whether the architecture's attention ties it to one input size (bias tables per grid cell)."""
        return True

    @staticmethod
    def backbone(inputs, config, image_size, drop_path_rate, pyramid):
        """The family's network up to its final norm: (features, {"P2".."P5"} or None without `pyramid`)."""
        raise NotImplementedError

    def heads_model(self) -> keras.Model:
        """A model sharing these weights whose outputs are [head_logits, dist_logits].

        This is what hard-distillation training needs: loss on `head` against the labels
        and on `head_dist` against the teacher's argmax. Requires include_top and distillation.
        """
        if not (self.include_top and self.distillation):
            raise ModelArgumentError("heads_model() needs include_top=True and distillation=True")
        return keras.Model(self.input, [self.get_layer("head").output, self.get_layer("head_dist").output],
                           name=f"{self.name}_heads")

    @property
    def pyramid_outputs(self) -> dict:
        """{"P2": ..., "P5": ...}: the stage outputs at strides 4-32 (see the class docstring).

        Only a backbone has them: a model built with `include_top=True` raises `ModelArgumentError`.
        """
        if self._pyramid is None:
            raise ModelArgumentError(
                f"{self.name} was built with include_top=True: pyramid_outputs belong to a backbone; build it with "
                "include_top=False (and features_only=True to get them as the outputs)")
        return dict(self._pyramid)

    def at_input_shape(self, input_shape, name=None):
        """This model rebuilt for another input size (multiples of 32), with its weights.

        Every weight is copied; the attention-bias tables, which hold one entry per token offset
        of the old grid, are resized bicubically to the new grid (the reference's
        detection/segmentation recipe, and what checkpoint import does) with one warning naming
        the grids. So a 224-trained model runs at 512x512 or 640x640; fine-tune at the new size
        for best accuracy.
        """
        config = {**self.get_config(), "input_shape": tuple(input_shape), "name": name or self.name}
        config.pop("trainable", None)
        model = type(self)(**config)
        old_grids, new_grids = _bias_grids(self), _bias_grids(model)
        changes = []
        for source, target in zip(self.weights, model.weights):
            value = keras.ops.convert_to_numpy(source)
            if tuple(source.shape) != tuple(target.shape) and source.path in old_grids:
                value = resize_bias_table(value, old_grids[source.path], new_grids[target.path])
                changes.append((old_grids[source.path], new_grids[target.path]))
            target.assign(value)
        if changes:
            warnings.warn(f"{self.name}: resized the attention-bias tables of {len(changes)} block(s) bicubically "
                          f"({describe_grid_changes(changes)}); fine-tune at {tuple(input_shape)[:2]} for best "
                          "accuracy", stacklevel=2)
        return model

    def get_config(self):
        return {"config": self.config.to_dict(), "include_top": self.include_top,
                "input_shape": list(self.image_shape), "pooling": self.pooling, "classes": self.classes,
                "classifier_activation": self.classifier_activation, "distillation": self.distillation,
                "drop_path_rate": self.drop_path_rate, "features_only": self.features_only, "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _bias_grids(model) -> dict[str, tuple]:
    """Variable path of every attention-bias table -> the token grid it is indexed over."""
    return {layer.attention_biases.path: tuple(layer.bias_grid)
            for layer in model._flatten_layers(include_self=False, recursive=True) if hasattr(layer, "bias_grid")}

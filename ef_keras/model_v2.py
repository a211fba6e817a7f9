"""EfficientFormerV2 models: one builder walking the V2 block plan, and the S0/S1/S2/L entry points.

Same pattern as `ef_keras.model` for V1: a functional graph built inside a `keras.Model`
subclass, keras.applications arguments, `get_config()` carrying the architecture. V2 has
attention in stages 3 and 4 (relative-position bias tables per grid cell), so the input
size is fixed: H and W multiples of 32.
"""

from __future__ import annotations

import keras

from ef_keras import layers as ef_layers
from ef_keras import layers_v2
from ef_keras.checks import check_int, check_number
from ef_keras.config_v2 import V2_VARIANTS, EfficientFormerV2Config, get_v2_config
from ef_keras.plan import Block
from ef_keras.model import ModelArgumentError, classifier_top
from ef_keras.registry import register_model

TOTAL_STRIDE = 32
DEFAULT_SIZE = 224


def _check_input_shape(input_shape):
    if len(input_shape) != 3 or input_shape[-1] != 3 or isinstance(input_shape[-1], bool):
        raise ModelArgumentError(f"input_shape must be (height, width, 3), got {tuple(input_shape)}")
    for size in input_shape[:2]:
        if size is None:
            raise ModelArgumentError(
                "EfficientFormerV2's attention bias tables need a fixed input size: pass input_shape=(H, W, 3) "
                f"with H and W multiples of {TOTAL_STRIDE} (e.g. (224, 224, 3))")
        check_int(f"input_shape {tuple(input_shape)}: height and width", size, low=TOTAL_STRIDE,
                  error=ModelArgumentError)
        if size % TOTAL_STRIDE:
            raise ModelArgumentError(
                f"input_shape {tuple(input_shape)}: height and width must be multiples of {TOTAL_STRIDE} "
                f"(the network downsamples by {TOTAL_STRIDE}); e.g. (224, 224, 3)")


def _check_arguments(config, include_top, weights, pooling, classes, drop_path_rate, distillation):
    if pooling not in (None, "avg", "max"):
        raise ModelArgumentError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and pooling is not None:
        raise ModelArgumentError("pooling applies only with include_top=False (the heads already pool)")
    check_int("classes", classes, low=1, error=ModelArgumentError)
    for name, value in (("include_top", include_top), ("distillation", distillation)):
        if not isinstance(value, bool):
            raise ModelArgumentError(f"{name} must be True or False, got {value!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ModelArgumentError(
            f"weights='imagenet' has 1000-class heads; got classes={classes}. Build with classes=1000, or "
            "load the backbone with include_top=False and add your own head")
    if weights == "imagenet" and config != V2_VARIANTS.get(config.name):
        raise ModelArgumentError(
            f"weights='imagenet' exists only for {sorted(V2_VARIANTS)}, not for architecture {config.name!r}")
    check_number("drop_path_rate", drop_path_rate, low=0, high=1, high_open=True, error=ModelArgumentError)


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerV2(keras.Model):
    """EfficientFormerV2 image classifier or backbone for any V2 architecture config.

    Args:
        config: an `EfficientFormerV2Config`, a variant name ("s0", "s1", "s2", "l") or the
            path of a V2 architecture JSON.
        include_top: add the final BatchNorm's pooled classifier heads.
        weights: None (random init), "imagenet" (timm's `efficientformerv2_*.snap_dist_in1k`,
            downloaded into the Keras cache) or the path of a checkpoint (`.safetensors`,
            `.pth`/`.pt`, official or timm key layout).
        input_shape: (H, W, 3) with H and W multiples of 32; default (224, 224, 3).
        input_tensor: optional Keras tensor to use as the image input.
        pooling: with `include_top=False`: None returns the (B, H/32, W/32, C4) map after the
            final BatchNorm, "avg" its spatial mean, "max" its spatial max.
        classes: number of classes of the heads.
        classifier_activation: None for logits, or e.g. "softmax".
        distillation: add the distillation head; the output is then the heads' average
            (`heads_model()` gives both logits for distillation training).
        drop_path_rate: stochastic depth at the last block (linear in the global block index).
        features_only: with `include_top=False` and `pooling=None`: the outputs are the
            feature pyramid dict {"P2": ..., "P5": ...} (see `pyramid_outputs`).
        name: model name (default "efficientformerv2_<config.name>").

    Feature pyramid: a model built with `include_top=False` has `pyramid_outputs`, the four
    stage outputs {"P2": (B, H/4, W/4, C1), "P3": /8, "P4": /16, "P5": (B, H/32, W/32, C4)},
    as V1's (keras-hub's `FeaturePyramidBackbone` convention) and as timm's
    `forward_intermediates(x, norm=True)`: P2-P4 the raw stage outputs, P5 after the final
    BatchNorm.

    Example:
        >>> import numpy as np, ef_keras
        >>> model = ef_keras.EfficientFormerV2S0()
        >>> model.predict(np.zeros((1, 224, 224, 3)), verbose=0).shape
        (1, 1000)
    """

    def __init__(self, config="s0", include_top=True, weights=None, input_shape=None, input_tensor=None,
                 pooling=None, classes=1000, classifier_activation=None, distillation=True,
                 drop_path_rate=0.0, features_only=False, name=None, **kwargs):
        config = get_v2_config(config)
        _check_arguments(config, include_top, weights, pooling, classes, drop_path_rate, distillation)
        if not isinstance(features_only, bool):
            raise ModelArgumentError(f"features_only must be True or False, got {features_only!r}")
        if features_only and (include_top or pooling is not None):
            raise ModelArgumentError("features_only=True returns the feature pyramid: build it with include_top=False "
                                     "and pooling=None")
        if input_shape is None:
            input_shape = (DEFAULT_SIZE, DEFAULT_SIZE, 3) if input_tensor is None else tuple(input_tensor.shape[1:])
        input_shape = tuple(input_shape)
        _check_input_shape(input_shape)

        inputs = keras.Input(shape=input_shape, name="image") if input_tensor is None else input_tensor
        x, stage_maps = backbone_v2(inputs, config, input_shape[:2], drop_path_rate, return_stages=True)
        pyramid = None if include_top else {**{f"P{s + 2}": stage_maps[s] for s in range(3)}, "P5": x}
        if include_top:
            pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
            outputs = classifier_top(pooled, classes, distillation, classifier_activation)
        elif pooling == "avg":
            outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        elif pooling == "max":
            outputs = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
        elif features_only:
            outputs = pyramid
        else:
            outputs = x

        super().__init__(inputs=inputs, outputs=outputs, name=name or f"efficientformerv2_{config.name}", **kwargs)
        self.config = config
        self.include_top, self.pooling, self.classes = include_top, pooling, classes
        self.classifier_activation, self.distillation = classifier_activation, distillation
        self.drop_path_rate = drop_path_rate
        self.features_only = features_only
        self.image_shape = input_shape
        self._pyramid = pyramid
        if weights == "imagenet":
            from ef_keras.checkpoint_v2 import load_v2_imagenet_weights
            load_v2_imagenet_weights(self)
        elif weights is not None:
            from ef_keras.checkpoint_v2 import load_v2_weights_from_checkpoint
            load_v2_weights_from_checkpoint(self, weights)

    def heads_model(self) -> keras.Model:
        """A model sharing these weights whose outputs are [head_logits, dist_logits] (distillation training)."""
        if not (self.include_top and self.distillation):
            raise ModelArgumentError("heads_model() needs include_top=True and distillation=True")
        return keras.Model(self.input, [self.get_layer("head").output, self.get_layer("head_dist").output],
                           name=f"{self.name}_heads")

    @property
    def pyramid_outputs(self) -> dict:
        """{"P2": ..., "P5": ...}: the stage outputs at strides 4-32 (see the class docstring)."""
        if self._pyramid is None:
            raise ModelArgumentError(
                f"{self.name} was built with include_top=True: pyramid_outputs belong to a backbone; build it with "
                "include_top=False (and features_only=True to get them as the outputs)")
        return dict(self._pyramid)

    def get_config(self):
        return {"config": self.config.to_dict(), "include_top": self.include_top, "features_only": self.features_only,
                "input_shape": list(self.image_shape), "pooling": self.pooling, "classes": self.classes,
                "classifier_activation": self.classifier_activation, "distillation": self.distillation,
                "drop_path_rate": self.drop_path_rate, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def backbone_v2(x, config: EfficientFormerV2Config, image_size, drop_path_rate=0.0, return_stages=False):
    """Stem, four stages and the final BatchNorm, walked from the block plan; returns the (B, h, w, C4) map.

    With `return_stages`, also {stage: its raw output} (what the next downsampling reads; stage 3's
    before the final norm), the feature-pyramid taps.
    """
    blocks = config.blocks(image_size)
    ffn_blocks = [b for b in blocks if b.kind in ("v2_ffn", "v2_attn_ffn")]
    rates = dict(zip(ffn_blocks, ef_layers.drop_path_rates(config.depths, drop_path_rate)))
    stage_maps = {}
    for block in blocks:
        if block.kind in ("v2_downsample", "v2_attn_downsample", "v2_head"):
            stage_maps[block.stage - 1 if block.kind != "v2_head" else block.stage] = x
        if block.kind == "v2_head":
            x = keras.layers.BatchNormalization(epsilon=ef_layers.BN_EPSILON, momentum=ef_layers.BN_MOMENTUM,
                                                name=block.name)(x)
            return (x, stage_maps) if return_stages else x
        x = block_layer_v2(block, config, rates.get(block, 0.0))(x)
    raise AssertionError("a V2 block plan always ends with its head")


def block_layer_v2(block: Block, config: EfficientFormerV2Config, drop_path: float = 0.0, name=None):
    """The Keras layer that runs one V2 plan unit (any kind but the head)."""
    name = name or block.name
    if block.kind == "v2_stem":
        return layers_v2.V2Stem(block.cout, name=name)
    if block.kind in ("v2_downsample", "v2_attn_downsample"):
        attn = block.kind == "v2_attn_downsample"
        return layers_v2.V2Downsample(block.cin, block.cout, use_attn=attn, resolution=block.grid if attn else None,
                                      key_dim=config.downsample_key_dim, num_heads=config.num_heads,
                                      attn_ratio=config.attn_ratio, name=name)
    if block.kind in ("v2_ffn", "v2_attn_ffn"):
        attn = block.kind == "v2_attn_ffn"
        return layers_v2.V2Block(block.cout, block.mlp_ratio, use_attn=attn, resolution=block.grid if attn else None,
                                 attn_stride=block.attn_stride, key_dim=config.key_dim, num_heads=config.num_heads,
                                 attn_ratio=config.attn_ratio, layer_scale_init=config.layer_scale_init,
                                 drop_path=drop_path, name=name)
    raise ValueError(f"no single layer runs a {block.kind!r} unit")


def _variant(variant):
    def build(include_top=True, weights=None, input_shape=None, input_tensor=None, pooling=None, classes=1000,
              classifier_activation=None, distillation=True, drop_path_rate=0.0, name=None, **kwargs):
        return EfficientFormerV2(variant, include_top=include_top, weights=weights, input_shape=input_shape,
                                 input_tensor=input_tensor, pooling=pooling, classes=classes,
                                 classifier_activation=classifier_activation, distillation=distillation,
                                 drop_path_rate=drop_path_rate, name=name, **kwargs)
    build.__name__ = f"EfficientFormerV2{variant.upper()}"
    build.__doc__ = (f"EfficientFormerV2-{variant.upper()}; arguments as `EfficientFormerV2` without `config`.")
    return build


EfficientFormerV2S0, EfficientFormerV2S1, EfficientFormerV2S2, EfficientFormerV2L = (
    register_model(v, "v2", _variant(v), V2_VARIANTS[v]) for v in ("s0", "s1", "s2", "l"))

"""EfficientFormer models: one generic builder and the named L1/L3/L7 entry points.

`EfficientFormer` is a functional graph built inside a `keras.Model` subclass (the
keras-hub pattern): `summary()`, feature taps, `.keras` saving and export work with no
custom `call`, and `get_config()` carries the architecture so `from_config` rebuilds it.
The constructor follows keras.applications (`include_top, weights, input_shape,
input_tensor, pooling, classes, classifier_activation`).
"""

from __future__ import annotations

import keras

from ef_keras import layers as ef_layers
from ef_keras.checks import check_int, check_number
from ef_keras.config import VARIANTS, EfficientFormerConfig, get_config
from ef_keras.errors import EfKerasError
from ef_keras.plan import Block, meta_blocks, stage_outputs
from ef_keras.registry import register_model

#: Every stride-2 step halves the grid; the last stage sits at input / 32.
TOTAL_STRIDE = 32
DEFAULT_SIZE = 224
#: Pyramid level of each stage's output: stage s runs at stride 2^(s+2), so it is P(s+2).
PYRAMID_LEVELS = ("P2", "P3", "P4", "P5")


class ModelArgumentError(EfKerasError):
    """Inconsistent model-constructor arguments."""


def _grid(input_shape, config: EfficientFormerConfig):
    """Checks the input shape and returns the last stage's (H, W) token grid."""
    if len(input_shape) != 3 or input_shape[-1] != 3 or isinstance(input_shape[-1], bool):
        raise ModelArgumentError(f"input_shape must be (height, width, 3), got {tuple(input_shape)}")
    h, w = input_shape[0], input_shape[1]
    for size in (h, w):
        if size is not None:
            check_int(f"input_shape {tuple(input_shape)}: height and width", size, low=TOTAL_STRIDE,
                      error=ModelArgumentError)
    if h is None or w is None:
        if config.num_vit:
            raise ModelArgumentError(
                "the attention bias table needs a fixed input size: pass input_shape=(H, W, 3) with H and W "
                f"multiples of {TOTAL_STRIDE} (e.g. (224, 224, 3))")
        return None
    if h % TOTAL_STRIDE or w % TOTAL_STRIDE:
        raise ModelArgumentError(
            f"input_shape {tuple(input_shape)}: height and width must be multiples of {TOTAL_STRIDE} "
            f"(the network downsamples by {TOTAL_STRIDE}); e.g. (224, 224, 3)")
    return (h // TOTAL_STRIDE, w // TOTAL_STRIDE)


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormer(keras.Model):
    """EfficientFormer (V1) image classifier or backbone for any architecture config.

    Args:
        config: an `EfficientFormerConfig`, a variant name ("l1", "l3", "l7") or the path of
            an architecture JSON (e.g. written by the search).
        include_top: whether to add the final norm's pooled classifier heads.
        weights: None (random init), "imagenet" (timm's published distilled ImageNet-1k
            checkpoint for a named variant, downloaded into the Keras cache) or the path of a
            checkpoint (`.safetensors`, `.pth`/`.pt`, official or timm key layout).
        input_shape: (H, W, 3), H and W multiples of 32; default (224, 224, 3). With
            `num_vit > 0` it must be fixed because the attention bias table is per grid cell.
        input_tensor: optional Keras tensor to use as the image input.
        pooling: with `include_top=False`: None returns the (B, H/32, W/32, C4) map after the
            final LayerNorm ((B, N, C4) tokens when the input size is variable), "avg" its
            token mean (B, C4), "max" its token max.
        classes: number of classes of the heads.
        classifier_activation: None for logits, or e.g. "softmax".
        distillation: add the distillation head (as the reference); the output is then the
            average of the two heads. Use `heads_model()` to get both logits for training.
        drop_path_rate: stochastic depth at the last block (linear in block index).
        features_only: with `include_top=False` and `pooling=None`: the outputs are the
            feature pyramid dict {"P2": ..., "P5": ...} (see `pyramid_outputs`) instead of the
            stride-32 map.
        name: model name (default "efficientformer_<config.name>").

    Feature pyramid: every model built with `include_top=False` has `pyramid_outputs`, the
    four stage outputs {"P2": (B, H/4, W/4, C1), "P3": /8, "P4": /16, "P5": (B, H/32, W/32, C4)}
    (keras-hub's `FeaturePyramidBackbone` convention, so `keras.Model(model.inputs,
    model.pyramid_outputs)`, `ef_keras.segmentation.SemanticFPN` and keras-hub's
    `RetinaNetBackbone(image_encoder=model, ...)` work). They match timm's
    `forward_intermediates(x, norm=True)` exactly: P2-P4 are the raw stage outputs (no
    norm), P5 is the last stage's tokens after the final LayerNorm, reshaped back to a map.
    (The official mmdet/mmseg backbones add a new, untrained GroupNorm per output instead;
    timm's form uses every pretrained weight and adds none.) The taps are the plan's stage
    outputs (`ef_keras.plan.stage_outputs`).

    Input size: any H and W that are multiples of 32 (e.g. 512x512, 640x640, 800x1216);
    `None x None` only for architectures without 3D blocks (the attention biases are per grid
    cell). `at_input_shape` rebuilds a model at another size with its weights, resizing the
    attention-bias tables bicubically (as checkpoint import does).

    Example:
        >>> import numpy as np, ef_keras
        >>> model = ef_keras.EfficientFormer("l1")
        >>> model.predict(np.zeros((1, 224, 224, 3)), verbose=0).shape
        (1, 1000)
    """

    def __init__(self, config="l1", include_top=True, weights=None, input_shape=None, input_tensor=None,
                 pooling=None, classes=1000, classifier_activation=None, distillation=True,
                 drop_path_rate=0.0, features_only=False, name=None, **kwargs):
        config = get_config(config if not isinstance(config, dict) else EfficientFormerConfig.from_dict(config))
        _check_arguments(config, include_top, weights, pooling, classes, drop_path_rate, distillation)
        if not isinstance(features_only, bool):
            raise ModelArgumentError(f"features_only must be True or False, got {features_only!r}")
        if features_only and (include_top or pooling is not None):
            raise ModelArgumentError("features_only=True returns the feature pyramid: build it with include_top=False "
                                     "and pooling=None")
        if input_shape is None:
            input_shape = (DEFAULT_SIZE, DEFAULT_SIZE, 3) if input_tensor is None else tuple(input_tensor.shape[1:])
        input_shape = tuple(input_shape)
        grid = _grid(input_shape, config)

        inputs = keras.Input(shape=input_shape, name="image") if input_tensor is None else input_tensor
        x, stage_maps = _backbone(inputs, config, input_shape[:2], drop_path_rate)
        pyramid = None if include_top else _pyramid(x, stage_maps, config)
        if include_top:
            pooled = keras.layers.GlobalAveragePooling1D(name="pool")(x)
            outputs = classifier_top(pooled, classes, distillation, classifier_activation)
        elif pooling == "avg":
            outputs = keras.layers.GlobalAveragePooling1D(name="avg_pool")(x)
        elif pooling == "max":
            outputs = keras.layers.GlobalMaxPooling1D(name="max_pool")(x)
        elif features_only:
            outputs = pyramid
        else:  # the token grid back as a map; with a variable input size (no attention) the tokens
            outputs = keras.layers.Reshape((*grid, config.widths[3]), name="features")(x) if grid else x

        super().__init__(inputs=inputs, outputs=outputs, name=name or f"efficientformer_{config.name}", **kwargs)
        self.config = config
        self.include_top, self.pooling, self.classes = include_top, pooling, classes
        self.classifier_activation, self.distillation = classifier_activation, distillation
        self.drop_path_rate = drop_path_rate
        self.features_only = features_only
        self.image_shape = input_shape
        self._pyramid = pyramid
        if weights == "imagenet":
            from ef_keras.checkpoint import load_imagenet_weights
            load_imagenet_weights(self)
        elif weights is not None:
            from ef_keras.checkpoint import load_weights_from_checkpoint
            load_weights_from_checkpoint(self, weights)

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

    def at_input_shape(self, input_shape, name=None) -> "EfficientFormer":
        """This model rebuilt for another input size (multiples of 32), with its weights.

        Every weight is copied; the attention-bias tables of the 3D blocks, which hold one
        entry per token offset of the old grid, are resized bicubically to the new grid (the
        reference's detection/segmentation recipe, and what `ef_keras.checkpoint` does on
        import) with one warning naming both grids. So a 224-trained model runs at 512x512 or
        640x640; fine-tune at the new size for best accuracy.
        """
        import warnings

        config = {**self.get_config(), "input_shape": tuple(input_shape), "name": name or self.name}
        config.pop("trainable", None)
        model = EfficientFormer(**config)
        resized = []
        for old in self.layers:
            if not old.weights:
                continue
            new = model.get_layer(old.name)
            for source, target in zip(old.weights, new.weights):
                value = keras.ops.convert_to_numpy(source)
                if tuple(source.shape) != tuple(target.shape) and source.path.endswith("attention_biases"):
                    value = resize_bias_table(value, old.token_mixer.resolution, new.token_mixer.resolution)
                    resized.append((old.token_mixer.resolution, new.token_mixer.resolution))
                target.assign(value)
        if resized:
            warnings.warn(f"{self.name}: resized the attention-bias tables of {len(resized)} block(s) bicubically "
                          f"from the {resized[0][0]} to the {resized[0][1]} token grid; fine-tune at "
                          f"{tuple(input_shape)[:2]} for best accuracy", stacklevel=2)
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


def classifier_top(pooled, classes, distillation, classifier_activation):
    """The heads on pooled features (both families): `head`, optionally `head_dist` averaged with it.

    The layer names are what checkpoint import, `heads_model()` and the LUT's head unit refer to.
    """
    head = keras.layers.Dense(classes, name="head")(pooled)
    if distillation:
        dist = keras.layers.Dense(classes, name="head_dist")(pooled)
        logits = keras.layers.Average(name="head_average")([head, dist])
    else:
        logits = head
    return keras.layers.Activation(classifier_activation or "linear", name="predictions")(logits)


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
    if weights == "imagenet" and config.name not in VARIANTS:
        raise ModelArgumentError(
            f"weights='imagenet' exists only for l1, l3 and l7, not for architecture {config.name!r}")
    check_number("drop_path_rate", drop_path_rate, low=0, high=1, high_open=True, error=ModelArgumentError)


def _backbone(x, config: EfficientFormerConfig, image_size, drop_path_rate):
    """Stem, four stages, the single Flat and the final LayerNorm, from the block plan.

    Returns the normalised (B, N, C4) tokens and {stage: tensor}: the outputs of stages 0-2
    (the plan's `stage_outputs`, or a stage's downsampling when it has no blocks) and, under
    key 3, the last stage's 4D map just before its Flat (whose H, W the tokens fold back to).
    """
    blocks = config.blocks(image_size)
    rates = dict(zip(meta_blocks(blocks), ef_layers.drop_path_rates(config.depths, drop_path_rate)))
    taps = {b: stage for stage, b in stage_outputs(blocks).items() if stage < 3}
    taps.update({b: b.stage for b in blocks if b.kind == "downsample" and b.stage < 3
                 and b.stage not in taps.values()})
    stage_maps = {}
    for block in blocks:
        if block.kind == "head":
            tokens = keras.layers.LayerNormalization(epsilon=ef_layers.LN_EPSILON, name=block.name)(x)
            return tokens, stage_maps
        if block.kind == "flat" and block.stage == 3 and 3 not in stage_maps:
            stage_maps[3] = x
        x = block_layer(block, config, rates.get(block, 0.0), name=block.name)(x)
        if block in taps:
            stage_maps[taps[block]] = x
    raise AssertionError("a block plan always ends with its head")


def _pyramid(tokens, stage_maps, config: EfficientFormerConfig) -> dict:
    """{"P2".."P5"}: stages 0-2 as they are, the normalised last-stage tokens folded back to a map."""
    pyramid = {}
    for stage, level in enumerate(PYRAMID_LEVELS[:3]):
        x = stage_maps[stage]
        pyramid[level] = x if len(x.shape) == 4 else TokensToMap(name=f"pyramid_{level}")([x, stage_maps[stage]])
    reference = stage_maps[3]
    h, w = reference.shape[1:3]
    if h is not None and w is not None:
        pyramid["P5"] = keras.layers.Reshape((h, w, config.widths[3]), name="pyramid_P5")(tokens)
    else:
        pyramid["P5"] = TokensToMap(name="pyramid_P5")([tokens, reference])
    return pyramid


def resize_bias_table(table, old_grid, new_grid):
    """(heads, oh·ow) relative-position bias table of an oh x ow token grid -> (heads, nh·nw), bicubic.

    Entry (dy, dx) of the table is the bias for a row/column offset (dy, dx); seen as a
    (heads, oh, ow) image it is resized with Keys' cubic kernel (a = -0.5), half-pixel centres
    and the weights renormalised at the borders: `tf.image.resize(..., "bicubic",
    antialias=True)`, which computes that formula exactly (antialias=False uses TF's legacy
    kernel table, quantised to 1/1024 px, up to 3e-3 off the formula; when shrinking, the
    antialiased kernel also widens as it should). This is the table resize of kecam and
    `ef_keras.checkpoint`; the official det/seg code instead resizes the gathered (N, N) bias
    matrix at run time with PyTorch's a = -0.75 kernel, which no per-offset table reproduces.
    """
    import tensorflow as tf

    heads = table.shape[0]
    image = tf.convert_to_tensor(keras.ops.convert_to_numpy(table).reshape(heads, *old_grid, 1), tf.float32)
    return tf.image.resize(image, tuple(new_grid), method="bicubic", antialias=True).numpy().reshape(heads, -1)


@keras.saving.register_keras_serializable(package="ef_keras")
class TokensToMap(keras.layers.Layer):
    """(B, N, C) tokens -> (B, H, W, C), H and W read (at run time) from a reference map.

    The reference detection backbone folds the last stage's tokens back with the H, W of
    the last 4D input the same way; this form also works when the input size is variable.
    """

    def call(self, inputs):
        tokens, reference = inputs
        shape = keras.ops.shape(reference)
        return keras.ops.reshape(tokens, (-1, shape[1], shape[2], tokens.shape[-1]))

    def compute_output_shape(self, input_shapes):
        tokens, reference = input_shapes
        return (tokens[0], reference[1], reference[2], tokens[-1])


def block_layer(block: Block, config: EfficientFormerConfig, drop_path: float = 0.0, name: str | None = None):
    """The Keras layer that runs `block` (any kind but the head), with the config's hyper-parameters.

    The model, the supernet's MetaPaths and the latency table's micro-models all build their
    units here, so what is timed and searched is what the model runs.
    """
    name = name or block.name
    if block.kind == "stem":
        return ef_layers.Stem(block.cout, name=name)
    if block.kind == "downsample":
        return ef_layers.Downsample(block.cout, name=name)
    if block.kind == "meta4d":
        return ef_layers.Meta4D(block.cout, config.mlp_ratio, config.pool_size, config.layer_scale_init,
                                drop_path=drop_path, name=name)
    if block.kind == "flat":
        return ef_layers.Flat(name=name)
    if block.kind == "meta3d":
        return ef_layers.Meta3D(block.cout, block.grid, config.mlp_ratio, config.key_dim, config.num_heads,
                                config.attn_ratio, config.layer_scale_init, drop_path=drop_path, name=name)
    raise ValueError(f"no single layer runs a {block.kind!r} unit")


def _variant(variant):
    def build(include_top=True, weights=None, input_shape=None, input_tensor=None, pooling=None, classes=1000,
              classifier_activation=None, distillation=True, drop_path_rate=0.0, name=None, **kwargs):
        return EfficientFormer(variant, include_top=include_top, weights=weights, input_shape=input_shape,
                               input_tensor=input_tensor, pooling=pooling, classes=classes,
                               classifier_activation=classifier_activation, distillation=distillation,
                               drop_path_rate=drop_path_rate, name=name, **kwargs)
    build.__name__ = f"EfficientFormer{variant.upper()}"
    build.__doc__ = (f"EfficientFormer-{variant.upper()} (paper Table 1); arguments as `EfficientFormer` "
                     f"without `config`.")
    return build


EfficientFormerL1, EfficientFormerL3, EfficientFormerL7 = (
    register_model(v, "v1", _variant(v), VARIANTS[v]) for v in VARIANTS)

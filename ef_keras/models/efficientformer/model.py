"""EfficientFormer (V1) models: the model class on the shared base, its backbone, and the L1/L3/L7 entry points.

`EfficientFormer` wires the V1 backbone (stem, four stages, the single Flat, the final
LayerNorm) from the block plan; arguments, heads, pooling, the pyramid, `.keras` saving and
weight loading are the shared `ef_keras.models.base.EfficientFormerBase`.
"""

from __future__ import annotations

import keras

from ef_keras.models.base import PYRAMID_LEVELS, EfficientFormerBase
from ef_keras.models.common_layers import LN_EPSILON, drop_path_rates
from ef_keras.models.efficientformer import layers
from ef_keras.models.efficientformer.config import EfficientFormerConfig
from ef_keras.models.plan import Block, meta_blocks, stage_outputs


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormer(EfficientFormerBase):
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
    model.pyramid_outputs)`, `ef_keras.tasks.segmentation.SemanticFPN` and keras-hub's
    `RetinaNetBackbone(image_encoder=model, ...)` work). They match timm's
    `forward_intermediates(x, norm=True)` exactly: P2-P4 are the raw stage outputs (no
    norm), P5 is the last stage's tokens after the final LayerNorm, reshaped back to a map.
    (The official mmdet/mmseg backbones add a new, untrained GroupNorm per output instead;
    timm's form uses every pretrained weight and adds none.) The taps are the plan's stage
    outputs (`ef_keras.models.plan.stage_outputs`).

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

    config_class = EfficientFormerConfig
    default_config = "l1"

    @staticmethod
    def needs_fixed_size(config) -> bool:
        return config.num_vit > 0

    @staticmethod
    def backbone(inputs, config, image_size, drop_path_rate, pyramid):
        tokens, stage_maps = _backbone(inputs, config, image_size, drop_path_rate)
        return tokens, (_pyramid(tokens, stage_maps, config) if pyramid else None)


def _backbone(x, config: EfficientFormerConfig, image_size, drop_path_rate):
    """Stem, four stages, the single Flat and the final LayerNorm, from the block plan.

    Returns the normalised (B, N, C4) tokens and {stage: tensor}: the outputs of stages 0-2
    (the plan's `stage_outputs`, or a stage's downsampling when it has no blocks) and, under
    key 3, the last stage's 4D map just before its Flat (whose H, W the tokens fold back to).
    """
    blocks = config.blocks(image_size)
    rates = dict(zip(meta_blocks(blocks), drop_path_rates(config.depths, drop_path_rate)))
    taps = {b: stage for stage, b in stage_outputs(blocks).items() if stage < 3}
    taps.update({b: b.stage for b in blocks if b.kind == "downsample" and b.stage < 3
                 and b.stage not in taps.values()})
    stage_maps = {}
    for block in blocks:
        if block.kind == "head":
            tokens = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=block.name)(x)
            return tokens, stage_maps
        if block.kind == "flat" and block.stage == 3 and 3 not in stage_maps:
            stage_maps[3] = x
        x = block_layer(block, config, rates.get(block, 0.0), name=block.name)(x)
        if block in taps:
            stage_maps[taps[block]] = x
    raise AssertionError("a block plan always ends with its head")


def _pyramid(tokens, stage_maps, config: EfficientFormerConfig) -> dict:
    """{"P2".."P5"}: stages 0-2 as they are (maps: a V1 stage hands a map to the next downsampling), the
    normalised last-stage tokens folded back to a map."""
    pyramid = {level: stage_maps[stage] for stage, level in enumerate(PYRAMID_LEVELS[:3])}
    reference = stage_maps[3]
    h, w = reference.shape[1:3]
    if h is not None and w is not None:
        pyramid["P5"] = keras.layers.Reshape((h, w, config.widths[3]), name="pyramid_P5")(tokens)
    else:
        pyramid["P5"] = layers.TokensToMap(name="pyramid_P5")([tokens, reference])
    return pyramid


def block_layer(block: Block, config: EfficientFormerConfig, drop_path: float = 0.0, name: str | None = None):
    """The Keras layer that runs `block` (any kind but the head), with the config's hyper-parameters.

    The model, the supernet's MetaPaths and the latency table's micro-models all build their
    units here, so what is timed and searched is what the model runs.
    """
    name = name or block.name
    if block.kind == "stem":
        return layers.Stem(block.cout, name=name)
    if block.kind == "downsample":
        return layers.Downsample(block.cout, name=name)
    if block.kind == "meta4d":
        return layers.Meta4D(block.cout, config.mlp_ratio, config.pool_size, config.layer_scale_init,
                             drop_path=drop_path, name=name)
    if block.kind == "flat":
        return layers.Flat(name=name)
    if block.kind == "meta3d":
        return layers.Meta3D(block.cout, block.grid, config.mlp_ratio, config.key_dim, config.num_heads,
                             config.attn_ratio, config.layer_scale_init, drop_path=drop_path, name=name)
    raise ValueError(f"no single layer runs a {block.kind!r} unit")


def EfficientFormerL1(**kwargs) -> EfficientFormer:
    """EfficientFormer-L1 (paper Table 1: 79.2 % top-1, 1.6 ms on an iPhone 12); arguments as `EfficientFormer`."""
    return EfficientFormer("l1", **kwargs)


def EfficientFormerL3(**kwargs) -> EfficientFormer:
    """EfficientFormer-L3 (paper Table 1: 82.4 % top-1, 3.0 ms on an iPhone 12); arguments as `EfficientFormer`."""
    return EfficientFormer("l3", **kwargs)


def EfficientFormerL7(**kwargs) -> EfficientFormer:
    """EfficientFormer-L7 (paper Table 1: 83.3 % top-1, 7.0 ms on an iPhone 12); arguments as `EfficientFormer`."""
    return EfficientFormer("l7", **kwargs)

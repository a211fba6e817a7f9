"""EfficientFormerV2 models: the model class on the shared base, its backbone, and the S0/S1/S2/L entry points.

`EfficientFormerV2` wires the V2 backbone (stem, four stages, the final BatchNorm) from its
block plan; arguments, heads, pooling, the pyramid, `.keras` saving and weight loading are the
shared `ef_keras.models.base.EfficientFormerBase`. V2 has attention in stages 3 and 4
(relative-position bias tables per grid cell), so the input size is fixed: H and W multiples
of 32.
"""

from __future__ import annotations

import keras

from ef_keras.models.base import PYRAMID_LEVELS, EfficientFormerBase
from ef_keras.models.common_layers import batch_norm, drop_path_rates
from ef_keras.models.efficientformer_v2 import layers
from ef_keras.models.efficientformer_v2.config import EfficientFormerV2Config
from ef_keras.models.plan import Block


@keras.saving.register_keras_serializable(package="ef_keras")
class EfficientFormerV2(EfficientFormerBase):
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
    BatchNorm. `at_input_shape` rebuilds a model at another size with its weights, resizing
    the attention-bias tables bicubically (as checkpoint import does).

    Example:
        >>> import numpy as np, ef_keras
        >>> model = ef_keras.EfficientFormerV2S0()
        >>> model.predict(np.zeros((1, 224, 224, 3)), verbose=0).shape
        (1, 1000)
    """

    config_class = EfficientFormerV2Config
    default_config = "s0"

    @staticmethod
    def backbone(inputs, config, image_size, drop_path_rate, pyramid):
        x, stage_maps = _backbone(inputs, config, image_size, drop_path_rate)
        return x, (dict(zip(PYRAMID_LEVELS, [*(stage_maps[s] for s in range(3)), x])) if pyramid else None)


def _backbone(x, config: EfficientFormerV2Config, image_size, drop_path_rate=0.0):
    """Stem, four stages and the final BatchNorm, walked from the block plan.

    Returns the (B, h, w, C4) map and {stage: its raw output} (what the next downsampling reads;
    stage 3's before the final norm), the feature-pyramid taps.
    """
    blocks = config.blocks(image_size)
    ffn_blocks = [b for b in blocks if b.kind in ("v2_ffn", "v2_attn_ffn")]
    rates = dict(zip(ffn_blocks, drop_path_rates(config.depths, drop_path_rate)))
    stage_maps = {}
    for block in blocks:
        if block.kind in ("v2_downsample", "v2_attn_downsample", "v2_head"):
            stage_maps[block.stage - 1 if block.kind != "v2_head" else block.stage] = x
        if block.kind == "v2_head":
            return batch_norm(block.name)(x), stage_maps
        x = block_layer(block, config, rates.get(block, 0.0))(x)
    raise AssertionError("a V2 block plan always ends with its head")


def block_layer(block: Block, config: EfficientFormerV2Config, drop_path: float = 0.0, name=None):
    """The Keras layer that runs one V2 plan unit (any kind but the head)."""
    name = name or block.name
    if block.kind == "v2_stem":
        return layers.V2Stem(block.cout, name=name)
    if block.kind in ("v2_downsample", "v2_attn_downsample"):
        attn = block.kind == "v2_attn_downsample"
        return layers.V2Downsample(block.cin, block.cout, use_attn=attn, resolution=block.grid if attn else None,
                                   key_dim=config.downsample_key_dim, num_heads=config.num_heads,
                                   attn_ratio=config.attn_ratio, name=name)
    if block.kind in ("v2_ffn", "v2_attn_ffn"):
        attn = block.kind == "v2_attn_ffn"
        return layers.V2Block(block.cout, block.mlp_ratio, use_attn=attn, resolution=block.grid if attn else None,
                              attn_stride=block.attn_stride, key_dim=config.key_dim, num_heads=config.num_heads,
                              attn_ratio=config.attn_ratio, layer_scale_init=config.layer_scale_init,
                              drop_path=drop_path, name=name)
    raise ValueError(f"no single layer runs a {block.kind!r} unit")


def EfficientFormerV2S0(**kwargs) -> EfficientFormerV2:
    """EfficientFormerV2-S0 (76.2 % top-1, 0.9 ms on an iPhone 12); arguments as `EfficientFormerV2`."""
    return EfficientFormerV2("s0", **kwargs)


def EfficientFormerV2S1(**kwargs) -> EfficientFormerV2:
    """EfficientFormerV2-S1 (79.7 % top-1, 1.1 ms on an iPhone 12); arguments as `EfficientFormerV2`."""
    return EfficientFormerV2("s1", **kwargs)


def EfficientFormerV2S2(**kwargs) -> EfficientFormerV2:
    """EfficientFormerV2-S2 (82.0 % top-1, 1.6 ms on an iPhone 12); arguments as `EfficientFormerV2`."""
    return EfficientFormerV2("s2", **kwargs)


def EfficientFormerV2L(**kwargs) -> EfficientFormerV2:
    """EfficientFormerV2-L (83.5 % top-1, 2.7 ms on an iPhone 12); arguments as `EfficientFormerV2`."""
    return EfficientFormerV2("l", **kwargs)

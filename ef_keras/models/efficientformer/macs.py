"""Multiply-accumulate counts of an EfficientFormer (V1) architecture, and its parameter convention.

Parameters (counted by `ef_keras.info.model_info` with this family's rule): `params_all` is
every trainable parameter, as timm counts (BN gamma/beta included, BN running statistics
excluded since they are buffers) — L1 12,289,928; `params_paper` is the paper's count, which
leaves out what folds into the convolutions and linears at inference — BatchNorm and the layer
scales (`FOLDED_LAYERS`) — and keeps both heads. This rule reproduces all three published
counts: 12.25 / 31.33 / 82.11 M (L1/L3/L7).

GMACs: convolutions (with their bias), linears (without), GELU, LayerNorm and both
attention matmuls; BatchNorm, ReLU and pooling not counted. This convention reproduces the
official toolbox's 1.300 / 3.926 / 10.159 GMACs to four digits. It is computed analytically
from the architecture, so it needs no model build.
"""

from __future__ import annotations

import keras

from ef_keras.models.common_layers import LayerScale
from ef_keras.models.efficientformer.config import EfficientFormerConfig, get_config
from ef_keras.models.plan import Block

#: What the paper's parameter count leaves out: it folds into the convolutions at inference.
FOLDED_LAYERS = (keras.layers.BatchNormalization, LayerScale)


def gmacs(config, image_size=(224, 224), classes=1000, distillation=True) -> float:
    """Multiply-accumulates (×1e9) of one image, in the official toolbox's convention."""
    cfg = get_config(config)
    return sum(block_macs(b, cfg, distillation) for b in cfg.blocks(tuple(image_size), classes)) / 1e9


def _conv(hw, cin, cout, k):
    """A k×k conv producing an hw grid; its bias counted as one op per output."""
    return hw[0] * hw[1] * cout * (k * k * cin + 1)


def block_macs(block: Block, cfg: EfficientFormerConfig, distillation: bool = True) -> int:
    """Multiply-accumulates of one unit of the block plan (see the module docstring)."""
    n, c = block.tokens, block.cout
    if block.kind == "stem":
        half = tuple(g // 2 for g in block.grid)
        return _conv(half, 3, c // 2, 3) + _conv(block.out_grid, c // 2, c, 3)
    if block.kind == "downsample":
        return _conv(block.out_grid, block.cin, c, 3)
    if block.kind == "meta4d":
        hidden = c * cfg.mlp_ratio
        return _conv(block.grid, c, hidden, 1) + n * hidden + _conv(block.grid, hidden, c, 1)  # fc1, GELU, fc2
    if block.kind == "meta3d":
        qkv = cfg.num_heads * (2 * cfg.key_dim + cfg.attn_ratio * cfg.key_dim)
        vals = cfg.num_heads * cfg.attn_ratio * cfg.key_dim
        return (2 * n * c  # LayerNorm 1 and 2 (one op per element each)
                + n * c * qkv  # qkv linear
                + cfg.num_heads * n * n * (cfg.key_dim + cfg.attn_ratio * cfg.key_dim)  # q·kᵀ and attn·v
                + n * vals * c  # proj
                + n * c * c * cfg.mlp_ratio  # fc1
                + n * c * cfg.mlp_ratio  # GELU
                + n * c * cfg.mlp_ratio * c)  # fc2
    if block.kind == "head":  # final LayerNorm, then one or two linear heads
        return n * block.cin + (2 if distillation else 1) * block.cin * block.cout
    return 0  # flat: a reshape

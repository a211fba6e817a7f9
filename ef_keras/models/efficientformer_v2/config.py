"""Architecture configs and the block plan of EfficientFormerV2 (S0, S1, S2, L).

A V2 architecture is data: per-stage widths and depths, how many attention blocks close
stages 3 and 4 (`num_vit`), and the FFN expansion ratio of every block (V2 searched them
per block). `EfficientFormerV2Config` round-trips through JSON like V1's config.

`blocks()` is V2's block plan: `ef_keras.models.plan.Block` records like V1's, one ordered list
of units (kind, stage, reference index, channels, grid, Keras layer name) that the
model builder, the checkpoint key mapping and the GMAC count all walk, instead of each
walking the network by hand. Kinds: "v2_stem", "v2_downsample", "v2_attn_downsample"
(stage 3 -> 4), "v2_ffn", "v2_attn_ffn" and "v2_head" (final BatchNorm and classifier).

Variant table: Li et al., "Rethinking Vision Transformers for MobileNet Size and Speed",
ICCV 2023; values as timm's `efficientformer_v2.py` (`EfficientFormer_width`,
`EfficientFormer_depth`, `EfficientFormer_expansion_ratios`), identical to the official
snap-research `models/efficientformer_v2.py`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ef_keras.models.config import NUM_STAGES, ArchitectureConfig, ConfigError
from ef_keras.models.plan import Block
from ef_keras.registry import architecture

#: Stage 3 (index 2) attention runs at stride 2; only the downsampling into stage 4 has attention.
STRIDED_ATTN_STAGE = 2
ATTN_DOWNSAMPLE_STAGE = 3
#: Unit kinds of a V2 plan, in the order they first appear.
KINDS = ("v2_stem", "v2_downsample", "v2_ffn", "v2_attn_ffn", "v2_attn_downsample", "v2_head")


@dataclasses.dataclass(frozen=True)
class EfficientFormerV2Config(ArchitectureConfig):
    """One EfficientFormerV2 architecture.

    Args:
        widths: channels of stages 1-4 (the stem goes 3 -> widths[0] // 2 -> widths[0]).
        depths: blocks per stage.
        num_vit: attention (AttnFFN) blocks closing stage 3 **and** stage 4.
        mlp_ratios: per stage, the FFN expansion ratio of each block (len = depth).
        name: label carried into model names.
        key_dim, num_heads, attn_ratio: block attention layout (q, k: key_dim per head; v: attn_ratio·key_dim).
        downsample_key_dim: key_dim of the attention in the stage 3 -> 4 downsampling (16).
        layer_scale_init: initial layer-scale value.

    Example:
        >>> cfg = V2_VARIANTS["s0"]
        >>> EfficientFormerV2Config.from_json(cfg.to_json()) == cfg
        True
    """

    mlp_ratios: tuple
    name: str = "custom"
    key_dim: int = 32
    num_heads: int = 8
    attn_ratio: int = 4
    downsample_key_dim: int = 16
    layer_scale_init: float = 1e-5

    family: ClassVar[str] = "v2"
    REQUIRED: ClassVar[tuple[str, ...]] = ("widths", "depths", "num_vit", "mlp_ratios")
    INT_FIELDS: ClassVar[tuple[str, ...]] = ("key_dim", "num_heads", "attn_ratio", "downsample_key_dim")
    MIN_DEPTH: ClassVar[int] = 1
    DEPTH_RULE: ClassVar[str] = "every V2 stage needs at least one block"

    def _normalise(self) -> None:
        object.__setattr__(self, "mlp_ratios", _ratios(self.mlp_ratios, self.depths))

    def num_vit_limit(self) -> tuple[int, str]:
        return min(self.depths[2:]), f"the depths of stages 3 and 4 (got depths={list(self.depths)})"

    def blocks(self, image_size=(224, 224), classes: int = 1000) -> list[Block]:
        """The block plan: every unit of this architecture for `image_size` inputs, in order."""
        units = [Block("v2_stem", 0, None, 3, self.widths[0], tuple(image_size))]
        grid = units[0].out_grid
        for stage, (width, depth) in enumerate(zip(self.widths, self.depths)):
            if stage:
                kind = "v2_attn_downsample" if stage == ATTN_DOWNSAMPLE_STAGE else "v2_downsample"
                units.append(Block(kind, stage, None, self.widths[stage - 1], width, grid))
                grid = units[-1].out_grid
            for k in range(depth):
                attn = stage >= STRIDED_ATTN_STAGE and k >= depth - self.num_vit
                units.append(Block(
                    "v2_attn_ffn" if attn else "v2_ffn", stage, k, width, width, grid, self.mlp_ratios[stage][k],
                    2 if attn and stage == STRIDED_ATTN_STAGE else None))
        units.append(Block("v2_head", NUM_STAGES - 1, None, self.widths[-1], classes, grid))
        return units


def _ratios(value, depths):
    """Per-stage tuples of positive numbers, one per block; a bare number per stage is repeated."""
    try:
        stages = tuple(value)
    except TypeError as e:
        raise ConfigError(f"mlp_ratios must be {NUM_STAGES} lists (one ratio per block), got {value!r}") from e
    if len(stages) != NUM_STAGES:
        raise ConfigError(f"mlp_ratios must be {NUM_STAGES} lists (one ratio per block), got {len(stages)}")
    out = []
    for i, (ratios, depth) in enumerate(zip(stages, depths)):
        if isinstance(ratios, (int, float)) and not isinstance(ratios, bool):
            ratios = (ratios,) * depth
        try:
            ratios = tuple(ratios)
        except TypeError as e:
            raise ConfigError(f"mlp_ratios[{i}] must be a list of numbers, got {ratios!r}") from e
        if len(ratios) != depth:
            raise ConfigError(f"mlp_ratios[{i}] has {len(ratios)} ratio(s) but stage {i} has depth {depth}; "
                              "give one expansion ratio per block")
        for r in ratios:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0:
                raise ConfigError(f"mlp_ratios[{i}] holds {r!r}; expansion ratios must be positive numbers")
        out.append(ratios)
    return tuple(out)


#: The published family (timm / official tables). Top-1 (450 epochs) and iPhone 12 latency in comments.
V2_VARIANTS: dict[str, EfficientFormerV2Config] = {
    "s0": EfficientFormerV2Config(widths=(32, 48, 96, 176), depths=(2, 2, 6, 4), num_vit=2, name="s0",
                                  mlp_ratios=(4, 4, (4, 3, 3, 3, 4, 4), (4, 3, 3, 4))),  # 76.2 %, 0.9 ms
    "s1": EfficientFormerV2Config(widths=(32, 48, 120, 224), depths=(3, 3, 9, 6), num_vit=2, name="s1",
                                  mlp_ratios=(4, 4, (4, 4, 3, 3, 3, 3, 4, 4, 4), (4, 4, 3, 3, 4, 4))),  # 79.7, 1.1
    "s2": EfficientFormerV2Config(widths=(32, 64, 144, 288), depths=(4, 4, 12, 8), num_vit=4, name="s2",
                                  mlp_ratios=(4, 4, (4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4),
                                              (4, 4, 3, 3, 3, 3, 4, 4))),  # 82.0, 1.6
    "l": EfficientFormerV2Config(widths=(40, 80, 192, 384), depths=(5, 5, 15, 10), num_vit=6, name="l",
                                 mlp_ratios=(4, 4, (4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4),
                                             (4, 4, 4, 3, 3, 3, 3, 4, 4, 4))),  # 83.5, 2.7
}
#: The official drop_path_rate of each variant's training recipe (the model default stays 0).
V2_DROP_PATH = {"s0": 0.0, "s1": 0.0, "s2": 0.02, "l": 0.1}


def get_v2_config(name_or_path) -> EfficientFormerV2Config:
    """Resolves "s0" / "S2" / "efficientformerv2_l", a V2 architecture JSON path, a dict or a config."""
    return architecture(name_or_path, family=EfficientFormerV2Config.family)

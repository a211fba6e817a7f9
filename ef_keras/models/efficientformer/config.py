"""Architecture configs for EfficientFormer (V1): the named variants and any searched one.

An architecture is data: per-stage widths, per-stage depths and how many 3D MetaBlocks
(attention) close the last stage. The named variants, the slimming search, the
converters and the training CLI all speak this one dataclass, which round-trips through
JSON.

Variant table: Li et al., "EfficientFormer: Vision Transformers at MobileNet Speed",
NeurIPS 2022, Table 1 / official `EfficientFormer_width`, `EfficientFormer_depth`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ef_keras.models.config import ArchitectureConfig, ConfigError
from ef_keras.models.plan import Block, Layout
from ef_keras.registry import architecture


@dataclasses.dataclass(frozen=True)
class EfficientFormerConfig(ArchitectureConfig):
    """One EfficientFormer architecture.

    Args:
        widths: channels of stages 1-4 (stem widths are widths[0] // 2, then widths[0]).
        depths: blocks in stages 1-4, Flat excluded. A stage may have depth 0 (the
            search can remove every block of a stage; its downsampling stays).
        num_vit: how many 3D MetaBlocks (attention) close stage 4, 0..depths[3].
            The single 4D->3D Flat sits right before them (at the end of stage 4 when
            num_vit is 0).
        name: a label carried into model names and reports.
        mlp_ratio: hidden/in width of every MetaBlock MLP.
        key_dim, num_heads, attn_ratio: attention layout (q and k have key_dim
            channels per head, v has attn_ratio * key_dim).
        pool_size: the 4D token mixer's average-pool window.
        layer_scale_init: initial value of every layer-scale vector.

    Example:
        >>> cfg = EfficientFormerConfig(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=1)
        >>> EfficientFormerConfig.from_json(cfg.to_json()) == cfg
        True
    """

    name: str = "custom"
    mlp_ratio: int = 4
    key_dim: int = 32
    num_heads: int = 8
    attn_ratio: int = 4
    pool_size: int = 3
    layer_scale_init: float = 1e-5

    family: ClassVar[str] = "v1"
    INT_FIELDS: ClassVar[tuple[str, ...]] = ("mlp_ratio", "key_dim", "num_heads", "attn_ratio", "pool_size")

    def num_vit_limit(self) -> tuple[int, str]:
        return self.depths[3], f"the last stage's depth depths[3]={self.depths[3]}"

    def validate(self) -> None:
        super().validate()
        if self.pool_size % 2 == 0:
            raise ConfigError(f"pool_size={self.pool_size} must be odd so the pool mixer keeps the grid")

    # ------------------------------------------------------------------ derived
    @property
    def stem_widths(self) -> tuple[int, int]:
        return (self.widths[0] // 2, self.widths[0])

    @property
    def num_4d_last(self) -> int:
        """4D MetaBlocks in stage 4 (before the Flat)."""
        return self.depths[3] - self.num_vit

    @property
    def total_blocks(self) -> int:
        return sum(self.depths)

    @property
    def layout(self) -> Layout:
        """Widths and per-stage block types: 4D everywhere, the `num_vit` 3D blocks close stage 4."""
        return Layout(self.widths, tuple(("4d",) * d for d in self.depths[:3])
                      + (("4d",) * self.num_4d_last + ("3d",) * self.num_vit,))

    def blocks(self, image_size=(224, 224), classes: int = 1000) -> list[Block]:
        """The block plan (`ef_keras.models.plan`): every unit of this architecture, in order."""
        return self.layout.blocks(image_size, classes)


#: The published family (paper Table 1). Reference top-1 / iPhone 12 latency in comments.
VARIANTS: dict[str, EfficientFormerConfig] = {
    "l1": EfficientFormerConfig(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=1, name="l1"),  # 79.2 %, 1.6 ms
    "l3": EfficientFormerConfig(widths=(64, 128, 320, 512), depths=(4, 4, 12, 6), num_vit=4, name="l3"),  # 82.4 %, 3.0 ms
    "l7": EfficientFormerConfig(widths=(96, 192, 384, 768), depths=(6, 6, 18, 8), num_vit=8, name="l7"),  # 83.3 %, 7.0 ms
}


def get_config(name_or_path: "str | dict | EfficientFormerConfig") -> EfficientFormerConfig:
    """Resolves a variant name ("l1", "L3", "efficientformer_l7"), a JSON path, a dict or a config."""
    return architecture(name_or_path, family=EfficientFormerConfig.family)

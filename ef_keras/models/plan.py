"""The block plan: the one walk of an EfficientFormer network, and the layout it is walked from.

Everything that needs to know "what runs, in which order, at which width and grid" reads
this list instead of walking the network itself: the Keras model builders
(`ef_keras.models.efficientformer.model`, `..._v2.model`), the supernet (`search.supernet`),
GMAC counting (each family's `macs`), the checkpoint key maps (each family's `weights`) and
the latency table's unit walk (`android_ios_bench.units` / `predictor`). Adding a block kind or
a feature tap therefore means changing one list, not six walks.

A V1 plan is built from a `Layout`: stage widths and, per stage, the block types in order
("4d"/"3d"). A named architecture has 3D blocks only at the end of the last stage
(`EfficientFormerConfig.layout`); the supernet's sub-networks may also place them in stage 3.
Every switch between a 4D feature map and 3D tokens is one `flat` unit (a reshape), and the
network always ends on tokens: the reference's single `Flat` sits right before the first 3D
block of the last stage, or closes it when it has none. EfficientFormerV2 walks its own plan
(`EfficientFormerV2Config.blocks`) with the same `Block` record.

Block indices follow the reference (timm `stages.{stage}.blocks.{index}`): the `Flat` takes
a slot in its stage's numbering, so L1's only 3D block is `stages.3.blocks.4`, after 4D
blocks 0-2 and the Flat at 3. The Keras layer names carry the same index
(`stage3_block4`), which keeps `.keras` files of 0.1 and 0.2 loading.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

from ef_keras.models.config import ConfigError

#: Unit kinds in a plan, in the order they first appear.
KINDS = ("stem", "downsample", "meta4d", "flat", "meta3d", "head")
#: The block types a stage list may hold.
BLOCK_TYPES = ("4d", "3d")
#: Stride of the stem, then of each downsampling: stages run at input/4, /8, /16, /32.
STEM_STRIDE = 4
NUM_STAGES = 4


@dataclasses.dataclass(frozen=True)
class Block:
    """One unit of the network.

    Attributes:
        kind: one of `KINDS`.
        stage: stage 0-3 the unit belongs to (the stem is stage 0, the final norm and heads 3).
        index: the unit's slot in the reference's numbering of its stage's blocks (meta4d,
            flat and meta3d); None for the stem, the downsamplings and the head.
        cin, cout: channels in and out (the head's `cout` is the number of classes).
        grid: (H, W) of the unit's input (the image size for the stem); None entries for a
            variable input size.
        mlp_ratio: a block's own MLP expansion where the family searches it per block
            (EfficientFormerV2); None where the config's single ratio applies.
        attn_stride: 2 for EfficientFormerV2's strided attention (stage 3), else None.

    Other families (EfficientFormerV2, `ef_keras.models.efficientformer_v2.config`) use the
    same record with their own kinds; a kind ending in "stem", "downsample" or "head" names the unit like V1's.
    """

    kind: str
    stage: int
    index: int | None
    cin: int
    cout: int
    grid: tuple
    mlp_ratio: float | None = None
    attn_stride: int | None = None

    @property
    def name(self) -> str:
        """The Keras layer name of this unit in the model (the head: its final norm)."""
        if self.kind.endswith("stem"):
            return "stem"
        if self.kind.endswith("downsample"):
            return f"downsample{self.stage}"
        if self.kind.endswith("head"):
            return "norm"
        if self.kind == "flat" and self.stage == NUM_STAGES - 1:
            return "flat"
        return f"stage{self.stage}_block{self.index}"

    @property
    def reference_prefix(self) -> str:
        """The unit's key prefix in timm's state dict."""
        if self.kind.endswith("stem"):
            return "stem"
        if self.kind.endswith("downsample"):
            return f"stages.{self.stage}.downsample"
        if self.kind.endswith("head"):
            return ""
        return f"stages.{self.stage}.blocks.{self.index}"

    @property
    def out_grid(self) -> tuple:
        """(H, W) of the unit's output."""
        if self.kind.endswith("stem"):
            return tuple(_down(n, STEM_STRIDE) for n in self.grid)
        if self.kind.endswith("downsample"):
            return tuple(_down(n, 2) for n in self.grid)
        return self.grid

    @property
    def attn_grid(self) -> tuple:
        """(H, W) the block's attention runs at: its grid, halved (rounding up) when strided."""
        return tuple(_down(n, self.attn_stride) for n in self.grid) if self.attn_stride else self.grid

    @property
    def tokens(self) -> int | None:
        """H·W at the unit's input (None for a variable size)."""
        h, w = self.grid
        return None if h is None or w is None else h * w


def _down(n, stride):
    """Grid side after `stride` worth of padded 3x3 stride-2 convs (None stays unknown)."""
    if n is None:
        return None
    while stride > 1:
        n, stride = (n + 1) // 2, stride // 2
    return n


@dataclasses.dataclass(frozen=True)
class Layout:
    """An architecture's layout: stage widths and, per stage, its block types in order ("4d"/"3d").

    The one type for "widths plus per-stage block types": `EfficientFormerConfig.layout` gives a
    named architecture's (3D blocks close stage 4), and any supernet sub-network is one (3D
    blocks may also sit in stage 3). The plan walks it, and the latency predictor prices it.

    Example:
        >>> Layout((48, 96, 224, 448), (("4d",) * 3, ("4d",) * 2, ("4d",) * 6, ("4d",) * 3 + ("3d",))).depths
        (3, 2, 6, 4)
    """

    widths: tuple[int, ...]
    stage_blocks: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "stage_blocks", tuple(tuple(b) for b in self.stage_blocks))
        if len(self.widths) != NUM_STAGES or len(self.stage_blocks) != NUM_STAGES:
            raise ConfigError(f"a layout needs {NUM_STAGES} widths and {NUM_STAGES} block lists, got "
                              f"{self.widths} and {len(self.stage_blocks)} lists")
        bad = sorted({b for stage in self.stage_blocks for b in stage} - set(BLOCK_TYPES))
        if bad:
            raise ConfigError(f"block types must be one of {BLOCK_TYPES}, got {bad}")

    @property
    def depths(self) -> tuple[int, ...]:
        """Blocks per stage (Flat excluded)."""
        return tuple(len(stage) for stage in self.stage_blocks)

    def blocks(self, image_size=(224, 224), classes: int = 1000) -> list[Block]:
        """The block plan: every unit of this layout for `image_size` inputs, in order."""
        return list(_walk(self.widths, self.stage_blocks, tuple(image_size), classes))


def plan(widths: Sequence[int], stage_blocks: Sequence[Sequence[str]], image_size=(224, 224),
         classes: int = 1000) -> list[Block]:
    """`Layout(widths, stage_blocks).blocks(image_size, classes)`: every unit, in order.

    Args:
        widths: channels of stages 1-4.
        stage_blocks: per stage, its blocks in order, each "4d" or "3d".
        image_size: (H, W) of the input (entries may be None).
        classes: the head's output width.
    """
    return Layout(widths, stage_blocks).blocks(image_size, classes)


def _walk(widths, stage_blocks, image_size, classes) -> Iterator[Block]:
    stem = Block("stem", 0, None, 3, widths[0], image_size)
    yield stem
    grid, tokens = stem.out_grid, False
    for stage, (width, blocks) in enumerate(zip(widths, stage_blocks)):
        if stage:
            down = Block("downsample", stage, None, widths[stage - 1], width, grid)
            yield down
            grid = down.out_grid
        index = 0
        for kind in blocks:
            if (kind == "3d") != tokens:
                yield Block("flat", stage, index, width, width, grid)
                tokens, index = not tokens, index + 1
            yield Block("meta4d" if kind == "4d" else "meta3d", stage, index, width, width, grid)
            index += 1
        # a stage hands a feature map to the next downsampling; the last one hands tokens to the head
        if tokens != (stage == NUM_STAGES - 1):
            yield Block("flat", stage, index, width, width, grid)
            tokens = not tokens
    yield Block("head", NUM_STAGES - 1, None, widths[-1], classes, grid)


def meta_blocks(blocks: Sequence[Block]) -> list[Block]:
    """The MetaBlocks (4D and 3D) of a plan, in order: what stochastic depth and the search count."""
    return [b for b in blocks if b.kind in ("meta4d", "meta3d")]


def stage_outputs(blocks: Sequence[Block]) -> dict[int, Block]:
    """Stage -> the last unit that runs in that stage (where a feature pyramid taps it).

    A stage's output is what the next downsampling reads; the last stage's output is the
    unit just before the head.
    """
    last: dict[int, Block] = {}
    for b in blocks:
        if b.kind not in ("head", "downsample"):
            last[b.stage] = b
    return last

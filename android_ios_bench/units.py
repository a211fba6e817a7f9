"""The search space and its measured units, each built as a tiny batch-1 Keras model.

A LUT entry times one *unit*: the stem, one downsampling between stages, one 4D or 3D
MetaBlock, the single flatten, or the final norm + heads. Summed along an architecture they
predict its latency (android_ios_bench.predictor.predict). Units are built from the very layers
`ef_keras.EfficientFormer` uses, so what is timed is what the model runs.

The search space (paper §3.3): stage widths 16..max in steps of 16, stage resolutions
input/4 .. input/32 (56/28/14/7 at 224), 4D MetaBlocks in every stage, 3D MetaBlocks in the
last two (the supernet's MetaPaths; deployable models use them only at the end of stage 4).
Downsamplings depend on (Cin, Cout): a full grid would be ~1500 models for L7-sized maxima,
so they are measured on a coarse per-axis grid (cost is ~bilinear in Cin·Cout) and the
predictor interpolates bilinearly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from android_ios_bench.lut import LUTError, unit_key
from ef_keras.models.plan import Block

#: L7's stage widths: the default supernet maximum, so L1/L3/L7 and all smaller models are covered.
DEFAULT_MAX_WIDTHS = (96, 192, 384, 768)
#: The final 3D MetaBlocks sit in stage 4; the supernet also allows them in stage 3.
META3D_STAGES = (2, 3)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What a LUT covers. `to_dict()` is the LUT's / manifest's `search_space` object."""

    input_size: int = 224
    width_step: int = 16
    max_widths: tuple[int, int, int, int] = DEFAULT_MAX_WIDTHS
    mlp_ratio: int = 4
    pool_size: int = 3
    key_dim: int = 32
    num_heads: int = 8
    attn_ratio: int = 4
    classes: int = 1000
    #: measured points per axis of each downsample (Cin, Cout) grid, endpoints included.
    downsample_points: int = 7

    def __post_init__(self):
        object.__setattr__(self, "max_widths", tuple(int(w) for w in self.max_widths))
        if self.input_size <= 0 or self.input_size % 32:
            raise LUTError(f"input size {self.input_size} must be a positive multiple of 32")
        if len(self.max_widths) != 4 or any(w < self.width_step or w % self.width_step for w in self.max_widths):
            raise LUTError(f"max widths {list(self.max_widths)} must be 4 multiples of the width step "
                           f"{self.width_step}")
        if self.downsample_points < 2:
            raise LUTError("downsample_points must be >= 2 (the grid needs both endpoints)")

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self.input_size // s for s in (4, 8, 16, 32))

    @property
    def meta3d_resolutions(self) -> tuple[int, ...]:
        return tuple(self.resolutions[s] for s in META3D_STAGES)

    def widths(self, stage: int) -> list[int]:
        return list(range(self.width_step, self.max_widths[stage] + 1, self.width_step))

    def grid_widths(self, stage: int) -> list[int]:
        """`downsample_points` widths of `stage`, evenly spaced in steps, both ends included."""
        n = self.max_widths[stage] // self.width_step
        idx = np.unique(np.round(np.linspace(1, n, min(n, self.downsample_points))).astype(int))
        return [int(i) * self.width_step for i in idx]

    def downsample_grids(self) -> list[dict[str, Any]]:
        return [{"res": self.resolutions[t - 1], "cin": self.grid_widths(t - 1), "cout": self.grid_widths(t)}
                for t in (1, 2, 3)]

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "width_step": self.width_step, "max_widths": list(self.max_widths),
                "resolutions": list(self.resolutions), "meta3d_resolutions": list(self.meta3d_resolutions),
                "mlp_ratio": self.mlp_ratio, "pool_size": self.pool_size, "key_dim": self.key_dim,
                "num_heads": self.num_heads, "attn_ratio": self.attn_ratio, "classes": self.classes,
                "downsample_grids": self.downsample_grids()}


#: EfficientFormerV2's measured widths per stage: every width of S0/S1/S2/L plus a smaller
#: endpoint, so the four variants are measured exactly and architectures between them interpolate.
V2_WIDTHS = ((16, 32, 40), (32, 48, 64, 80), (64, 96, 120, 144, 192), (128, 176, 224, 288, 384))
#: V2's stages 3-4 end in attention blocks; stage 3's attention is strided (ef_keras.models.efficientformer_v2.config).
V2_ATTENTION_STAGES = (2, 3)


@dataclasses.dataclass(frozen=True)
class V2SearchSpace:
    """What an EfficientFormerV2 LUT covers (`family: "v2"` in its `search_space`).

    V2 has no Flat and no pool mixer: its units are the stem, the stride-2 conv
    downsamplings (stages 1-2, 2-3), the attention downsampling into stage 4, the conv FFN
    block at every stage and expansion ratio, the attention + FFN block in stages 3-4, and
    the BatchNorm + heads. Widths are the per-stage lists in `widths`; downsamplings are
    measured on the full (Cin, Cout) grid of neighbouring lists.
    """

    input_size: int = 224
    widths: tuple = V2_WIDTHS
    mlp_ratios: tuple = (3, 4)
    key_dim: int = 32
    num_heads: int = 8
    attn_ratio: int = 4
    downsample_key_dim: int = 16
    classes: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(tuple(int(w) for w in stage) for stage in self.widths))
        object.__setattr__(self, "mlp_ratios", tuple(int(r) for r in self.mlp_ratios))
        if self.input_size <= 0 or self.input_size % 32:
            raise LUTError(f"input size {self.input_size} must be a positive multiple of 32")
        if len(self.widths) != 4 or any(not stage or any(w % 8 for w in stage) for stage in self.widths):
            raise LUTError(f"V2 widths {self.widths} must be 4 non-empty lists of multiples of 8")

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self.input_size // s for s in (4, 8, 16, 32))

    def downsample_grids(self) -> list[dict[str, Any]]:
        return [{"res": self.resolutions[t - 1], "cin": list(self.widths[t - 1]), "cout": list(self.widths[t])}
                for t in (1, 2, 3)]

    def to_dict(self) -> dict[str, Any]:
        return {"family": "v2", "input_size": self.input_size, "widths": [list(w) for w in self.widths],
                "resolutions": list(self.resolutions), "mlp_ratios": list(self.mlp_ratios), "key_dim": self.key_dim,
                "num_heads": self.num_heads, "attn_ratio": self.attn_ratio,
                "downsample_key_dim": self.downsample_key_dim, "classes": self.classes,
                "downsample_grids": self.downsample_grids()}


def is_v2_space(space) -> bool:
    """Whether a search space (object or dict) is EfficientFormerV2's."""
    return isinstance(space, V2SearchSpace) or (isinstance(space, dict) and space.get("family") == "v2")


@dataclasses.dataclass(frozen=True)
class Unit:
    """One measured unit: its kind and the fields that decide its cost (and its LUT key)."""

    kind: str
    fields: tuple[tuple[str, int], ...]

    @classmethod
    def make(cls, kind: str, **fields: int) -> "Unit":
        return cls(kind, tuple(fields.items()))

    @property
    def unit(self) -> dict[str, int]:
        return dict(self.fields)

    @property
    def key(self) -> str:
        return unit_key(self.kind, **self.unit)

    @property
    def input_shape(self) -> tuple[int, ...]:
        u = self.unit
        if self.kind == "stem":
            return (1, u["res"], u["res"], 3)
        if self.kind == "v2_stem":
            return (1, u["res"], u["res"], 3)
        if self.kind in ("meta3d", "head"):
            return (1, u["res"] * u["res"], u["cin"])
        return (1, u["res"], u["res"], u["cin"])

    def block(self) -> Block:
        """The unit as a block-plan record (stage and index play no part in its cost)."""
        u = self.unit
        strided = self.kind == "v2_attn_ffn" and u["tokens"] != u["res"] * u["res"]
        return Block(self.kind, 0, 0, u["cin"], u["cout"], (u["res"], u["res"]), u.get("mlp_ratio"),
                     2 if strided else None)


def unit_of(block: Block, space) -> Unit:
    """The LUT unit of one block-plan record: the fields its cost depends on.

    `space` is a `SearchSpace`/`V2SearchSpace` or its `to_dict()` (the block hyper-parameters the LUT was
    measured with). The resolution is the block's input grid (the image for the stem).
    """
    s = space.to_dict() if isinstance(space, (SearchSpace, V2SearchSpace)) else space
    fields = {"cin": block.cin, "cout": block.cout, "res": block.grid[0]}
    if block.kind == "meta4d":
        fields.update(mlp_ratio=s["mlp_ratio"], pool_size=s["pool_size"])
    elif block.kind == "meta3d":
        fields.update(tokens=block.tokens, mlp_ratio=s["mlp_ratio"], key_dim=s["key_dim"], num_heads=s["num_heads"],
                      attn_ratio=s["attn_ratio"])
    elif block.kind == "v2_ffn":
        fields.update(mlp_ratio=int(block.mlp_ratio))
    elif block.kind == "v2_attn_ffn":
        h, w = block.attn_grid
        fields.update(tokens=h * w, mlp_ratio=int(block.mlp_ratio), key_dim=s["key_dim"], num_heads=s["num_heads"],
                      attn_ratio=s["attn_ratio"])
    elif block.kind == "v2_attn_downsample":
        fields.update(key_dim=s["downsample_key_dim"], num_heads=s["num_heads"], attn_ratio=s["attn_ratio"])
    return Unit.make(block.kind, **fields)


def search_space_units(space) -> list[Unit]:
    """Every unit of the search space, in a stable order (stem, 4D, downsample, flat, 3D, head)."""
    if isinstance(space, V2SearchSpace):
        return _v2_units(space)
    res = space.resolutions

    def units(kind, stage, widths, cin=None, grid_res=None, cout=None):
        r = res[stage] if grid_res is None else grid_res
        return [unit_of(Block(kind, stage, 0, cin or w, cout or w, (r, r)), space) for w in widths]

    found = units("stem", 0, space.widths(0), cin=3, grid_res=space.input_size)
    for stage in range(4):
        found += units("meta4d", stage, space.widths(stage))
    for grid in space.downsample_grids():
        found += [unit_of(Block("downsample", 1, None, a, b, (grid["res"], grid["res"])), space)
                  for a in grid["cin"] for b in grid["cout"]]
    for stage in META3D_STAGES:
        found += units("flat", stage, space.widths(stage)) + units("meta3d", stage, space.widths(stage))
    found += [unit_of(Block("head", 3, None, w, space.classes, (res[3], res[3])), space) for w in space.widths(3)]
    return found


def _v2_units(space: V2SearchSpace) -> list[Unit]:
    """Every unit of a V2 search space: stem, FFN blocks, attention blocks, downsamplings, heads."""
    res, w = space.resolutions, space.widths
    found = [unit_of(Block("v2_stem", 0, None, 3, c, (space.input_size,) * 2), space) for c in w[0]]
    for stage in range(4):
        found += [unit_of(Block("v2_ffn", stage, 0, c, c, (res[stage],) * 2, r), space)
                  for c in w[stage] for r in space.mlp_ratios]
    for stage in V2_ATTENTION_STAGES:
        stride = 2 if stage == V2_ATTENTION_STAGES[0] else None
        found += [unit_of(Block("v2_attn_ffn", stage, 0, c, c, (res[stage],) * 2, r, stride), space)
                  for c in w[stage] for r in space.mlp_ratios]
    for t, grid in enumerate(space.downsample_grids(), start=1):
        kind = "v2_attn_downsample" if t == 3 else "v2_downsample"
        found += [unit_of(Block(kind, t, None, a, b, (grid["res"],) * 2), space)
                  for a in grid["cin"] for b in grid["cout"]]
    found += [unit_of(Block("v2_head", 3, None, c, space.classes, (res[3],) * 2), space) for c in w[3]]
    return found


def build_unit(unit: Unit):
    """The unit as a batch-1 Keras model, built by the same factory `ef_keras.EfficientFormer` uses."""
    import keras

    from ef_keras import layers as L
    from ef_keras.models.efficientformer.config import EfficientFormerConfig
    from ef_keras.models.efficientformer.model import block_layer

    u = unit.unit
    inputs = keras.Input(batch_shape=unit.input_shape, name="x")
    if unit.kind.startswith("v2_"):
        return keras.Model(inputs, _v2_unit_output(unit, inputs), name=unit.key.replace("-", "_"))
    if unit.kind == "head":
        x = keras.layers.LayerNormalization(epsilon=L.LN_EPSILON, name="norm")(inputs)
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(x)
        head = keras.layers.Dense(u["cout"], name="head")(pooled)
        dist = keras.layers.Dense(u["cout"], name="head_dist")(pooled)
        x = keras.layers.Average(name="head_average")([head, dist])
    else:
        hyper = {k: u[k] for k in ("mlp_ratio", "pool_size", "key_dim", "num_heads", "attn_ratio") if k in u}
        config = EfficientFormerConfig(widths=(8, 8, 8, 8), depths=(0, 0, 0, 0), num_vit=0, **hyper)
        try:
            layer = block_layer(unit.block(), config, name=unit.kind)
        except ValueError as e:
            raise LUTError(f"cannot build unit kind {unit.kind!r}") from e
        x = layer(inputs)
    return keras.Model(inputs, x, name=unit.key.replace("-", "_"))


def _v2_unit_output(unit: Unit, inputs):
    """A V2 unit on `inputs`, built by `ef_keras.models.efficientformer_v2.model`'s factory (the head as the model's top)."""
    import dataclasses as dc

    import keras

    from ef_keras import layers as L
    from ef_keras.models.efficientformer_v2.config import V2_VARIANTS
    from ef_keras.models.efficientformer_v2.model import block_layer as block_layer_v2

    u = unit.unit
    if unit.kind == "v2_head":
        x = keras.layers.BatchNormalization(epsilon=L.BN_EPSILON, momentum=L.BN_MOMENTUM, name="norm")(inputs)
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        head = keras.layers.Dense(u["cout"], name="head")(pooled)
        dist = keras.layers.Dense(u["cout"], name="head_dist")(pooled)
        return keras.layers.Average(name="head_average")([head, dist])
    hyper = {k: u[k] for k in ("key_dim", "num_heads", "attn_ratio") if k in u}
    if unit.kind == "v2_attn_downsample":
        hyper["downsample_key_dim"] = hyper.pop("key_dim")
    config = dc.replace(V2_VARIANTS["s0"], **hyper)  # only the block hyper-parameters are read
    return block_layer_v2(unit.block(), config, name=unit.kind)(inputs)

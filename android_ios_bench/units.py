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
        if self.kind in ("meta3d", "head"):
            return (1, u["res"] * u["res"], u["cin"])
        return (1, u["res"], u["res"], u["cin"])


def search_space_units(space: SearchSpace) -> list[Unit]:
    """Every unit of the search space, in a stable order (stem, 4D, downsample, flat, 3D, head)."""
    s, res = space, space.resolutions
    units = [Unit.make("stem", cin=3, cout=w, res=s.input_size) for w in s.widths(0)]
    for stage in range(4):
        units += [Unit.make("meta4d", cin=w, cout=w, res=res[stage], mlp_ratio=s.mlp_ratio, pool_size=s.pool_size)
                  for w in s.widths(stage)]
    for grid in s.downsample_grids():
        units += [Unit.make("downsample", cin=a, cout=b, res=grid["res"]) for a in grid["cin"] for b in grid["cout"]]
    for stage in META3D_STAGES:
        units += [Unit.make("flat", cin=w, cout=w, res=res[stage]) for w in s.widths(stage)]
        units += [Unit.make("meta3d", cin=w, cout=w, res=res[stage], tokens=res[stage] ** 2, mlp_ratio=s.mlp_ratio,
                            key_dim=s.key_dim, num_heads=s.num_heads, attn_ratio=s.attn_ratio)
                  for w in s.widths(stage)]
    units += [Unit.make("head", cin=w, cout=s.classes, res=res[3]) for w in s.widths(3)]
    return units


def build_unit(unit: Unit):
    """The unit as a batch-1 Keras model with the same layers and arguments EfficientFormer uses."""
    import keras

    from ef_keras import layers as L

    u = unit.unit
    inputs = keras.Input(batch_shape=unit.input_shape, name="x")
    if unit.kind == "stem":
        x = L.Stem(u["cout"], name="stem")(inputs)
    elif unit.kind == "downsample":
        x = L.Downsample(u["cout"], name="downsample")(inputs)
    elif unit.kind == "meta4d":
        x = L.Meta4D(u["cin"], u["mlp_ratio"], u["pool_size"], name="meta4d")(inputs)
    elif unit.kind == "flat":
        x = L.Flat(name="flat")(inputs)
    elif unit.kind == "meta3d":
        x = L.Meta3D(u["cin"], (u["res"], u["res"]), u["mlp_ratio"], u["key_dim"], u["num_heads"],
                     u["attn_ratio"], name="meta3d")(inputs)
    elif unit.kind == "head":
        x = keras.layers.LayerNormalization(epsilon=L.LN_EPSILON, name="norm")(inputs)
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(x)
        head = keras.layers.Dense(u["cout"], name="head")(pooled)
        dist = keras.layers.Dense(u["cout"], name="head_dist")(pooled)
        x = keras.layers.Average(name="head_average")([head, dist])
    else:
        raise LUTError(f"cannot build unit kind {unit.kind!r}")
    return keras.Model(inputs, x, name=unit.key.replace("-", "_"))

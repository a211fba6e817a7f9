"""The search space and its measured units, each built as a tiny batch-1 Keras model.

A LUT entry times one *unit*: the stem, one downsampling between stages, one 4D or 3D
MetaBlock, the single flatten, or the final norm + heads. Summed along an architecture they
predict its latency (android_ios_bench.predictor.predict). Units are built from the very layers
`ef_keras.EfficientFormer` uses, so what is timed is what the model runs.

The default space is the one the search moves in (agreed with `search/`, which imports it from
here): stage widths from `DEFAULT_MIN_WIDTHS` to `DEFAULT_MAX_WIDTHS` in steps of 16 at 224x224
(stage grids 56/28/14/7), 4D MetaBlocks in every stage and 3D MetaBlocks closing stage 4. Every
unit of that grid is measured, every downsampling (Cin, Cout) pair included, so a prediction
inside the space interpolates nothing. The named variants (`named`: L1, L3, L7) are measured too,
at their own widths and downsampling pairs, so the reference models outside the grid (L3's 320,
L7's 768) are exact as well; the LUT's `search_space.widths` lists every measured width.

How units are timed (`measurement.method` of a LUT, `METHODS`):

- "in_rotation" (the host harness' default): every unit alone, timed in one rotation with every
  other unit and the whole reference models, all loaded at once and invoked once per round in a
  shuffled order. Each unit then runs with the caches the way hundreds of other models left
  them, as it does inside a network, and every model samples the same mixture of background
  load over the session.
- "in_context": the unit after its natural predecessor (`context_unit`) minus the predecessor
  alone, both from one rotation (the idea behind nn-Meter's kernel-level prediction: no
  per-invoke overhead of its own, its input just written by the previous op).
- "isolated": every unit alone in small groups or one process per model (phone tools, and
  host LUTs before methods were recorded).

On this host, in one session (`benchmarks/lut_validation.py`), summing units timed in rotation
predicted whole models best: differencing adds a second timing's noise to every entry, more than
the per-invoke cost it removes, and small groups kept caches warm that a network leaves cold.
The README's latency-table section has the figures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from android_ios_bench.lut import LUTError, unit_key
from ef_keras.models.plan import Block

#: The search's space, agreed with search/ (issue 18): stage widths from DEFAULT_MIN_WIDTHS to
#: DEFAULT_MAX_WIDTHS in steps of DEFAULT_WIDTH_STEP. Depths are no LUT matter; the supernet's
#: maximum depths are kept here beside them because the reference models sample from them.
DEFAULT_MIN_WIDTHS = (32, 64, 128, 256)
DEFAULT_MAX_WIDTHS = (64, 128, 256, 512)
DEFAULT_WIDTH_STEP = 16
SUPERNET_MAX_DEPTHS = (4, 3, 6, 4)
#: Named variants measured beside the grid at their own widths (reference models).
DEFAULT_NAMED = ("l1", "l3", "l7")
#: 3D MetaBlocks close stage 4 in every architecture the search builds (index into the stages).
META3D_STAGES = (3,)
#: How a LUT's units were timed (`measurement.method` in the LUT; the module docstring).
ROTATION_METHOD = "in_rotation"
CONTEXT_METHOD = "in_context"
ISOLATED_METHOD = "isolated"
METHODS = (ROTATION_METHOD, CONTEXT_METHOD, ISOLATED_METHOD)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What a LUT covers. `to_dict()` is the LUT's / manifest's `search_space` object.

    Every width from `min_widths` to `max_widths` in steps of `width_step` is measured at its
    stage's resolution, with every downsampling pair between neighbouring stages' grids, plus
    the widths and downsampling pairs of the `named` variants (measured exactly, no grid).
    """

    input_size: int = 224
    width_step: int = DEFAULT_WIDTH_STEP
    min_widths: tuple[int, int, int, int] = DEFAULT_MIN_WIDTHS
    max_widths: tuple[int, int, int, int] = DEFAULT_MAX_WIDTHS
    named: tuple[str, ...] = DEFAULT_NAMED
    #: stages (0-3) whose 3D MetaBlocks (and flatten) are measured: stage 4 in everything the
    #: search builds; a supernet layout with 3D blocks in stage 3 needs (2, 3).
    meta3d_stages: tuple[int, ...] = META3D_STAGES
    mlp_ratio: int = 4
    pool_size: int = 3
    key_dim: int = 32
    num_heads: int = 8
    attn_ratio: int = 4
    classes: int = 1000

    def __post_init__(self):
        for name in ("min_widths", "max_widths"):
            object.__setattr__(self, name, tuple(int(w) for w in getattr(self, name)))
        object.__setattr__(self, "named", tuple(self.named))
        object.__setattr__(self, "meta3d_stages", tuple(int(s) for s in self.meta3d_stages))
        if not self.meta3d_stages or any(s not in (0, 1, 2, 3) for s in self.meta3d_stages) or 3 not in \
                self.meta3d_stages:
            raise LUTError(f"meta3d stages {list(self.meta3d_stages)} must be stage indices 0-3 including 3 "
                           "(every network ends in 3D blocks or its flatten in stage 4)")
        if self.input_size <= 0 or self.input_size % 32:
            raise LUTError(f"input size {self.input_size} must be a positive multiple of 32")
        for name in ("min_widths", "max_widths"):
            widths = getattr(self, name)
            if len(widths) != 4 or any(w < self.width_step or w % self.width_step for w in widths):
                raise LUTError(f"{name.replace('_', ' ')} {list(widths)} must be 4 multiples of the width step "
                               f"{self.width_step}")
        if any(lo > hi for lo, hi in zip(self.min_widths, self.max_widths)):
            raise LUTError(f"min widths {list(self.min_widths)} exceed max widths {list(self.max_widths)} "
                           "in some stage")
        for config in self.named_configs():
            for field in ("mlp_ratio", "pool_size", "key_dim", "num_heads", "attn_ratio"):
                if getattr(config, field) != getattr(self, field):
                    raise LUTError(f"named variant {config.name} has {field}={getattr(config, field)}, the space "
                                   f"{getattr(self, field)}; drop it from `named`")

    def named_configs(self) -> list:
        from ef_keras.models.efficientformer.config import VARIANTS

        unknown = [n for n in self.named if n not in VARIANTS]
        if unknown:
            raise LUTError(f"unknown named variant(s) {unknown}; choose from {sorted(VARIANTS)}")
        return [VARIANTS[n] for n in self.named]

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self.input_size // s for s in (4, 8, 16, 32))

    @property
    def meta3d_resolutions(self) -> tuple[int, ...]:
        return tuple(self.resolutions[s] for s in self.meta3d_stages)

    def search_widths(self, stage: int) -> list[int]:
        """The search's grid of `stage`: min to max width in steps of `width_step`."""
        return list(range(self.min_widths[stage], self.max_widths[stage] + 1, self.width_step))

    def widths(self, stage: int) -> list[int]:
        """Every width measured in `stage`: the search's grid plus the named variants' widths."""
        return sorted(set(self.search_widths(stage)) | {c.widths[stage] for c in self.named_configs()})

    def downsample_grids(self) -> list[dict[str, Any]]:
        """Per downsampling t = 1..3: the measured (Cin, Cout) grid and the named pairs outside it."""
        grids = []
        for t in (1, 2, 3):
            cin, cout = self.search_widths(t - 1), self.search_widths(t)
            pairs = sorted({(c.widths[t - 1], c.widths[t]) for c in self.named_configs()}
                           - {(a, b) for a in cin for b in cout})
            grids.append({"res": self.resolutions[t - 1], "cin": cin, "cout": cout,
                          "pairs": [list(p) for p in pairs]})
        return grids

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "width_step": self.width_step, "min_widths": list(self.min_widths),
                "max_widths": list(self.max_widths), "widths": [self.widths(s) for s in range(4)],
                "named": list(self.named), "resolutions": list(self.resolutions),
                "meta3d_resolutions": list(self.meta3d_resolutions), "mlp_ratio": self.mlp_ratio,
                "pool_size": self.pool_size, "key_dim": self.key_dim, "num_heads": self.num_heads,
                "attn_ratio": self.attn_ratio, "classes": self.classes,
                "downsample_grids": self.downsample_grids()}


#: The search's default space (the default LUT's): the one place it is defined.
DEFAULT_SPACE = SearchSpace()


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

    def units(kind, stage, cin=None, grid_res=None, cout=None):
        r = res[stage] if grid_res is None else grid_res
        return [unit_of(Block(kind, stage, 0, cin or w, cout or w, (r, r)), space) for w in space.widths(stage)]

    found = units("stem", 0, cin=3, grid_res=space.input_size)
    for stage in range(4):
        found += units("meta4d", stage)
    for grid in space.downsample_grids():
        pairs = [(a, b) for a in grid["cin"] for b in grid["cout"]] + [tuple(p) for p in grid["pairs"]]
        found += [unit_of(Block("downsample", 1, None, a, b, (grid["res"], grid["res"])), space) for a, b in pairs]
    for stage in space.meta3d_stages:
        found += units("flat", stage) + units("meta3d", stage)
    found += units("head", 3, cout=space.classes)
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


def context_unit(unit: Unit, space) -> Unit | None:
    """The unit whose output `unit` reads inside a network, timed before it for the in-context cost.

    None for the stems (they run first). Otherwise a block at the unit's input width and grid:
    a 3D MetaBlock for units that read tokens (3D blocks, the head), a 4D MetaBlock for the
    rest (4D blocks, downsamplings, the flatten); in V2 the conv FFN block at the largest ratio.
    The context is itself a unit of the space, so it is measured alone too.
    """
    if unit.kind in ("stem", "v2_stem"):
        return None
    s = space.to_dict() if isinstance(space, (SearchSpace, V2SearchSpace)) else space
    u = unit.unit
    grid = (u["res"], u["res"])
    if unit.kind.startswith("v2_"):
        return unit_of(Block("v2_ffn", 0, 0, u["cin"], u["cin"], grid, max(s["mlp_ratios"])), s)
    kind = "meta3d" if unit.kind in ("meta3d", "head") else "meta4d"
    return unit_of(Block(kind, 0, 0, u["cin"], u["cin"], grid), s)


def context_key(unit: Unit) -> str:
    """The manifest key of `unit` timed after its context unit (kind "context")."""
    return f"{unit.key}.ctx"


def build_unit(unit: Unit, context: Unit | None = None):
    """The unit as a batch-1 Keras model, built by the same factory `ef_keras.EfficientFormer` uses.

    With `context`, the model runs the context unit first and feeds its output to `unit`.
    """
    import keras

    first = context or unit
    inputs = keras.Input(batch_shape=first.input_shape, name="x")
    x = inputs
    if context is not None:
        x = _unit_output(context, x, prefix="context_")
    x = _unit_output(unit, x)
    name = unit.key if context is None else context_key(unit)
    return keras.Model(inputs, x, name=name.replace("-", "_").replace(".", "_"))


def _unit_output(unit: Unit, x, prefix: str = ""):
    """`unit` applied to the tensor `x` (layer names start with `prefix`)."""
    import keras

    from ef_keras import layers as L
    from ef_keras.models.efficientformer.config import EfficientFormerConfig
    from ef_keras.models.efficientformer.model import block_layer

    u = unit.unit
    if unit.kind.startswith("v2_"):
        return _v2_unit_output(unit, x, prefix)
    if unit.kind == "head":
        x = keras.layers.LayerNormalization(epsilon=L.LN_EPSILON, name=prefix + "norm")(x)
        pooled = keras.layers.GlobalAveragePooling1D(name=prefix + "pool")(x)
        head = keras.layers.Dense(u["cout"], name=prefix + "head")(pooled)
        dist = keras.layers.Dense(u["cout"], name=prefix + "head_dist")(pooled)
        return keras.layers.Average(name=prefix + "head_average")([head, dist])
    hyper = {k: u[k] for k in ("mlp_ratio", "pool_size", "key_dim", "num_heads", "attn_ratio") if k in u}
    config = EfficientFormerConfig(widths=(8, 8, 8, 8), depths=(0, 0, 0, 0), num_vit=0, **hyper)
    try:
        layer = block_layer(unit.block(), config, name=prefix + unit.kind)
    except ValueError as e:
        raise LUTError(f"cannot build unit kind {unit.kind!r}") from e
    return layer(x)


def _v2_unit_output(unit: Unit, inputs, prefix: str = ""):
    """A V2 unit on `inputs`, built by `ef_keras.models.efficientformer_v2.model`'s factory (the head as the model's top)."""
    import dataclasses as dc

    import keras

    from ef_keras import layers as L
    from ef_keras.models.efficientformer_v2.config import V2_VARIANTS
    from ef_keras.models.efficientformer_v2.model import block_layer as block_layer_v2

    u = unit.unit
    if unit.kind == "v2_head":
        x = keras.layers.BatchNormalization(epsilon=L.BN_EPSILON, momentum=L.BN_MOMENTUM, name=prefix + "norm")(inputs)
        pooled = keras.layers.GlobalAveragePooling2D(name=prefix + "pool")(x)
        head = keras.layers.Dense(u["cout"], name=prefix + "head")(pooled)
        dist = keras.layers.Dense(u["cout"], name=prefix + "head_dist")(pooled)
        return keras.layers.Average(name=prefix + "head_average")([head, dist])
    hyper = {k: u[k] for k in ("key_dim", "num_heads", "attn_ratio") if k in u}
    if unit.kind == "v2_attn_downsample":
        hyper["downsample_key_dim"] = hyper.pop("key_dim")
    config = dc.replace(V2_VARIANTS["s0"], **hyper)  # only the block hyper-parameters are read
    return block_layer_v2(unit.block(), config, name=prefix + unit.kind)(inputs)

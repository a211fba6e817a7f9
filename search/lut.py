"""Latency prediction from a measured lookup table: sum of per-unit latencies along an architecture.

    from search.lut import predict
    p = predict("l1")                # embedded host LUT (LiteRT/XNNPACK, 2 threads, fp32)
    p.ms, p.sum_ms, p.interpolated   # prediction, plain sum, what had to be interpolated

An architecture is walked as the units the LUT measured (android_ios_bench.units): stem,
per stage its downsampling and MetaBlocks, the 4D->3D flatten, the final norm + heads.
Widths between measured ones are interpolated linearly (4D/3D blocks, stem, flatten, head)
or bilinearly over the (Cin, Cout) grid (downsampling, measured on a coarse grid), and every
such use is reported. Widths beyond the LUT, or a resolution it lacks, raise
LUTCoverageError instead of extrapolating. If the LUT carries a fitted `overhead`
(benchmarks/lut_validation.py), the prediction is `scale * sum + per_model_ms`.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
from collections import Counter
from typing import Any

from android_ios_bench.lut import LUTCoverageError, LUTError, load_default_lut, load_lut, unit_key

BLOCK_TYPES = ("4d", "3d")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Any supernet sub-network: stage widths and, per stage, its blocks in order ("4d"/"3d").

    3D blocks may sit in stages 3-4 (the supernet's MetaPaths); every switch between 4D
    feature maps and 3D tokens costs one reshape (the LUT's `flat` entry at that resolution),
    and the network always ends in 3D (the final norm + heads work on tokens).
    """

    widths: tuple[int, ...]
    blocks: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(tuple(b) for b in self.blocks))
        if len(self.widths) != 4 or len(self.blocks) != 4:
            raise LUTError(f"a layout needs 4 widths and 4 block lists, got {self.widths} and {len(self.blocks)} lists")
        bad = {b for stage in self.blocks for b in stage} - set(BLOCK_TYPES)
        if bad:
            raise LUTError(f"block types must be '4d' or '3d', got {sorted(bad)}")

    @classmethod
    def from_config(cls, config) -> "Layout":
        """The canonical layout of an EfficientFormerConfig: 3D blocks close stage 4."""
        blocks = [("4d",) * d for d in config.depths[:3]]
        blocks.append(("4d",) * config.num_4d_last + ("3d",) * config.num_vit)
        return cls(config.widths, tuple(blocks))


@dataclasses.dataclass(frozen=True)
class UnitCost:
    """One distinct unit of the architecture: LUT key, how often it occurs and its cost."""

    key: str
    kind: str
    count: int
    ms_each: float
    ms_total: float
    interpolated: bool


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted latency (ms) on the LUT's device; `sum_ms` is the plain per-unit sum."""

    ms: float
    sum_ms: float
    overhead_ms: float
    per_unit: tuple[UnitCost, ...]
    interpolated: tuple[str, ...]

    def by_kind(self) -> dict[str, float]:
        """Summed ms per unit kind (stem, downsample, meta4d, flat, meta3d, head)."""
        out: dict[str, float] = {}
        for u in self.per_unit:
            out[u.kind] = out.get(u.kind, 0.0) + u.ms_total
        return out


class _Index:
    """Fast lookups into one LUT document: per (kind, res, hyper-parameters) sorted widths."""

    def __init__(self, doc: dict, statistic: str = "median_ms"):
        self.doc = doc
        self.space = doc["search_space"]
        self.lines: dict[tuple, dict[int, float]] = {}
        self.grids: dict[int, dict[tuple[int, int], float]] = {}
        for entry in doc["entries"].values():
            kind, ms = entry["kind"], entry.get(statistic)
            if ms is None:
                raise LUTError(f"LUT entry of kind {kind} at res {entry.get('res')} has no {statistic}; "
                               "use statistic='median_ms'")
            if kind == "downsample":
                self.grids.setdefault(entry["res"], {})[(entry["cin"], entry["cout"])] = ms
            elif kind in ("stem", "meta4d", "flat", "meta3d", "head"):
                width = entry["cout"] if kind == "stem" else entry["cin"]
                self.lines.setdefault(self._line(kind, entry), {})[width] = ms
        self.sorted = {k: sorted(v) for k, v in self.lines.items()}
        self.grid_axes = {r: (sorted({a for a, _ in g}), sorted({b for _, b in g})) for r, g in self.grids.items()}

    @staticmethod
    def _line(kind: str, f: dict) -> tuple:
        extra = {"meta4d": ("mlp_ratio", "pool_size"), "meta3d": ("mlp_ratio", "key_dim", "num_heads", "attn_ratio"),
                 "head": ("cout",)}.get(kind, ())
        return (kind, f["res"]) + tuple(f[name] for name in extra)

    def line(self, kind: str, width: int, notes: list, **f) -> tuple[float, bool]:
        """Latency of a single-width unit, linear between the nearest measured widths."""
        values = self.lines.get(self._line(kind, f))
        if not values:
            raise LUTCoverageError(f"the LUT has no {kind} entries at resolution {f['res']}; "
                                   "measure a LUT for this search space")
        if width in values:
            return values[width], False
        xs = self.sorted[self._line(kind, f)]
        i = bisect.bisect_left(xs, width)
        if i == 0 or i == len(xs):
            raise LUTCoverageError(f"{kind} width {width} at resolution {f['res']} is outside the LUT's measured "
                                   f"widths {xs[0]}..{xs[-1]}; use a LUT with larger max widths")
        lo, hi = xs[i - 1], xs[i]
        t = (width - lo) / (hi - lo)
        notes.append(f"{kind} c={width} r={f['res']}: linear between c={lo} and c={hi}")
        return (1 - t) * values[lo] + t * values[hi], True

    def downsample(self, cin: int, cout: int, res: int, notes: list) -> tuple[float, bool]:
        """Latency of a downsampling, bilinear on the measured (Cin, Cout) grid."""
        grid = self.grids.get(res)
        if not grid:
            raise LUTCoverageError(f"the LUT has no downsample entries at resolution {res}")
        if (cin, cout) in grid:
            return grid[(cin, cout)], False
        xs, ys = self.grid_axes[res]
        (a0, a1, ta), (b0, b1, tb) = _bracket(xs, cin, "input", res), _bracket(ys, cout, "output", res)
        try:
            value = ((1 - ta) * (1 - tb) * grid[(a0, b0)] + ta * (1 - tb) * grid[(a1, b0)]
                     + (1 - ta) * tb * grid[(a0, b1)] + ta * tb * grid[(a1, b1)])
        except KeyError as e:
            raise LUTCoverageError(f"downsample grid at resolution {res} lacks the point {e.args[0]}; "
                                   "re-run the harness to complete the LUT") from None
        span = lambda lo, hi: f"[{lo},{hi}]" if lo != hi else f"={lo}"  # noqa: E731
        notes.append(f"downsample {cin}->{cout} r={res}: bilinear on grid cin{span(a0, a1)} x cout{span(b0, b1)}")
        return value, True


def _bracket(xs: list[int], x: int, what: str, res: int) -> tuple[int, int, float]:
    if x in xs:
        return x, x, 0.0
    i = bisect.bisect_left(xs, x)
    if i == 0 or i == len(xs):
        raise LUTCoverageError(f"downsample {what} width {x} at resolution {res} is outside the LUT's grid "
                               f"{xs[0]}..{xs[-1]}; use a LUT with larger max widths")
    return xs[i - 1], xs[i], (x - xs[i - 1]) / (xs[i] - xs[i - 1])


_INDEXES: dict[tuple[int, str], _Index] = {}
STATISTICS = ("median_ms", "p10_ms", "min_ms", "mean_ms")


def _index(doc: dict, statistic: str) -> _Index:
    cached = _INDEXES.get((id(doc), statistic))
    if cached is None or cached.doc is not doc:
        cached = _INDEXES[(id(doc), statistic)] = _Index(doc, statistic)
    return cached


@functools.lru_cache(maxsize=1)
def _default_lut() -> dict:
    return load_default_lut()


def resolve_lut(lut: Any) -> dict:
    """A validated LUT document from None (embedded default), a path or a dict (validated once)."""
    if lut is None:
        return _default_lut()
    if isinstance(lut, (str, os.PathLike)):
        return _load_path(os.path.abspath(os.fspath(lut)), os.path.getmtime(lut) if os.path.exists(lut) else 0)
    if isinstance(lut, dict):
        if (id(lut), "median_ms") not in _INDEXES:
            load_lut(lut)
        return lut
    raise LUTError(f"lut must be None, a path or a LUT dict, got {type(lut).__name__}")


@functools.lru_cache(maxsize=8)
def _load_path(path: str, mtime: float) -> dict:
    return load_lut(path)


def _layout_and_params(config, space: dict) -> Layout:
    if isinstance(config, Layout):
        return config
    from ef_keras.config import EfficientFormerConfig, get_config
    if isinstance(config, dict):
        config = EfficientFormerConfig.from_dict(config)
    config = get_config(config)
    for name in ("mlp_ratio", "pool_size", "key_dim", "num_heads", "attn_ratio"):
        if getattr(config, name) != space[name]:
            raise LUTCoverageError(f"the architecture has {name}={getattr(config, name)} but the LUT was measured "
                                   f"with {name}={space[name]}; measure a LUT with that setting")
    return Layout.from_config(config)


def layout_units(layout: Layout, space: dict) -> list[tuple[str, dict]]:
    """The (kind, fields) of every unit along `layout`, in execution order."""
    res, w = space["resolutions"], layout.widths
    m4 = {"mlp_ratio": space["mlp_ratio"], "pool_size": space["pool_size"]}
    m3 = {"mlp_ratio": space["mlp_ratio"], "key_dim": space["key_dim"], "num_heads": space["num_heads"],
          "attn_ratio": space["attn_ratio"]}
    units = [("stem", {"cin": 3, "cout": w[0], "res": space["input_size"]})]
    tokens = False
    for s in range(4):
        if s:
            if tokens:  # back to a feature map before the strided conv
                units.append(("flat", {"cin": w[s - 1], "cout": w[s - 1], "res": res[s - 1]}))
                tokens = False
            units.append(("downsample", {"cin": w[s - 1], "cout": w[s], "res": res[s - 1]}))
        for block in layout.blocks[s]:
            if (block == "3d") != tokens:
                units.append(("flat", {"cin": w[s], "cout": w[s], "res": res[s]}))
                tokens = not tokens
            if block == "4d":
                units.append(("meta4d", {"cin": w[s], "cout": w[s], "res": res[s], **m4}))
            else:
                units.append(("meta3d", {"cin": w[s], "cout": w[s], "res": res[s], "tokens": res[s] ** 2, **m3}))
    if not tokens:
        units.append(("flat", {"cin": w[3], "cout": w[3], "res": res[3]}))
    units.append(("head", {"cin": w[3], "cout": space["classes"], "res": res[3]}))
    return units


def predict(config, lut=None, *, input_size: int = 224, overhead: bool = True,
            statistic: str = "median_ms") -> Prediction:
    """Predicted latency of an architecture on the LUT's device.

    Args:
        config: an EfficientFormerConfig, "l1"/"l3"/"l7", an architecture dict or JSON path,
            or a `Layout` (any supernet sub-network, 3D blocks allowed in stages 3-4).
        lut: a LUT dict, a LUT path, or None for the embedded default (host, fp32, 2 threads).
        input_size: the deployment resolution; a LUT measured at another one is refused.
        overhead: apply the LUT's fitted `overhead` (if any); `sum_ms` is always the plain sum.
        statistic: which per-unit statistic to sum: "median_ms" (default) or, on a loaded shared
            machine where medians absorb contention, a low percentile "p10_ms" / "min_ms".

    Raises:
        LUTCoverageError: the LUT lacks a width, resolution or hyper-parameter the architecture needs.
    """
    doc = resolve_lut(lut)
    space = doc["search_space"]
    if space["input_size"] != input_size:
        raise LUTCoverageError(f"the LUT was measured for {space['input_size']}x{space['input_size']} inputs, not "
                               f"{input_size}x{input_size}; pass a LUT measured at that resolution")
    layout = _layout_and_params(config, space)
    for s, blocks in enumerate(layout.blocks):
        if "3d" in blocks and space["resolutions"][s] not in space["meta3d_resolutions"]:
            raise LUTCoverageError(f"stage {s + 1} has 3D MetaBlocks but the LUT measured them only at resolutions "
                                   f"{space['meta3d_resolutions']} (the supernet allows them in stages 3-4)")
    if statistic not in STATISTICS:
        raise LUTError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    index = _index(doc, statistic)
    notes: list[str] = []
    counts = Counter()
    costs: dict[str, tuple[str, float, bool]] = {}
    for kind, fields in layout_units(layout, space):
        key = unit_key(kind, **fields)
        counts[key] += 1
        if key in costs:
            continue
        if kind == "downsample":
            ms, interp = index.downsample(fields["cin"], fields["cout"], fields["res"], notes)
        else:
            width = fields["cout"] if kind == "stem" else fields["cin"]
            ms, interp = index.line(kind, width, notes, **fields)
        costs[key] = (kind, ms, interp)
    per_unit = tuple(UnitCost(k, costs[k][0], n, costs[k][1], costs[k][1] * n, costs[k][2]) for k, n in counts.items())
    total = sum(u.ms_total for u in per_unit)
    fit = doc.get("overhead") if overhead else None
    ms = fit["scale"] * total + fit["per_model_ms"] if fit else total
    return Prediction(ms=ms, sum_ms=total, overhead_ms=ms - total, per_unit=per_unit, interpolated=tuple(notes))

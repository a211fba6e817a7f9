"""The latency model: per-unit LUT sums along an architecture, a fitted correction, and drift.

    from android_ios_bench.predictor import predict
    p = predict("l1")                # embedded host LUT (LiteRT/XNNPACK, 2 threads, fp32)
    p.ms, p.sum_ms, p.interpolated   # prediction, plain sum, what had to be interpolated
    predict(config, lut, exact=True) # what the search calls: refuses any width the LUT did not measure

This module is the one place the latency model lives: the LUT format is
`android_ios_bench.lut`, the units `android_ios_bench.units`, the correction
`android_ios_bench.correction`, and the search imports its predictions from here.

An architecture is walked as the units the LUT measured (android_ios_bench.units): stem,
per stage its downsampling and MetaBlocks, the 4D->3D flatten, the final norm + heads. The
default LUT measures every unit of the search's grid, so predictions inside it interpolate
nothing. A LUT from another harness may be sparser: widths between measured ones are then
interpolated linearly (4D/3D blocks, stem, flatten, head) or bilinearly on a measured (Cin,
Cout) rectangle (downsampling), and every such use is reported; `exact=True` refuses them
instead, naming the unit and the LUT's grid there. Widths beyond the LUT, or a resolution it
lacks, always raise LUTCoverageError instead of extrapolating.

Correction: the LUT's `correction` (`android_ios_bench.correction`) maps the plain sum to
whole-model latency; it was chosen on whole models *and* on measured single-action
Δ-latencies, so it is the one slimming may rank actions with. `predict` applies it with the
statistic it was fitted on as the default.

Drift: the reference models' timings are stored with the LUT, so re-timing them later
(`python -m android_ios_bench.host --check-lut LUT`) gives today's scale of the device
against the day the LUT was measured (`drift_scale`).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
from collections import Counter
from typing import Any, Iterable

import numpy as np

from android_ios_bench.lut import LUTCoverageError, LUTError, load_default_lut, load_lut, method_of, unit_key
from android_ios_bench.units import is_v2_space, unit_of
from ef_keras.models.plan import Layout
from ef_keras.registry import architecture, family_of


#: Unit kinds whose cost is looked up along one width (linear between measured widths):
#: kind -> (the width field, the fields that must match exactly besides the resolution).
LINE_KINDS = {"stem": ("cout", ()), "meta4d": ("cin", ("mlp_ratio", "pool_size")), "flat": ("cin", ()),
              "meta3d": ("cin", ("mlp_ratio", "key_dim", "num_heads", "attn_ratio")), "head": ("cin", ("cout",)),
              "v2_stem": ("cout", ()), "v2_ffn": ("cin", ("mlp_ratio",)),
              "v2_attn_ffn": ("cin", ("tokens", "mlp_ratio", "key_dim", "num_heads", "attn_ratio")),
              "v2_head": ("cin", ("cout",))}
#: Unit kinds measured on a (Cin, Cout) grid and interpolated bilinearly.
GRID_KINDS = ("downsample", "v2_downsample", "v2_attn_downsample")


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
    correction_ms: float
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
            if kind in GRID_KINDS:
                self.grids.setdefault((kind, entry["res"]), {})[(entry["cin"], entry["cout"])] = ms
            elif kind in LINE_KINDS:
                self.lines.setdefault(self._line(kind, entry), {})[entry[LINE_KINDS[kind][0]]] = ms
        self.sorted = {k: sorted(v) for k, v in self.lines.items()}
        self.grid_axes = {r: (sorted({a for a, _ in g}), sorted({b for _, b in g})) for r, g in self.grids.items()}

    @staticmethod
    def _line(kind: str, f: dict) -> tuple:
        return (kind, f["res"]) + tuple(f[name] for name in LINE_KINDS[kind][1])

    def grid_text(self, kind: str, f: dict) -> str:
        """What the LUT measured for `kind` at `f`'s resolution (and hyper-parameters), for error messages."""
        if kind in GRID_KINDS:
            pairs = sorted(self.grids.get((kind, f["res"]), {}))
            if not pairs:
                return f"no {kind} entries at {f['res']}x{f['res']}"
            cin, cout = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
            full = len(pairs) == len(cin) * len(cout)
            return (f"{kind} at {f['res']}x{f['res']} is measured for cin {_span(cin)} x cout {_span(cout)} "
                    f"({len(pairs)} pairs{'' if full else ', not a full grid'})")
        xs = self.sorted.get(self._line(kind, f))
        if not xs:
            return f"no {kind} entries at {f['res']}x{f['res']} with these hyper-parameters"
        return f"{kind} at {f['res']}x{f['res']} is measured at widths {_span(xs)}"

    def line(self, kind: str, width: int, notes: list, exact: bool = False, **f) -> tuple[float, bool]:
        """Latency of a single-width unit, linear between the nearest measured widths (unless `exact`)."""
        values = self.lines.get(self._line(kind, f))
        if not values:
            raise LUTCoverageError(f"the LUT has no {kind} entries at resolution {f['res']}; "
                                   "measure a LUT for this search space")
        if width in values:
            return values[width], False
        if exact:
            raise LUTCoverageError(f"the LUT does not cover {kind} width {width} at {f['res']}x{f['res']}: "
                                   f"{self.grid_text(kind, f)}; measure a LUT whose grid includes it")
        xs = self.sorted[self._line(kind, f)]
        i = bisect.bisect_left(xs, width)
        if i == 0 or i == len(xs):
            raise LUTCoverageError(f"{kind} width {width} at resolution {f['res']} is outside the LUT's measured "
                                   f"widths {xs[0]}..{xs[-1]}; use a LUT with larger max widths")
        lo, hi = xs[i - 1], xs[i]
        t = (width - lo) / (hi - lo)
        notes.append(f"{kind} c={width} r={f['res']}: linear between c={lo} and c={hi}")
        return (1 - t) * values[lo] + t * values[hi], True

    def downsample(self, cin: int, cout: int, res: int, notes: list, kind: str = "downsample",
                   exact: bool = False) -> tuple[float, bool]:
        """Latency of a downsampling, bilinear on the measured (Cin, Cout) grid (unless `exact`)."""
        grid = self.grids.get((kind, res))
        if not grid:
            raise LUTCoverageError(f"the LUT has no {kind} entries at resolution {res}")
        if (cin, cout) in grid:
            return grid[(cin, cout)], False
        if exact:
            raise LUTCoverageError(f"the LUT does not cover {kind} {cin}->{cout} at {res}x{res}: "
                                   f"{self.grid_text(kind, {'res': res})}; measure a LUT whose grid includes it")
        xs, ys = self.grid_axes[(kind, res)]
        (a0, a1, ta), (b0, b1, tb) = _bracket(xs, cin, "input", res), _bracket(ys, cout, "output", res)
        try:
            value = ((1 - ta) * (1 - tb) * grid[(a0, b0)] + ta * (1 - tb) * grid[(a1, b0)]
                     + (1 - ta) * tb * grid[(a0, b1)] + ta * tb * grid[(a1, b1)])
        except KeyError as e:
            raise LUTCoverageError(f"the LUT cannot interpolate {kind} {cin}->{cout} at {res}x{res}: the grid lacks "
                                   f"the point {e.args[0]} ({self.grid_text(kind, {'res': res})}); measure a LUT "
                                   "whose grid includes it") from e
        span = lambda lo, hi: f"[{lo},{hi}]" if lo != hi else f"={lo}"  # noqa: E731
        notes.append(f"{kind} {cin}->{cout} r={res}: bilinear on grid cin{span(a0, a1)} x cout{span(b0, b1)}")
        return value, True


def _span(xs: list[int]) -> str:
    """[a, b, c] written compactly: "64..128 step 16" for an even run, else the list."""
    if len(xs) > 2 and len({b - a for a, b in zip(xs, xs[1:])}) == 1:
        return f"{xs[0]}..{xs[-1]} step {xs[1] - xs[0]}"
    return str(list(xs))


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


@functools.lru_cache(maxsize=2)
def _default_lut(family: str) -> dict:
    return load_default_lut(family)


def resolve_lut(lut: Any, family: str = "v1") -> dict:
    """A validated LUT document from None (the family's embedded default), a path or a dict (validated once)."""
    if lut is None:
        return _default_lut(family)
    if isinstance(lut, (str, os.PathLike)):
        return _load_path(os.path.abspath(os.fspath(lut)), os.path.getmtime(lut) if os.path.exists(lut) else 0)
    if isinstance(lut, dict):
        if not any(key[0] == id(lut) and index.doc is lut for key, index in _INDEXES.items()):
            load_lut(lut)  # validated once: after that an index of it exists
        return lut
    raise LUTError(f"lut must be None, a path or a LUT dict, got {type(lut).__name__}")


@functools.lru_cache(maxsize=8)
def _load_path(path: str, mtime: float) -> dict:
    return load_lut(path)


def resolve_architecture(config):
    """A `Layout` as is; anything else through `ef_keras.registry.architecture` (either family)."""
    return config if isinstance(config, Layout) else architecture(config)


def _check_hyper(config, space: dict, names) -> None:
    for name in names:
        if getattr(config, name) != space[name]:
            raise LUTCoverageError(f"the architecture has {name}={getattr(config, name)} but the LUT was measured "
                                   f"with {name}={space[name]}; measure a LUT with that setting")


def architecture_units(config, space: dict) -> list[tuple[str, dict]]:
    """The (kind, fields) of every unit of an architecture along its block plan, checked against the LUT's space."""
    arch = resolve_architecture(config)
    v2 = not isinstance(arch, Layout) and family_of(arch).name == "v2"
    if v2 != is_v2_space(space):
        have, lut = ("EfficientFormerV2", "V1") if v2 else ("EfficientFormer (V1)", "EfficientFormerV2")
        raise LUTCoverageError(f"the architecture is {have} but the LUT measured {lut} units; pass a LUT of the "
                               "architecture's family (lut=None picks the embedded one)")
    if v2:
        _check_hyper(arch, space, ("key_dim", "num_heads", "attn_ratio", "downsample_key_dim"))
        size = space["input_size"]
        return [(u.kind, u.unit) for u in (unit_of(b, space) for b in arch.blocks((size, size), space["classes"]))]
    if not isinstance(arch, Layout):
        _check_hyper(arch, space, ("mlp_ratio", "pool_size", "key_dim", "num_heads", "attn_ratio"))
        arch = arch.layout
    for s, blocks in enumerate(arch.stage_blocks):
        if "3d" in blocks and space["resolutions"][s] not in space["meta3d_resolutions"]:
            raise LUTCoverageError(f"stage {s + 1} has 3D MetaBlocks but the LUT measured them only at resolutions "
                                   f"{space['meta3d_resolutions']}; measure a LUT with 3D blocks in that stage "
                                   "(SearchSpace.meta3d_stages)")
    return layout_units(arch, space)


def layout_units(layout: Layout, space: dict) -> list[tuple[str, dict]]:
    """The (kind, fields) of every unit along `layout`, in execution order (its block plan)."""
    size = space["input_size"]
    return [(u.kind, u.unit) for u in (unit_of(b, space) for b in layout.blocks((size, size), space["classes"]))]


def predict(config, lut=None, *, input_size: int = 224, correction: bool = True,
            statistic: str | None = None, exact: bool = False) -> Prediction:
    """Predicted latency of an architecture on the LUT's device.

    Args:
        config: an EfficientFormerConfig, "l1"/"l3"/"l7", an architecture dict or JSON path,
            or a `Layout` (any supernet sub-network, 3D blocks allowed in stages 3-4).
        lut: a LUT dict, a LUT path, or None for the embedded default (host, fp32, 2 threads).
        input_size: the deployment resolution; a LUT measured at another one is refused.
        correction: apply the LUT's `correction` (if any, and fitted on `statistic`): the one
            validated on whole models and single-action Δ-latencies; `sum_ms` is always the
            plain sum.
        statistic: which per-unit statistic to sum: default the one the LUT's correction was
            fitted on, else "median_ms".
        exact: refuse any unit the LUT did not measure (no interpolation); the error names the
            unit and the LUT's grid there. The search predicts with `exact=True`.

    Raises:
        LUTCoverageError: the LUT lacks a width, resolution or hyper-parameter the architecture needs.
    """
    from android_ios_bench.correction import apply_correction

    arch = resolve_architecture(config)
    doc = resolve_lut(lut, family="v1" if isinstance(arch, Layout) else family_of(arch).name)
    space = doc["search_space"]
    if space["input_size"] != input_size:
        raise LUTCoverageError(f"the LUT was measured for {space['input_size']}x{space['input_size']} inputs, not "
                               f"{input_size}x{input_size}; pass a LUT measured at that resolution")
    units = architecture_units(arch, space)
    fit = doc.get("correction")
    statistic = statistic or (fit["statistic"] if fit else "median_ms")
    if statistic not in STATISTICS:
        raise LUTError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    index = _index(doc, statistic)
    notes: list[str] = []
    counts = Counter()
    costs: dict[str, tuple[str, float, bool]] = {}
    for kind, fields in units:
        key = unit_key(kind, **fields)
        counts[key] += 1
        if key in costs:
            continue
        if kind in GRID_KINDS:
            ms, interp = index.downsample(fields["cin"], fields["cout"], fields["res"], notes, kind, exact)
        else:
            ms, interp = index.line(kind, fields[LINE_KINDS[kind][0]], notes, exact, **fields)
        costs[key] = (kind, ms, interp)
    per_unit = tuple(UnitCost(k, costs[k][0], n, costs[k][1], costs[k][1] * n, costs[k][2]) for k, n in counts.items())
    total = sum(u.ms_total for u in per_unit)
    by_kind: dict[str, float] = {}
    for u in per_unit:
        by_kind[u.kind] = by_kind.get(u.kind, 0.0) + u.ms_total
    use = correction and fit is not None and fit["statistic"] == statistic
    ms = apply_correction(fit, by_kind) if use else total
    return Prediction(ms=ms, sum_ms=total, correction_ms=ms - total, per_unit=per_unit, interpolated=tuple(notes))


def smallest_trusted_saving(doc: dict) -> float:
    """The predicted saving, as a fraction of the predicted latency, that a slimming action must exceed.

    The LUT's Δ-latency validation (`android_ios_bench.deltas`) measured what single actions really
    save. Where a measured Δ is not a saving outside noise (its 95 % interval reaches 0 or below),
    the prediction of that action cannot be trusted to rank it; the largest such predicted saving
    (relative to the predicted base, as `correction` compares Δs) is the bar. On the host table a
    stage-4 width step predicted to save 0.12 % measured 2.7 % *slower*, and one predicted at 1.4 %
    measured 0.00 %. 0.0 for a LUT without a Δ validation (every predicted saving is taken).
    """
    size = doc["search_space"]["input_size"]
    fractions = [0.0]
    for pair in (doc.get("delta_validation") or {}).get("pairs", []):
        if pair["ci95_ms"][0] > 0:  # a real saving: its prediction may be as small as it likes
            continue
        base = predict(pair["base_config"], doc, input_size=size).ms
        fractions.append((base - predict(pair["derived_config"], doc, input_size=size).ms) / base)
    return max(fractions)


def check_grid(doc: dict, *, min_widths=None, max_widths, width_step=None, where: str = "LUT") -> None:
    """LUTCoverageError unless every unit of the V1 grid min..max (step) is an entry of the LUT.

    The default `min_widths` and `width_step` are the LUT's own. The error names the first
    missing unit and what the LUT measured there (`check_search_space` calls this).
    """
    from android_ios_bench.units import SearchSpace, search_space_units

    space = doc["search_space"]
    if is_v2_space(space):
        raise LUTCoverageError(f"{where} is an EfficientFormerV2 LUT; the search's grid is EfficientFormer's (V1)")
    step = width_step or space["width_step"]
    lows = list(min_widths) if min_widths is not None else space.get("min_widths", [step] * 4)
    try:
        asked = SearchSpace(input_size=space["input_size"], width_step=step, min_widths=lows, max_widths=max_widths,
                            named=(), **{k: space[k] for k in ("mlp_ratio", "pool_size", "key_dim", "num_heads",
                                                                "attn_ratio", "classes")})
    except LUTError as e:
        raise LUTCoverageError(f"cannot check {where} against the grid {lows}..{list(max_widths)}: {e}") from e
    index = _index(doc, "median_ms")
    for unit in search_space_units(asked):
        if unit.key not in doc["entries"]:
            f = unit.unit
            what = (f"downsample {f['cin']}->{f['cout']}" if unit.kind == "downsample"
                    else f"{unit.kind} width {f[LINE_KINDS[unit.kind][0]]}")
            raise LUTCoverageError(
                f"{where} does not cover the search grid {lows}..{list(max_widths)} step {step}: {what} at "
                f"{f['res']}x{f['res']} ({unit.key}) is not measured; {index.grid_text(unit.kind, f)}. Measure a "
                f"LUT for this grid (python -m android_ios_bench.host --min-widths ... --max-widths ...)")


def check_search_space(doc: dict, *, input_size: int | None = None, min_widths: Iterable[int] | None = None,
                       max_widths: Iterable[int] | None = None, width_step: int | None = None,
                       method: str | None = None, where: str = "LUT") -> None:
    """Raises LUTCoverageError unless the LUT measured every unit of the asked search grid.

    Args:
        input_size: the deployment resolution the LUT must have been measured at.
        min_widths, max_widths, width_step: the search's grid (default: the LUT's own min
            widths and step); every width from min to max of every stage, and every
            downsampling pair between neighbouring stages, must be a measured entry. The
            error names the first missing unit and the LUT's grid there.
        method: the timing method the LUT must have been measured with (the host LUT's: "in_rotation").
    """
    space = doc["search_space"]
    if input_size is not None and space["input_size"] != input_size:
        raise LUTCoverageError(
            f"{where} was measured for {space['input_size']}x{space['input_size']} inputs, not "
            f"{input_size}x{input_size}; measure a LUT at that resolution (android_ios_bench.host --input-size)")
    if method is not None and method_of(doc) != method:
        raise LUTCoverageError(
            f"{where} was measured by method {method_of(doc)!r}, not {method!r}; measure a LUT with "
            f"`python -m android_ios_bench.host --method {method}`")
    if max_widths is not None:
        check_grid(doc, min_widths=min_widths, max_widths=max_widths, width_step=width_step, where=where)


def drift_scale(doc: dict, measured_now: dict[str, float], statistic: str = "median_ms") -> tuple[float, dict]:
    """Today's device scale against the LUT's session: median over reference models of now / then.

    `measured_now` maps reference-model names to the statistic measured now; returns
    (scale, per-model ratios). LUTError when the LUT has no reference models to compare.
    """
    then = {r["name"]: r[statistic] for r in doc.get("reference_models", []) if statistic in r}
    ratios = {name: measured_now[name] / then[name] for name in then if name in measured_now}
    if not ratios:
        raise LUTError(f"the LUT has no reference models with {statistic} to compare against; re-measure it with "
                       "`python -m android_ios_bench.host --lut-out LUT` (it records them)")
    return float(np.median(list(ratios.values()))), ratios

"""The latency model: per-unit LUT sums along an architecture, a fitted correction, and drift.

    from android_ios_bench.predictor import predict
    p = predict("l1")                # embedded host LUT (LiteRT/XNNPACK, 2 threads, fp32)
    p.ms, p.sum_ms, p.interpolated   # prediction, plain sum, what had to be interpolated

This module is the one place the latency model lives: the LUT format is
`android_ios_bench.lut`, the units `android_ios_bench.units`, and the search imports its
predictions from here.

An architecture is walked as the units the LUT measured (android_ios_bench.units): stem,
per stage its downsampling and MetaBlocks, the 4D->3D flatten, the final norm + heads.
Widths between measured ones are interpolated linearly (4D/3D blocks, stem, flatten, head)
or bilinearly over the (Cin, Cout) grid (downsampling, measured on a coarse grid), and every
such use is reported. Widths beyond the LUT, or a resolution it lacks, raise
LUTCoverageError instead of extrapolating.

Correction: the plain sum misses what whole models add or share (graph-level fusion, memory
traffic between units, the interpreter's per-invoke cost). A LUT may carry a `correction`
fitted by least squares on whole models measured in the same session as its units (its
`reference_models`; `refit_correction`): either one global scale plus a per-model constant,
or one scale per unit family (4D blocks, 3D blocks, the rest) plus the constant, whichever
has the smaller leave-one-out error. `predict` applies it, with the statistic it was fitted
on (median or p10) as the default.

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
from typing import Any

import numpy as np

from android_ios_bench.lut import LUTCoverageError, LUTError, load_default_lut, load_lut, unit_key
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

    def downsample(self, cin: int, cout: int, res: int, notes: list, kind: str = "downsample") -> tuple[float, bool]:
        """Latency of a downsampling, bilinear on the measured (Cin, Cout) grid."""
        grid = self.grids.get((kind, res))
        if not grid:
            raise LUTCoverageError(f"the LUT has no {kind} entries at resolution {res}")
        if (cin, cout) in grid:
            return grid[(cin, cout)], False
        xs, ys = self.grid_axes[(kind, res)]
        (a0, a1, ta), (b0, b1, tb) = _bracket(xs, cin, "input", res), _bracket(ys, cout, "output", res)
        try:
            value = ((1 - ta) * (1 - tb) * grid[(a0, b0)] + ta * (1 - tb) * grid[(a1, b0)]
                     + (1 - ta) * tb * grid[(a0, b1)] + ta * tb * grid[(a1, b1)])
        except KeyError as e:
            raise LUTCoverageError(f"{kind} grid at resolution {res} lacks the point {e.args[0]}; "
                                   "re-run the harness to complete the LUT") from e
        span = lambda lo, hi: f"[{lo},{hi}]" if lo != hi else f"={lo}"  # noqa: E731
        notes.append(f"{kind} {cin}->{cout} r={res}: bilinear on grid cin{span(a0, a1)} x cout{span(b0, b1)}")
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
                                   f"{space['meta3d_resolutions']} (the supernet allows them in stages 3-4)")
    return layout_units(arch, space)


def layout_units(layout: Layout, space: dict) -> list[tuple[str, dict]]:
    """The (kind, fields) of every unit along `layout`, in execution order (its block plan)."""
    size = space["input_size"]
    return [(u.kind, u.unit) for u in (unit_of(b, space) for b in layout.blocks((size, size), space["classes"]))]


def predict(config, lut=None, *, input_size: int = 224, correction: bool = True,
            statistic: str | None = None) -> Prediction:
    """Predicted latency of an architecture on the LUT's device.

    Args:
        config: an EfficientFormerConfig, "l1"/"l3"/"l7", an architecture dict or JSON path,
            or a `Layout` (any supernet sub-network, 3D blocks allowed in stages 3-4).
        lut: a LUT dict, a LUT path, or None for the embedded default (host, fp32, 2 threads).
        input_size: the deployment resolution; a LUT measured at another one is refused.
        correction: apply the LUT's fitted `correction` (if any, and fitted on `statistic`);
            `sum_ms` is always the plain sum.
        statistic: which per-unit statistic to sum: default the one the LUT's correction was
            fitted on, else "median_ms"; on a loaded shared machine a low percentile ("p10_ms")
            resists contention.

    Raises:
        LUTCoverageError: the LUT lacks a width, resolution or hyper-parameter the architecture needs.
    """
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
            ms, interp = index.downsample(fields["cin"], fields["cout"], fields["res"], notes, kind)
        else:
            ms, interp = index.line(kind, fields[LINE_KINDS[kind][0]], notes, **fields)
        costs[key] = (kind, ms, interp)
    per_unit = tuple(UnitCost(k, costs[k][0], n, costs[k][1], costs[k][1] * n, costs[k][2]) for k, n in counts.items())
    total = sum(u.ms_total for u in per_unit)
    by_kind: dict[str, float] = {}
    for u in per_unit:
        by_kind[u.kind] = by_kind.get(u.kind, 0.0) + u.ms_total
    use = correction and fit is not None and fit["statistic"] == statistic
    ms = apply_correction(fit, by_kind) if use else total
    return Prediction(ms=ms, sum_ms=total, correction_ms=ms - total, per_unit=per_unit, interpolated=tuple(notes))


# ----------------------------------------------------------------------------- correction
#: The statistic harnesses fit the correction on (and so `predict`'s default): contention only
#: adds time, and on 41 whole models timed with the units in one loaded session the minimum gave
#: the smallest errors and the highest Kendall tau, then p10, then the median (benchmarks/lut_validation.py).
CORRECTION_STATISTIC = "min_ms"
#: Unit families of the per-family correction; every other kind (stem, downsample, flat, head) is "rest".
FAMILIES = ("meta4d", "meta3d", "rest")
CORRECTION_FORMS = ("global", "per_family")


#: EfficientFormerV2's blocks join V1's families: its conv FFN blocks the 4D family, its
#: attention + FFN blocks the 3D family.
_FAMILY_OF = {"meta4d": "meta4d", "v2_ffn": "meta4d", "meta3d": "meta3d", "v2_attn_ffn": "meta3d"}


def family_sums(by_kind: dict[str, float]) -> dict[str, float]:
    """Summed ms of the 4D (conv) blocks, the 3D (attention) blocks and everything else."""
    out = {f: 0.0 for f in FAMILIES}
    for kind, ms in by_kind.items():
        out[_FAMILY_OF.get(kind, "rest")] += ms
    return out


def _features(by_kind: dict[str, float], form: str) -> np.ndarray:
    fam = family_sums(by_kind)
    if form == "global":
        return np.array([sum(fam.values()), 1.0])
    return np.array([fam["meta4d"], fam["meta3d"], fam["rest"], 1.0])


def apply_correction(fit: dict, by_kind: dict[str, float]) -> float:
    """The corrected latency of a model whose per-kind unit sums are `by_kind`."""
    return float(_features(by_kind, fit["form"]) @ np.asarray(fit["coefficients"], "float64"))


def _lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative error (rows weighted by 1/y), so small and large models count alike."""
    w = 1.0 / y
    return np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]


def fit_correction(by_kinds: list[dict[str, float]], measured, form: str) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients fitted on all models, leave-one-out relative errors) of one correction form."""
    if form not in CORRECTION_FORMS:
        raise LUTError(f"correction form must be one of {CORRECTION_FORMS}, got {form!r}")
    x = np.stack([_features(b, form) for b in by_kinds])
    y = np.asarray(measured, "float64")
    loo = np.full(len(y), np.nan)
    if len(y) > x.shape[1]:
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            loo[i] = (x[i] @ _lstsq(x[keep], y[keep]) - y[i]) / y[i]
    return _lstsq(x, y), loo


def refit_correction(doc: dict, statistic: str | None = None) -> dict | None:
    """Fits the LUT's correction on its `reference_models` (measured with its units) and stores it.

    `statistic`: default CORRECTION_STATISTIC when every unit and reference model has it
    (a phone's benchmark tool may give only medians), else "median_ms".

    Tries each form that has more models than coefficients and keeps the one with the
    smaller leave-one-out mean |relative error|; with too few models, no correction is
    stored. Returns the stored correction (or None).
    """
    if statistic is None:
        rows = list(doc["entries"].values()) + doc.get("reference_models", [])
        statistic = CORRECTION_STATISTIC if all(CORRECTION_STATISTIC in r for r in rows) else "median_ms"
    refs = [r for r in doc.get("reference_models", []) if statistic in r]
    doc.pop("correction", None)
    try:
        by_kinds = [predict(r["config"], doc, input_size=doc["search_space"]["input_size"], correction=False,
                            statistic=statistic).by_kind() for r in refs]
    except LUTCoverageError:
        return None  # units still missing (a partial or resumed measurement): no correction yet
    best = None
    for form in CORRECTION_FORMS:
        measured = [r[statistic] for r in refs]
        if len(refs) <= len(_features({}, form)):
            continue
        coef, loo = fit_correction(by_kinds, measured, form)
        score = float(np.mean(np.abs(loo)))
        if best is None or score < best["loo_mean_abs_pct"] / 100:
            best = {"form": form, "statistic": statistic, "coefficients": [round(float(c), 6) for c in coef],
                    "fitted_on": [r["name"] for r in refs], "loo_mean_abs_pct": round(100 * score, 3),
                    "loo_max_abs_pct": round(100 * float(np.max(np.abs(loo))), 3)}
    if best is not None:
        doc["correction"] = best
    return best


#: Whole models a harness measures beside the units: the correction is fitted on them and
#: `--check-lut` re-times them to measure drift. L1 and L3 where the space covers them, plus
#: seeded random architectures of the space (widths, depths and 3D blocks of every size).
REFERENCE_RANDOM = 6


def reference_configs(space: dict) -> list[tuple[str, Any]]:
    """(name, architecture config) of the reference models of a LUT search space."""
    if is_v2_space(space):
        return _v2_reference_configs(space)
    from ef_keras.models.efficientformer.config import VARIANTS, EfficientFormerConfig

    step, max_w = space["width_step"], space["max_widths"]
    out = [(n, VARIANTS[n]) for n in ("l1", "l3") if all(w <= m for w, m in zip(VARIANTS[n].widths, max_w))]
    rng = np.random.default_rng(2022)
    for i in range(REFERENCE_RANDOM):
        widths = tuple(int(rng.integers(max(1, m // step // 4), m // step + 1)) * step for m in max_w)
        depths = tuple(int(rng.integers(1, d + 1)) for d in (4, 4, 8, 5))
        out.append((f"ref{i}", EfficientFormerConfig(widths=widths, depths=depths,
                                                     num_vit=int(rng.integers(0, depths[3] + 1)), name=f"ref{i}")))
    return out


#: Random EfficientFormerV2 reference models beside S0/S1/S2/L.
V2_REFERENCE_RANDOM = 4


def _v2_reference_configs(space: dict) -> list[tuple[str, Any]]:
    """S0/S1/S2/L and random V2 architectures (measured widths, random depths, ratios and num_vit)."""
    import dataclasses as dc

    from ef_keras.models.efficientformer_v2.config import V2_VARIANTS

    out = [(n, cfg) for n, cfg in V2_VARIANTS.items()
           if all(w in measured for w, measured in zip(cfg.widths, space["widths"]))]
    rng = np.random.default_rng(2023)
    for i in range(V2_REFERENCE_RANDOM):
        widths = tuple(int(rng.choice(stage)) for stage in space["widths"])
        depths = tuple(int(rng.integers(1, d + 1)) for d in (5, 5, 15, 10))
        ratios = tuple(tuple(int(rng.choice(space["mlp_ratios"])) for _ in range(d)) for d in depths)
        out.append((f"v2ref{i}", dc.replace(V2_VARIANTS["s0"], widths=widths, depths=depths, mlp_ratios=ratios,
                                            num_vit=int(rng.integers(0, min(depths[2:]) + 1)), name=f"v2ref{i}")))
    return out


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

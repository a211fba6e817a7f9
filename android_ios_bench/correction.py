"""From a LUT's plain unit sum to whole-model latency: the correction, chosen on whole models and on Δs.

The plain sum misses what whole models add or share (graph-level fusion, memory traffic between
units, the interpreter's per-invoke cost). A LUT carries a `correction` fitted by least squares
(on relative error) on whole *reference models* timed in the same session as its units. Three
forms are tried, each only with more models than parameters:

- "scale": one global scale (1 parameter);
- "global": one global scale plus a per-model constant (2);
- "per_family": one scale per unit family (4D blocks, 3D blocks, the rest) plus the constant (4).

Slimming ranks actions by accuracy lost per millisecond saved, so a correction must also be
right about the *difference* one action makes. Where the LUT holds a Δ-latency validation
(`delta_validation`, measured by `android_ios_bench.deltas`), every form's predicted saving
is compared with the measured one, leave-one-out (the form refitted without the pair's two
models). The saving is compared as a fraction of the base model (predicted Δ / predicted base
against measured Δ / measured base, both of one Δ session), so the comparison does not depend
on the scale of the statistic. A form distorts Δs when its mean Δ error is more than
`DELTA_SLACK_PCT` points worse than the best form's, or it gets the sign of more pairs wrong;
among the forms that do not, the one with the smallest leave-one-out error on whole models is
the LUT's `correction` (what `predict`, and so slimming, applies). Every form's figures are kept
in `correction_candidates`.
"""

from __future__ import annotations

import numpy as np

from android_ios_bench.lut import LUTError

#: The statistic harnesses fit the correction on (and so `predict`'s default). With every model in one
#: rotation the median of each model's timings gave the smallest whole-model errors on this host
#: (README, latency-table section); the minimum favours short models (a short call more often
#: escapes background load entirely), the mean follows the load's spikes.
CORRECTION_STATISTIC = "median_ms"
#: Unit families of the per-family correction; every other kind (stem, downsample, flat, head) is "rest".
FAMILIES = ("meta4d", "meta3d", "rest")
CORRECTION_FORMS = ("scale", "global", "per_family")
PARAMETERS = {"scale": 1, "global": 2, "per_family": 4}
#: How many percentage points of mean Δ error a form may lose to the best form before it "distorts Δs".
DELTA_SLACK_PCT = 2.0

#: EfficientFormerV2's blocks join V1's families: its conv FFN blocks the 4D family, its
#: attention + FFN blocks the 3D family.
_FAMILY_OF = {"meta4d": "meta4d", "v2_ffn": "meta4d", "meta3d": "meta3d", "v2_attn_ffn": "meta3d"}


class CorrectionError(LUTError):
    """A correction that cannot be fitted (e.g. fewer models than parameters), in one line."""


def family_sums(by_kind: dict[str, float]) -> dict[str, float]:
    """Summed ms of the 4D (conv) blocks, the 3D (attention) blocks and everything else."""
    out = {f: 0.0 for f in FAMILIES}
    for kind, ms in by_kind.items():
        out[_FAMILY_OF.get(kind, "rest")] += ms
    return out


def _features(by_kind: dict[str, float], form: str) -> np.ndarray:
    fam = family_sums(by_kind)
    if form == "scale":
        return np.array([sum(fam.values())])
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
    """(coefficients fitted on all models, leave-one-out relative errors) of one correction form.

    Raises CorrectionError unless there are more models than the form has parameters (a
    leave-one-out fit needs at least parameters + 1).
    """
    if form not in CORRECTION_FORMS:
        raise CorrectionError(f"correction form must be one of {CORRECTION_FORMS}, got {form!r}")
    y = np.asarray(measured, "float64")
    if len(y) <= PARAMETERS[form]:
        raise CorrectionError(f"the {form} correction has {PARAMETERS[form]} parameter(s) but only {len(y)} "
                              f"reference model(s) were given; time at least {PARAMETERS[form] + 1}")
    x = np.stack([_features(b, form) for b in by_kinds])
    loo = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        loo[i] = (x[i] @ _lstsq(x[keep], y[keep]) - y[i]) / y[i]
    return _lstsq(x, y), loo


def relative_saving_error(predicted_base: float, predicted_derived: float, pair: dict) -> float:
    """Error of a predicted saving against a measured pair, as a fraction of the measured saving.

    Both savings are taken relative to their own base model (predicted Δ / predicted base vs
    measured Δ / measured base), so the statistic's scale cancels.
    """
    predicted = (predicted_base - predicted_derived) / predicted_base
    measured = pair["delta_ms"] / pair["base_ms"]
    return (predicted - measured) / abs(measured)


def form_figures(form, names, x_by_kind, y, pairs, pair_kinds) -> dict:
    """One form's coefficients, whole-model LOO errors and leave-pair-out Δ errors."""
    coef, loo = fit_correction(x_by_kind, y, form)
    out = {"form": form, "coefficients": [round(float(c), 6) for c in coef],
           "loo_mean_abs_pct": round(100 * float(np.mean(np.abs(loo))), 3),
           "loo_max_abs_pct": round(100 * float(np.max(np.abs(loo))), 3)}
    errors, signs = [], 0
    for pair, (base_kinds, derived_kinds) in zip(pairs, pair_kinds):
        keep = [i for i, n in enumerate(names) if n not in (pair["base"], pair["derived"])]
        c, _ = fit_correction([x_by_kind[i] for i in keep], y[keep], form)
        fit = {"form": form, "coefficients": c}
        base, derived = apply_correction(fit, base_kinds), apply_correction(fit, derived_kinds)
        errors.append(relative_saving_error(base, derived, pair))
        signs += (base - derived > 0) != (pair["delta_ms"] > 0)
    if errors:
        out.update(delta_pairs=len(errors), delta_mean_abs_pct=round(100 * float(np.mean(np.abs(errors))), 3),
                   delta_max_abs_pct=round(100 * float(np.max(np.abs(errors))), 3), delta_sign_errors=int(signs))
    return out


def choose(candidates: list[dict]) -> dict:
    """The Δ-validated form among `candidates` (see the module docstring), or the best whole-model one."""
    with_deltas = [c for c in candidates if "delta_mean_abs_pct" in c]
    if not with_deltas:
        return min(candidates, key=lambda c: c["loo_mean_abs_pct"])
    best = min(c["delta_mean_abs_pct"] for c in with_deltas)
    fewest = min(c["delta_sign_errors"] for c in with_deltas)
    keep = [c for c in with_deltas if c["delta_mean_abs_pct"] <= best + DELTA_SLACK_PCT
            and c["delta_sign_errors"] == fewest]
    return min(keep, key=lambda c: c["loo_mean_abs_pct"])

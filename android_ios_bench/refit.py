"""Refitting a LUT's correction from its reference models (and Δ pairs), as every harness does.

Kept apart from `android_ios_bench.correction` (the forms and their fitting, which the
predictor applies) because it needs the predictor's per-kind sums: correction <- predictor
<- refit, no import circle.
"""

from __future__ import annotations

import numpy as np

from android_ios_bench.correction import CORRECTION_FORMS, CORRECTION_STATISTIC, PARAMETERS, form_figures, choose
from android_ios_bench.lut import LUTCoverageError
from android_ios_bench.predictor import predict


def refit_correction(doc: dict, statistic: str | None = None) -> dict | None:
    """Fits every correction form on the LUT's `reference_models`, picks one and stores it.

    `statistic`: default CORRECTION_STATISTIC when every unit and reference model has it
    (a phone's benchmark tool may give only medians), else "median_ms". The Δ pairs used are
    the LUT's `delta_validation` pairs whose Δ lies outside noise (its CI excludes 0).

    Stores `correction` (the chosen form, with `delta_validated` saying whether Δs took part)
    and `correction_candidates`; with too few models for any form, or units still missing (a
    partial measurement), stores none. Returns the stored correction (or None).
    """
    if statistic is None:
        rows = list(doc["entries"].values()) + doc.get("reference_models", [])
        statistic = CORRECTION_STATISTIC if all(CORRECTION_STATISTIC in r for r in rows) else "median_ms"
    refs = [r for r in doc.get("reference_models", []) if statistic in r]
    pairs = [p for p in doc.get("delta_validation", {}).get("pairs", []) if p["outside_noise"]]
    doc.pop("correction", None)
    doc.pop("correction_candidates", None)
    size = doc["search_space"]["input_size"]

    def kinds(config):
        return predict(config, doc, input_size=size, correction=False, statistic=statistic).by_kind()

    try:
        x_by_kind = [kinds(r["config"]) for r in refs]
        pair_kinds = [(kinds(p["base_config"]), kinds(p["derived_config"])) for p in pairs]
    except LUTCoverageError:
        return None  # units still missing (a partial or resumed measurement): no correction yet
    names, y = [r["name"] for r in refs], np.array([r[statistic] for r in refs], "float64")
    candidates = [form_figures(form, names, x_by_kind, y, pairs, pair_kinds) for form in CORRECTION_FORMS
                  if len(refs) > PARAMETERS[form] + (2 if pairs else 0)]
    if not candidates:
        return None
    chosen = dict(choose(candidates), statistic=statistic, fitted_on=names, delta_validated=bool(pairs))
    doc["correction"] = chosen
    doc["correction_candidates"] = candidates
    return chosen

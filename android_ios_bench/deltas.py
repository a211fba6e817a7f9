"""Δ-latency validation: the milliseconds one slimming action saves, measured pair by pair.

    from android_ios_bench.deltas import measure_pairs, attach
    doc = measure_pairs(pairs, lut_doc, models, control, "deltas.json")   # resumable, atomic
    attach(lut_doc, doc)       # stores the summary in the LUT and refits its correction

Protocol (one pair at a time): the pair's base model, its derived model (one action away) and a
fixed control model are loaded together and timed by `ef_keras.timing.time_interleaved`, one
invocation of each per round in a fresh random order, for at least `MIN_ROUNDS` rounds and then
in chunks until the Δ is precise (`delta_stats`) or `MAX_ROUNDS` is reached. The control runs
in the same rounds only to recognise contended ones: a round whose control took more than
`CONTENDED_FACTOR` times the control's 10th percentile is dropped (another process held a
core then). On the rounds kept:

- Δ = the median of the per-round paired differences base - derived;
- its 95 % confidence interval is distribution-free: the order statistics d_(j) and d_(k) of
  the n sorted differences, j = floor(n/2 - 1.96 sqrt(n)/2), k = ceil(n/2 + 1.96 sqrt(n)/2)
  (1-based, clipped to 1..n; the normal approximation of the binomial(n, 1/2) sign test);
- the base's latency = the median of its kept timings (Δ is compared as a fraction of it);
- a Δ is *outside noise* when its interval excludes 0, and *precise* when the interval's
  half-width (d_(k) - d_(j)) / 2 is at most `TARGET_HALF_WIDTH` (20 %) of |Δ|.

The result file records the session of the LUT it was measured with (`lut.session_id`), so it
is never attached to another LUT. It is written atomically after every pair, and a re-run
measures only the pairs not yet in it.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import numpy as np

from android_ios_bench.lut import LUTError, now_iso, session_id

DELTA_FORMAT = "ef-keras-delta-validation"
MIN_ROUNDS = 400
CHUNK_ROUNDS = 400
MAX_ROUNDS = 1200
#: A round is contended when the control took more than this times its 10th percentile.
CONTENDED_FACTOR = 1.10
#: A Δ is precise when its 95 % CI half-width is at most this fraction of |Δ|.
TARGET_HALF_WIDTH = 0.20
Z95 = 1.96


def kept_rounds(control) -> np.ndarray:
    """Boolean mask of the rounds whose control time is at most CONTENDED_FACTOR x its 10th percentile."""
    from ef_keras.timing import percentile

    control = np.asarray(control, "float64")
    return control <= CONTENDED_FACTOR * percentile(control, 10)


def median_ci(values) -> tuple[float, float, float]:
    """(median, CI low, CI high): the sign-test 95 % interval from order statistics (module docstring)."""
    x = np.sort(np.asarray(values, "float64"))
    n = len(x)
    if n == 0:
        raise ValueError("median_ci needs at least one value")
    j = max(1, math.floor(n / 2 - Z95 * math.sqrt(n) / 2))
    k = min(n, math.ceil(n / 2 + Z95 * math.sqrt(n) / 2))
    return float(np.median(x)), float(x[j - 1]), float(x[k - 1])


def delta_stats(base, derived, control) -> dict:
    """The Δ statistics of one pair from its raw per-round timings (ms), as in the module docstring."""
    base, derived, control = (np.asarray(a, "float64") for a in (base, derived, control))
    if not len(base) == len(derived) == len(control):
        raise ValueError("base, derived and control need one timing per round each")
    keep = kept_rounds(control)
    delta, lo, hi = median_ci(base[keep] - derived[keep])
    half = (hi - lo) / 2
    return {"rounds": int(len(base)), "kept_rounds": int(keep.sum()), "delta_ms": delta, "ci95_ms": [lo, hi],
            "base_ms": float(np.median(base[keep])), "derived_ms": float(np.median(derived[keep])),
            "half_width_pct": 100 * half / abs(delta) if delta else math.inf,
            "outside_noise": bool(lo > 0 or hi < 0), "precise": bool(delta and half <= TARGET_HALF_WIDTH * abs(delta))}


def new_delta_doc(lut_doc: dict, control: str) -> dict:
    return {"format": DELTA_FORMAT, "version": 1, "lut_session": session_id(lut_doc),
            "lut_date": lut_doc["measurement"]["date"], "device": lut_doc["device"]["name"],
            "threads": lut_doc["runtime"].get("threads"), "date": now_iso(), "control": control,
            "rule": {"min_rounds": MIN_ROUNDS, "chunk_rounds": CHUNK_ROUNDS, "max_rounds": MAX_ROUNDS,
                     "contended_factor": CONTENDED_FACTOR, "target_half_width": TARGET_HALF_WIDTH},
            "pairs": []}


def check_session(lut_doc: dict, delta_doc: dict, where: str = "Δ validation file") -> None:
    """LUTError (one line) unless `delta_doc` was measured with this LUT's session."""
    if delta_doc.get("format") != DELTA_FORMAT:
        raise LUTError(f"{where} is not a Δ-latency validation file (format {delta_doc.get('format')!r})")
    if delta_doc["lut_session"] != session_id(lut_doc):
        raise LUTError(f"{where} was measured with another LUT (session {delta_doc['lut_session']}, LUT of "
                       f"{delta_doc['lut_date']}), not this one (session {session_id(lut_doc)}, "
                       f"{lut_doc['measurement']['date']}); measure the Δs again with this LUT's session")


def measure_pairs(pairs: Sequence, configs: dict, paths: dict[str, str], control: str, out: str, lut_doc: dict, *,
                  threads: int = 2, warmup: int = 5, min_rounds: int = MIN_ROUNDS, chunk: int = CHUNK_ROUNDS,
                  max_rounds: int = MAX_ROUNDS, progress: Callable[[str], None] | None = None) -> dict:
    """Times every pair not yet in `out` by the module's protocol and returns the Δ document.

    Args:
        pairs: `android_ios_bench.reference.ActionPair`s.
        configs: name -> architecture config of every base and derived model.
        paths: name -> .tflite path of every model, the control's included.
        control: the control model's name.
        out: the Δ file (created, or resumed when it belongs to `lut_doc`'s session).
        lut_doc: the LUT of the session these Δs validate.
    """
    from android_ios_bench.host.harness import load_interpreter
    from ef_keras import timing
    from ef_keras.output import write_json

    if os.path.exists(out):
        doc = load_delta_doc(out)
        check_session(lut_doc, doc, where=out)
    else:
        doc = new_delta_doc(lut_doc, control)
    done = {(p["base"], p["derived"]) for p in doc["pairs"]}
    for i, pair in enumerate(pairs):
        if (pair.base, pair.derived) in done:
            continue
        names = {"base": pair.base, "derived": pair.derived, "control": control}
        interpreters = {role: load_interpreter(paths[name], threads) for role, name in names.items()}
        runners = {role: it.invoke for role, it in interpreters.items()}
        raw = {role: np.zeros(0) for role in names}
        while True:
            rounds = min_rounds if not len(raw["base"]) else chunk
            times = timing.time_interleaved(runners, rounds, warmup, seed=len(doc["pairs"]) * 1000 + len(raw["base"]))
            raw = {role: np.concatenate([raw[role], times[role]]) for role in names}
            stats = delta_stats(raw["base"], raw["derived"], raw["control"])
            if stats["precise"] or len(raw["base"]) + chunk > max_rounds:
                break
        record = {**pair.to_dict(), "base_config": configs[pair.base].to_dict(),
                  "derived_config": configs[pair.derived].to_dict(), **stats,
                  "timings_ms": {role: [round(float(t), 6) for t in raw[role]] for role in names}}  # ns resolution
        doc["pairs"].append(record)
        write_json(out, doc)
        if progress:
            progress(f"[Δ {i + 1}/{len(pairs)}] {pair.base} -> {pair.derived} ({pair.action}): "
                     f"{stats['delta_ms']:.3f} ms [{stats['ci95_ms'][0]:.3f}, {stats['ci95_ms'][1]:.3f}] "
                     f"after {stats['rounds']} rounds ({stats['kept_rounds']} kept)")
    write_json(out, doc)
    return doc


def load_delta_doc(path: str) -> dict:
    from android_ios_bench.lut import read_json

    doc = read_json(path, "Δ validation")
    if not isinstance(doc, dict) or doc.get("format") != DELTA_FORMAT:
        raise LUTError(f"{path} is not a Δ-latency validation file; write one with android_ios_bench.deltas")
    return doc


SUMMARY_FIELDS = ("base", "derived", "action", "stage", "base_config", "derived_config", "rounds", "kept_rounds",
                  "delta_ms", "ci95_ms", "base_ms", "derived_ms", "half_width_pct", "outside_noise", "precise")


def attach(lut_doc: dict, delta_doc: dict, where: str = "Δ validation file") -> dict | None:
    """Stores the Δ summary (no raw timings) as the LUT's `delta_validation` and refits its correction.

    LUTError when `delta_doc` belongs to another LUT's session. Returns the new correction.
    """
    from android_ios_bench.refit import refit_correction

    check_session(lut_doc, delta_doc, where)
    lut_doc["delta_validation"] = {
        "session": delta_doc["lut_session"], "date": delta_doc["date"], "control": delta_doc["control"],
        "rule": delta_doc["rule"],
        "pairs": [{k: _finite(p[k]) for k in SUMMARY_FIELDS} for p in delta_doc["pairs"]]}
    return refit_correction(lut_doc)


def _finite(value):
    """JSON has no infinity: an infinite half-width (Δ exactly 0) is stored as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value

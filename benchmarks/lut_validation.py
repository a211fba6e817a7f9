"""Is the latency model right about what slimming compares? Units, whole models and Δs, one session.

    python -m benchmarks.lut_validation [--family v1|v2] [--runs 200] [--write-lut PATH]   # session 1
    python -m benchmarks.lut_validation --retest        # later: the reference models again (ceiling)
    python -m benchmarks.lut_validation --callgrind 2   # instruction counts of 2 pairs (1 thread)
    python -m benchmarks.lut_validation --analyse       # re-analyse what the session directory holds
    python -m benchmarks.lut_validation --analyse --other-session NAME   # compare a second full session

Session 1, one process: the LUT's micro-models (exported once into the host harness' cache,
every unit alone and after its context unit) and the whole reference models
(`android_ios_bench.reference`: named variants, the supernet, states of slimming walks,
every slimming action applied to two of them, random architectures) are timed by the host
harness in one rotation (`measure_manifest`, method in_rotation, non-monotone rows re-timed), then every
single-action pair is timed by the Δ protocol (`android_ios_bench.deltas`: base, derived and
a control model interleaved invocation by invocation, at least 400 rounds, contended rounds
dropped), and the Δs are attached to the LUT, whose correction is then chosen on whole
models and Δs. `--write-lut` copies that LUT (the shipped table) to PATH.

Reported, per statistic (median, p10, min, mean) and per unit method (units alone in the
rotation, and differenced in context, both from the same rotation):
(a) whole models: the plain sum's mean / max |error| and after one global scale
    (leave-one-out), with Kendall tau between predicted and measured;
(b) Δs: the predicted saving of each pair as a fraction of its base against the measured one
    (`correction.relative_saving_error`), for the plain sum and for each correction form
    (leave-pair-out), and whether its sign is right where the Δ lies outside noise;
(c) the test-retest ceiling (`--retest`, a second session): Kendall tau between the two
    sessions' timings of the reference models, and their mean / max |difference| after one
    scale;
(d) `--callgrind`: instructions per invocation of base and derived (valgrind, 1 thread) for a
    few pairs, a load-independent check of the measured savings.
Each step writes `lut_validation{,_v2}.json` (through `ef_keras.provenance`; its `session`
figures hold the measuring session's wall times and load averages, the header the step's) and
the plot `lut_validation{,_v2}.png` into --results-dir; `render` is the README region.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


STATISTICS = ("median_ms", "p10_ms", "min_ms", "mean_ms")
CONTROL = "l1"
#: valgrind's callgrind counts instructions only inside the interpreter's invoke.
CALLGRIND_TOGGLE = "*InterpreterWrapper*Invoke*"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def session_dir(family: str, name: str | None) -> str:
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return os.path.join(cache, "ef_keras", "lut_validation", name or family)


def space_of(family: str):
    """The family's default space (the shipped table's)."""
    from android_ios_bench.units import DEFAULT_SPACE, V2SearchSpace

    return V2SearchSpace() if family == "v2" else DEFAULT_SPACE


# ----------------------------------------------------------------------------- session
def measure_session(space, work: str, runs: int, warmup: int, threads: int) -> dict:
    """Export (cached), LUT + reference models, then the Δ pairs: returns timing figures of the session."""
    from android_ios_bench.deltas import attach, measure_pairs
    from android_ios_bench.export import MANIFEST_NAME, export_search_space
    from android_ios_bench.host import measure_manifest
    from android_ios_bench.host.cli import default_models_dir
    from android_ios_bench.lut import load_lut, save_lut
    from android_ios_bench.reference import reference_set
    from android_ios_bench.units import CONTEXT_METHOD
    from ef_keras.output import write_json
    from ef_keras.provenance import command_line

    models = default_models_dir(space, "fp32")
    os.makedirs(work, exist_ok=True)
    start = time.time()
    export_search_space(models, space, CONTEXT_METHOD, progress=lambda d, n, k, s: (d == n or d % 50 == 0) and log(
        f"[export {d}/{n}] {k} {time.time() - start:.0f}s"))
    export_s = time.time() - start
    lut_path = os.path.join(work, "lut.json")
    start, load_before = time.time(), os.getloadavg()[0]
    doc = measure_manifest(os.path.join(models, MANIFEST_NAME), lut_path, threads=threads, warmup=warmup, runs=runs,
                           command=command_line(),
                           progress=lambda d, n, k, s: (d == n or d % 50 == 0) and log(
                               f"[measure {d}/{n}] {k} {time.time() - start:.0f}s"), log=log)
    measure_s = time.time() - start
    figures = {"export_s": round(export_s), "measure_s": round(measure_s), "load_before": load_before,
               "load_after_measure": os.getloadavg()[0]}
    configs, pairs = reference_set(doc["search_space"])
    if pairs:
        manifest = json.load(open(os.path.join(models, MANIFEST_NAME)))
        paths = {e["unit"]["name"]: os.path.join(models, e["tflite"]) for e in manifest["entries"]
                 if e["kind"] == "model"}
        start = time.time()
        deltas = measure_pairs(pairs, {c.name: c for c in configs}, paths, CONTROL, os.path.join(work, "deltas.json"),
                               doc, threads=threads, warmup=warmup, progress=log)
        figures.update(delta_s=round(time.time() - start), load_after_deltas=os.getloadavg()[0])
        attach(doc, deltas)
        save_lut(doc, lut_path)
    write_json(os.path.join(work, "session.json"), figures)
    return load_lut(lut_path)


def retest(space, work: str, runs: int, warmup: int, threads: int) -> None:
    """A second session: the reference models alone, same harness protocol, into retest.json."""
    from android_ios_bench.export import MANIFEST_NAME
    from android_ios_bench.host import measure_manifest
    from android_ios_bench.host.cli import default_models_dir

    from ef_keras.provenance import command_line

    models = default_models_dir(space, "fp32")
    manifest = json.load(open(os.path.join(models, MANIFEST_NAME)))
    keys = [e["key"] for e in manifest["entries"] if e["kind"] == "model"]
    out = os.path.join(work, "retest.json")
    measure_manifest(os.path.join(models, MANIFEST_NAME), out, threads=threads, warmup=warmup, runs=runs, keys=keys,
                     command=command_line(),
                     progress=lambda d, n, k, s: log(f"[retest {d}/{n}] {k}"))


def callgrind(space, work: str, n_pairs: int) -> None:
    """Instructions per invoke (1 thread) of the bases and derived models of `n_pairs` precise pairs of
    different actions, and of every precise pair whose predicted saving has the wrong sign."""
    from android_ios_bench.export import MANIFEST_NAME
    from android_ios_bench.host.cli import default_models_dir
    from ef_keras.output import write_json

    deltas = json.load(open(os.path.join(work, "deltas.json")))
    models = default_models_dir(space, "fp32")
    manifest = json.load(open(os.path.join(models, MANIFEST_NAME)))
    paths = {e["unit"]["name"]: os.path.join(models, e["tflite"]) for e in manifest["entries"] if e["kind"] == "model"}
    from android_ios_bench.lut import load_lut

    precise = [p for p in deltas["pairs"] if p["precise"]]
    table = {(r["base"], r["derived"]): r for r in delta_table(load_lut(os.path.join(work, "lut.json")),
                                                                "median_ms")["pairs"]}
    wrong = [p for p in precise if (table[(p["base"], p["derived"])]["predicted_pct"] > 0) != (p["delta_ms"] > 0)]
    chosen = _spread(precise, n_pairs)
    chosen += [p for p in wrong if p not in chosen]
    out_path = os.path.join(work, "callgrind.json")
    counts = json.load(open(out_path))["instructions"] if os.path.exists(out_path) else {}
    for pair in chosen:
        for name in (pair["base"], pair["derived"]):
            if name not in counts:
                counts[name] = _instructions_per_invoke(paths[name])
                log(f"[callgrind] {name}: {counts[name]:,} instructions per invoke")
                write_json(out_path, {"pairs": [], "instructions": counts})
    write_json(out_path, {"pairs": [[p["base"], p["derived"]] for p in chosen], "instructions": counts})


def _spread(pairs, n):
    """n pairs of different actions where possible (depth, width, mb3d in turn)."""
    out, by_action = [], {}
    for p in pairs:
        by_action.setdefault(p["action"], []).append(p)
    while len(out) < n and any(by_action.values()):
        for action in list(by_action):
            if by_action[action] and len(out) < n:
                out.append(by_action[action].pop(0))
    return out


RUNNER = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.random.default_rng(0).standard_normal(d["shape"]).astype("float32"))
for _ in range(int(sys.argv[2])):
    it.invoke()
"""


def _instructions_per_invoke(path: str) -> int:
    """callgrind's instruction count of one invoke: (3 invokes - 1 invoke) / 2, so set-up cancels."""
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = os.path.join(tmp, "runner.py")
        open(runner, "w").write(RUNNER)
        for n in (1, 3):
            out = os.path.join(tmp, f"cg{n}.out")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no",
                            f"--toggle-collect={CALLGRIND_TOGGLE}", sys.executable, runner, path, str(n)],
                           check=True, capture_output=True)
            counts.append(next(int(line.split()[1]) for line in open(out) if line.startswith("summary:")))
    return (counts[1] - counts[0]) // 2


# ----------------------------------------------------------------------------- analysis
def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two sequences (scipy's definition)."""
    from scipy.stats import kendalltau
    return float(kendalltau(a, b).statistic)


def with_method(doc: dict, work: str, space, method: str) -> dict:
    """The session LUT with its entries computed by `method` from the session's timings journal."""
    from android_ios_bench.export import MANIFEST_NAME
    from android_ios_bench.host.cli import default_models_dir
    from android_ios_bench.host.harness import entries_from_journal, timings_path

    if method == doc["measurement"]["method"]:
        return doc
    manifest = json.load(open(os.path.join(default_models_dir(space, "fp32"), MANIFEST_NAME)))
    journal = json.load(open(timings_path(os.path.join(work, "lut.json"))))
    out = copy.deepcopy(doc)
    out["entries"] = entries_from_journal(manifest["entries"], journal, method)
    out["measurement"]["method"] = method
    out.pop("correction", None)
    return out


def whole_models(doc: dict, statistic: str) -> dict:
    """Plain-sum and one-global-scale (LOO) errors and Kendall tau of the LUT's reference models."""
    from android_ios_bench.correction import fit_correction
    from android_ios_bench.predictor import predict

    refs = doc["reference_models"]
    preds = [predict(r["config"], doc, correction=False, statistic=statistic, input_size=doc["search_space"]
                     ["input_size"]) for r in refs]
    pred = np.array([p.sum_ms for p in preds])
    meas = np.array([r[statistic] for r in refs])
    rel = (pred - meas) / meas
    coef, loo = fit_correction([p.by_kind() for p in preds], meas, "scale")
    return {"plain_mean_pct": 100 * float(np.mean(np.abs(rel))), "plain_max_pct": 100 * float(np.max(np.abs(rel))),
            "scale": float(coef[0]), "scaled_loo_mean_pct": 100 * float(np.mean(np.abs(loo))),
            "scaled_loo_max_pct": 100 * float(np.max(np.abs(loo))), "kendall_tau": kendall_tau(pred, meas),
            "models": [{"name": r["name"], "plain_sum_ms": float(p), "scaled_loo_ms": float(m * (1 + e)),
                        "measured_ms": float(m)} for r, p, m, e in zip(refs, pred, meas, loo)]}


def delta_table(doc: dict, statistic: str) -> dict:
    """Each pair's measured and predicted (plain-sum) saving as a fraction of its base, and the error."""
    from android_ios_bench.correction import relative_saving_error
    from android_ios_bench.predictor import predict

    rows = []
    for p in doc.get("delta_validation", {}).get("pairs", []):
        base, derived = (predict(p[k], doc, correction=False, statistic=statistic,
                                 input_size=doc["search_space"]["input_size"]).sum_ms
                         for k in ("base_config", "derived_config"))
        rows.append({"base": p["base"], "derived": p["derived"], "action": p["action"], "stage": p["stage"],
                     "measured_ms": p["delta_ms"], "ci95_ms": p["ci95_ms"], "base_ms": p["base_ms"],
                     "rounds": p["rounds"],
                     "kept": p["kept_rounds"], "outside_noise": p["outside_noise"], "precise": p["precise"],
                     "measured_pct": 100 * p["delta_ms"] / p["base_ms"],
                     "predicted_pct": 100 * (base - derived) / base,
                     "predicted_ms": (base - derived) / base * p["base_ms"],
                     "error_pct": 100 * relative_saving_error(base, derived, p)})
    outside = [r for r in rows if r["outside_noise"]]
    errors = np.array([abs(r["error_pct"]) for r in outside])
    return {"pairs": rows, "outside_noise": len(outside), "precise": sum(r["precise"] for r in rows),
            "mean_abs_pct": float(errors.mean()) if len(errors) else None,
            "max_abs_pct": float(errors.max()) if len(errors) else None,
            "sign_errors": sum((r["predicted_pct"] > 0) != (r["measured_ms"] > 0) for r in outside)}


def ceiling(doc: dict, retest_doc: dict, statistic: str) -> dict:
    """Test-retest: the same reference models in two sessions (Kendall tau, |difference| after one scale)."""
    now = {r["name"]: r[statistic] for r in retest_doc["reference_models"]}
    names = [r["name"] for r in doc["reference_models"] if r["name"] in now]
    a = np.array([next(r[statistic] for r in doc["reference_models"] if r["name"] == n) for n in names])
    b = np.array([now[n] for n in names])
    k = float(np.sum(b / a) / np.sum((b / a) ** 2))  # one scale, least squares on relative difference
    rel = (k * b - a) / a
    return {"models": len(names), "kendall_tau": kendall_tau(a, b), "scale": k,
            "mean_abs_pct": 100 * float(np.mean(np.abs(rel))), "max_abs_pct": 100 * float(np.max(np.abs(rel))),
            "date": retest_doc["measurement"]["date"], "notes": retest_doc["measurement"].get("notes", ""),
            "pairs": [[n, float(x), float(y)] for n, x, y in zip(names, a, b)]}


def delta_retest(doc: dict, other: dict) -> dict:
    """The same Δ pairs measured in two sessions: how far this session's measured saving (% of its base)
    is from the other's, over the pairs outside noise in the other, and how many 95 % CIs overlap."""
    mine = {(p["base"], p["derived"]): p for p in doc["delta_validation"]["pairs"]}
    rows = []
    for p in other["delta_validation"]["pairs"]:
        q = mine.get((p["base"], p["derived"]))
        if q is None or not p["outside_noise"]:
            continue
        this, that = q["delta_ms"] / q["base_ms"], p["delta_ms"] / p["base_ms"]
        rows.append({"base": p["base"], "derived": p["derived"], "this_ms": q["delta_ms"], "this_ci95_ms": q["ci95_ms"],
                     "other_ms": p["delta_ms"], "other_ci95_ms": p["ci95_ms"], "diff_pct": 100 * (this - that) / abs(that),
                     "cis_overlap": q["ci95_ms"][0] <= p["ci95_ms"][1] and p["ci95_ms"][0] <= q["ci95_ms"][1]})
    diffs = np.abs([r["diff_pct"] for r in rows])
    return {"pairs": rows, "mean_abs_pct": float(diffs.mean()) if rows else None,
            "median_abs_pct": float(np.median(diffs)) if rows else None,
            "overlapping_cis": sum(r["cis_overlap"] for r in rows),
            "sign_flips": sum((r["this_ms"] > 0) != (r["other_ms"] > 0) for r in rows)}


def other_session(doc: dict, name: str) -> dict:
    """A second full session of the same protocol (`--other-session`): the whole-model ceiling between the
    two sessions, the Δ test-retest, and this LUT's predicted Δs against the Δs measured there."""
    from android_ios_bench.lut import load_lut

    work = session_dir("v1", name)
    other = load_lut(os.path.join(work, "lut.json"))
    against = copy.deepcopy(doc)
    against["delta_validation"] = other["delta_validation"]
    return {"session": name, "date": other["measurement"]["date"],
            "figures": json.load(open(os.path.join(work, "session.json"))),
            "non_monotone": len(other["measurement"].get("non_monotone", [])),
            "ceiling": {stat: ceiling(doc, other, stat) for stat in STATISTICS},
            "delta_retest": delta_retest(doc, other),
            "deltas_against_other": {stat: {k: v for k, v in delta_table(against, stat).items() if k != "pairs"}
                                     for stat in STATISTICS},
            "other_lut_on_its_deltas": {stat: {k: v for k, v in delta_table(other, stat).items() if k != "pairs"}
                                        for stat in STATISTICS}}


def analyse(family: str, space, work: str, other: str | None = None) -> dict:
    from android_ios_bench.lut import load_lut

    doc = load_lut(os.path.join(work, "lut.json"))
    figures = json.load(open(os.path.join(work, "session.json")))
    retest_doc = load_lut(os.path.join(work, "retest.json")) if os.path.exists(os.path.join(work, "retest.json")) \
        else None
    result = {"family": family, "date": doc["measurement"]["date"], "device": doc["device"],
              "runtime": doc["runtime"], "runs": doc["measurement"]["runs"], "units": len(doc["entries"]),
              "models": len(doc["reference_models"]), "session": figures,
              "measurement_notes": doc["measurement"].get("notes", ""),
              "retimed": len(doc["measurement"].get("retimed", [])),
              "non_monotone": doc["measurement"].get("non_monotone", []),
              "correction": doc.get("correction"), "correction_candidates": doc.get("correction_candidates"),
              "delta_rule": doc.get("delta_validation", {}).get("rule"), "methods": {}}
    for method in ("in_rotation", "in_context"):
        mdoc = with_method(doc, work, space, method)
        result["methods"][method] = {stat: {"whole": whole_models(mdoc, stat), "deltas": delta_table(mdoc, stat)}
                                     for stat in STATISTICS}
    if retest_doc:
        result["ceiling"] = {stat: ceiling(doc, retest_doc, stat) for stat in STATISTICS}
    cg = os.path.join(work, "callgrind.json")
    if os.path.exists(cg):
        result["callgrind"] = callgrind_rows(json.load(open(cg)), doc)
    if other:
        result["other_session"] = other_session(doc, other)
    return result


def callgrind_rows(cg: dict, doc: dict) -> list[dict]:
    pairs = {(p["base"], p["derived"]): p for p in doc["delta_validation"]["pairs"]}
    rows = []
    for base, derived in cg["pairs"]:
        p, n = pairs[(base, derived)], cg["instructions"]
        if base in n and derived in n:
            rows.append({"base": base, "derived": derived, "action": p["action"], "stage": p["stage"],
                         "base_instructions": n[base], "derived_instructions": n[derived],
                         "instructions_saved_pct": 100 * (n[base] - n[derived]) / n[base],
                         "time_saved_pct": 100 * p["delta_ms"] / p["base_ms"]})
    return rows


# ----------------------------------------------------------------------------- report
#: The result file and plot this benchmark writes into --results-dir (V2: with a `_v2` suffix).
RESULT = "lut_validation.json"
PLOT = "lut_validation.png"


def result_names(family: str) -> tuple[str, str]:
    """(result file, plot) of a family."""
    suffix = "_v2" if family == "v2" else ""
    return RESULT.replace(".json", f"{suffix}.json"), PLOT.replace(".png", f"{suffix}.png")


def _f(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def verdicts(r: dict) -> list[str]:
    """The issue's goals (`benchmarks/goals.json`), each met or not, from the chosen statistic's figures."""
    from benchmarks.goals import verdict

    stat = (r["correction"] or {}).get("statistic", "median_ms")
    w, d = r["methods"]["in_rotation"][stat]["whole"], r["methods"]["in_rotation"][stat]["deltas"]
    out = [f"{r['models']} whole models after one global scale (LOO), mean |error|: "
           + verdict("lut_scaled_mean_abs_pct", w["scaled_loo_mean_pct"], f"{w['scaled_loo_mean_pct']:.1f} %"),
           "max |error|: " + verdict("lut_scaled_max_abs_pct", w["scaled_loo_max_pct"],
                                     f"{w['scaled_loo_max_pct']:.1f} %"),
           "Kendall τ: " + verdict("lut_kendall_tau", w["kendall_tau"], f"{w['kendall_tau']:.3f}")]
    if r.get("ceiling"):
        gap = r["ceiling"][stat]["kendall_tau"] - w["kendall_tau"]
        out.append("τ below the test-retest ceiling: " + verdict("lut_tau_below_ceiling", gap, f"{gap:.3f}"))
    if d["mean_abs_pct"] is not None:
        out += [f"Δ-latency of the {d['outside_noise']} pairs outside noise, mean |error|: "
                + verdict("lut_delta_mean_abs_pct", d["mean_abs_pct"], f"{d['mean_abs_pct']:.1f} %"),
                "Δ sign errors among them: " + verdict("lut_delta_sign_errors", d["sign_errors"])]
    times = [r["session"]["measure_s"]] + ([r["other_session"]["figures"]["measure_s"]] if r.get("other_session")
                                           else [])
    minutes = max(times) / 60  # a resumed run records only its own part: the longest session is the honest figure
    out.append(f"LUT measurement time (units, reference models, re-timing; the longest of {len(times)} session(s)): "
               + verdict("lut_measure_minutes", minutes, f"{minutes:.1f} min"))
    return out


def render(r: dict) -> str:
    """The README region: session, whole models, ceiling, correction forms, Δs, instruction counts, goals."""
    fit = r["correction"] or {}
    stat = fit.get("statistic", "median_ms")
    s = r["session"]
    lines = [f"{r['family'].upper()}, {r['units']} units and {r['models']} whole reference models in one rotation "
             f"({r['date'][:16]} UTC), LiteRT/XNNPACK {r['runtime']['precision']}, {r['runtime']['threads']} "
             f"threads, {r['runs']} rounds; unit and model timing {s['measure_s'] / 60:.1f} min in the run that finished it"
             + (f", Δ pairs {s['delta_s'] / 60:.1f} min" if "delta_s" in s else "")
             + f"; 1-min load average {s['load_before']:.1f} at the start, {s['load_after_measure']:.1f} after the "
               f"units" + (f", {s['load_after_deltas']:.1f} after the Δs" if "load_after_deltas" in s else "")
             + f". Units re-timed for monotonicity: {r['retimed']}; neighbour pairs still not monotone: "
               f"{len(r['non_monotone'])}.", "",
             "**Whole models** (plain sum, one global scale leave-one-out) **and Δs** (plain sum; pairs outside "
             "noise):", "",
             "| method | statistic | plain sum mean / max abs err % | one scale (LOO) mean / max % | Kendall τ "
             "| Δ mean / max abs err % (pairs) | Δ sign errors |",
             "|---|---|---|---|---|---|---|"]
    for method, by_stat in r["methods"].items():
        for st, m in by_stat.items():
            w, d = m["whole"], m["deltas"]
            lines.append(f"| {method} | {st} | {_f(w['plain_mean_pct'])} / {_f(w['plain_max_pct'])} | "
                         f"{_f(w['scaled_loo_mean_pct'])} / {_f(w['scaled_loo_max_pct'])} | {w['kendall_tau']:.3f} | "
                         f"{_f(d['mean_abs_pct'])} / {_f(d['max_abs_pct'])} ({d['outside_noise']}) | "
                         f"{d['sign_errors']} |")
    if r.get("ceiling"):
        c = r["ceiling"][stat]
        lines += ["", "**Test-retest ceiling** (the reference models in a second session, "
                  f"{c['date'][:16]} UTC; {c['notes']}):", "",
                  "| statistic | models | Kendall τ between sessions | mean / max abs difference after one scale % |",
                  "|---|---|---|---|"]
        for st, c in r["ceiling"].items():
            lines.append(f"| {st} | {c['models']} | {c['kendall_tau']:.3f} | {_f(c['mean_abs_pct'])} / "
                         f"{_f(c['max_abs_pct'])} |")
    if r["correction_candidates"]:
        lines += ["", f"**Correction forms** ({stat}; whole models leave-one-out, Δs leave-pair-out):", "",
                  "| form | coefficients | whole models mean / max % | Δ mean / max % | Δ sign errors | chosen |",
                  "|---|---|---|---|---|---|"]
        for c in r["correction_candidates"]:
            lines.append(f"| {c['form']} | {', '.join(f'{x:.4g}' for x in c['coefficients'])} | "
                         f"{_f(c['loo_mean_abs_pct'])} / {_f(c['loo_max_abs_pct'])} | "
                         f"{_f(c.get('delta_mean_abs_pct'))} / {_f(c.get('delta_max_abs_pct'))} | "
                         f"{c.get('delta_sign_errors', '–')} | {'**yes**' if c['form'] == fit.get('form') else ''} |")
    d = r["methods"]["in_rotation"][stat]["deltas"]
    if d["pairs"]:
        lines += ["", f"**Single-action Δs** (in rotation, {stat}; saving as % of the base model):", "",
                  "| base | derived | action | measured Δ ms [95 % CI] | rounds (kept) | measured % | predicted % "
                  "| error % |", "|---|---|---|---|---|---|---|---|"]
        for p in d["pairs"]:
            action = p["action"] + ("" if p["stage"] is None else f" s{p['stage'] + 1}")
            noise = "" if p["outside_noise"] else " (within noise)"
            lines.append(f"| {p['base']} | {p['derived']} | {action} | {p['measured_ms']:.3f} [{p['ci95_ms'][0]:.3f}, "
                         f"{p['ci95_ms'][1]:.3f}]{noise} | {p['rounds']} ({p['kept']}) | {p['measured_pct']:.2f} | "
                         f"{p['predicted_pct']:.2f} | {p['error_pct']:.1f} |")
    if r.get("callgrind"):
        lines += ["", "**Instruction counts** (valgrind callgrind, 1 thread) against measured savings:", "",
                  "| base | derived | action | instructions per invoke (base / derived) | instructions saved % | "
                  "time saved % |", "|---|---|---|---|---|---|"]
        for c in r["callgrind"]:
            lines.append(f"| {c['base']} | {c['derived']} | {c['action']} | {c['base_instructions']:,} / "
                         f"{c['derived_instructions']:,} | {c['instructions_saved_pct']:.2f} | "
                         f"{c['time_saved_pct']:.2f} |")
    if r.get("other_session"):
        o = r["other_session"]
        f, c, t = o["figures"], o["ceiling"][stat], o["delta_retest"]
        mine, theirs = o["deltas_against_other"][stat], o["other_lut_on_its_deltas"][stat]
        lines += ["", f"**A second full session** of the same protocol ({o['date'][:16]} UTC, 1-min load average "
                  f"{f['load_before']:.1f} at the start, {f['load_after_measure']:.1f} after the units, "
                  f"{f.get('load_after_deltas', float('nan')):.1f} after the Δs; {o['non_monotone']} neighbour pairs "
                  "still not monotone):", "",
                  f"- its {c['models']} whole models against this session's ({stat}): Kendall τ {c['kendall_tau']:.3f}, "
                  f"mean / max |difference| after one scale {_f(c['mean_abs_pct'])} / {_f(c['max_abs_pct'])} %;",
                  f"- the same {len(t['pairs'])} Δ pairs (those outside noise there), measured saving here against "
                  f"there: mean / median |difference| {_f(t['mean_abs_pct'])} / {_f(t['median_abs_pct'])} % of the "
                  f"saving, 95 % CIs overlapping for {t['overlapping_cis']}, sign flips {t['sign_flips']};",
                  f"- this table's predicted Δs against the Δs measured there: mean / max |error| "
                  f"{_f(mine['mean_abs_pct'])} / {_f(mine['max_abs_pct'])} %, sign errors {mine['sign_errors']}; "
                  f"that session's own table on them: {_f(theirs['mean_abs_pct'])} / {_f(theirs['max_abs_pct'])} %, "
                  f"sign errors {theirs['sign_errors']}."]
    lines += ["", "**Goals** (issue 19, `benchmarks/goals.json`):", ""] + [f"- {v}" for v in verdicts(r)]
    return "\n".join(lines) + "\n"


def plot(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ef_keras.output import writing

    stat = (r["correction"] or {}).get("statistic", "median_ms")
    m = r["methods"]["in_rotation"][stat]
    panels = 1 + bool(m["deltas"]["pairs"]) + bool(r.get("ceiling"))
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    meas = np.array([x["measured_ms"] for x in m["whole"]["models"]])
    pred = np.array([x["scaled_loo_ms"] for x in m["whole"]["models"]])
    hi = max(meas.max(), pred.max()) * 1.1
    ax.fill_between([0, hi], [0, hi * 0.96], [0, hi * 1.04], color="0.85", label="±4 %")
    ax.plot([0, hi], [0, hi], "k-", lw=1)
    ax.scatter(meas, pred, s=14, label=f"one global scale, LOO (τ {m['whole']['kendall_tau']:.3f})")
    ax.set(xlabel=f"measured {stat} (ms)", ylabel="predicted (ms)", xlim=(0, hi), ylim=(0, hi),
           title=f"{r['models']} whole models")
    ax.legend(loc="upper left", fontsize=8)
    if m["deltas"]["pairs"]:
        ax = axes.pop(0)
        pairs = m["deltas"]["pairs"]
        top = max(max(p["measured_pct"] for p in pairs), max(p["predicted_pct"] for p in pairs)) * 1.15
        low = min(0, min(p["measured_pct"] for p in pairs) * 1.15)
        ax.fill_between([0, top], [0, top * 0.85], [0, top * 1.15], color="0.85", label="±15 %")
        ax.plot([low, top], [low, top], "k-", lw=1)
        for action, marker in (("depth", "o"), ("width", "^"), ("mb3d", "s")):
            sel = [p for p in pairs if p["action"] == action]
            ax.errorbar([p["measured_pct"] for p in sel], [p["predicted_pct"] for p in sel], fmt=marker, label=action,
                        ms=5, xerr=[[100 * (p["measured_ms"] - p["ci95_ms"][0]) / p["base_ms"] for p in sel],
                                    [100 * (p["ci95_ms"][1] - p["measured_ms"]) / p["base_ms"] for p in sel]])
        ax.set(xlabel="measured saving, % of the base model (95 % CI)", ylabel="predicted saving (plain sum), %",
               title="single slimming actions", xlim=(low, top), ylim=(low, top))
        ax.legend(loc="upper left", fontsize=8)
    if r.get("ceiling"):
        ax = axes.pop(0)
        c = r["ceiling"][stat]
        a = np.array([x[1] for x in c["pairs"]])
        b = np.array([x[2] for x in c["pairs"]]) * c["scale"]
        hi = max(a.max(), b.max()) * 1.1
        ax.plot([0, hi], [0, hi], "k-", lw=1)
        ax.scatter(a, b, s=14, color="C2", label=f"τ {c['kendall_tau']:.3f}, mean |diff| {c['mean_abs_pct']:.1f} %")
        ax.set(xlabel=f"session 1 {stat} (ms)", ylabel="session 2 (one scale) (ms)", xlim=(0, hi), ylim=(0, hi),
               title="test-retest ceiling")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def define_flags():
    """Defines this tool's flags (importing the module defines none)."""
    from absl import flags

    from benchmarks import define_results_dir_flag

    flags.DEFINE_enum("family", "v1", ["v1", "v2"], "EfficientFormer (v1) or EfficientFormerV2 (v2)")
    flags.DEFINE_integer("runs", 200, "timed rounds of the LUT session's rotation", lower_bound=50)
    flags.DEFINE_integer("warmup", 5, "untimed invocations per model", lower_bound=0)
    flags.DEFINE_integer("threads", 2, "LiteRT threads", lower_bound=1)
    flags.DEFINE_string("session", None, "session directory name under ~/.cache/ef_keras/lut_validation "
                                         "(default: the family)")
    flags.DEFINE_string("write-lut", None, "copy the session's LUT (the shipped table) here")
    flags.DEFINE_bool("retest", False, "time the reference models again (a second session: the ceiling)")
    flags.DEFINE_integer("callgrind", 0, "count instructions (valgrind, 1 thread) of this many precise Δ pairs",
                         lower_bound=0)
    flags.DEFINE_bool("analyse", False, "only re-analyse what the session directory holds")
    flags.DEFINE_string("other-session", None, "compare with this second full session (V1; its directory name)")
    define_results_dir_flag()


def main(argv):
    from absl import flags

    from android_ios_bench.lut import load_lut, save_lut
    from benchmarks import finish
    from ef_keras import provenance

    del argv
    F = flags.FLAGS
    run = provenance.start()
    space = space_of(F.family)
    work = session_dir(F.family, F.session)
    if F.retest:
        retest(space, work, F.runs, F.warmup, F.threads)
    elif F.callgrind:
        callgrind(space, work, F.callgrind)
    elif not F.analyse:
        measure_session(space, work, F.runs, F.warmup, F.threads)
    result = analyse(F.family, space, work, F["other-session"].value)
    if F["write-lut"].value:
        save_lut(load_lut(os.path.join(work, "lut.json")), F["write-lut"].value)
        result["wrote_lut"] = F["write-lut"].value
    result_file, plot_file = result_names(F.family)
    os.makedirs(F["results-dir"].value, exist_ok=True)
    plot(result, os.path.join(F["results-dir"].value, plot_file))
    return finish(run, result_file, result, render)


if __name__ == "__main__":
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main)

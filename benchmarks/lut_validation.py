"""Is the latency predictor right about what slimming compares? Units and whole models, one session.

    python benchmarks/lut_validation.py [--random 20] [--runs 50] [--out benchmarks/results] [--write-lut PATH]

One run, one process: the LUT's micro-models (the host harness' export cache) and whole
models - L1, L3, L7, the search's supernet (its slimming start), `--random` seeded random
architectures of the search space, and single slimming actions (depth, MB3D, width) applied
to several of them - go into one manifest and are timed by the host harness
(`measure_manifest`: groups of 12 mixing units and models, shuffled rounds, interleaved),
so the LUT the predictor sums and the models it is compared with share the session.

Reported, for the median, the p10 and the minimum of the timings:
(a) the plain sum's mean/max |error|, and after one fitted global scale (least squares on
    relative error, leave-one-out); (b) Kendall tau between predicted and measured;
(c) the error of predicted vs measured Delta-latency of single actions, relative to the
    measured Delta; and the correction (`predictor.refit_correction`: global scale + constant
    or per-family scales + constant) with its leave-one-out error.
`--write-lut` writes the session's LUT (units, L1/L3 and six random models as its reference
models, their correction) to PATH; `--session LUT` re-analyses a recorded session.
Outputs lut_validation.{json,md,png} in --out.

EfficientFormerV2 (`--family v2 --session LUT`): a V2 LUT measured by
`python -m android_ios_bench.host --family v2` already is one session of its units and
whole models (S0/S1/S2/L and four random V2 architectures, its reference models), so the same
analysis (a)-(b) and the correction's leave-one-out error run on those; no single-action
pairs. Outputs lut_validation_v2.{json,md,png}.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MAX_DEPTHS = (6, 6, 18, 8)  # L7's: the deepest named model
STATISTICS = ("median_ms", "p10_ms", "min_ms")
DEFAULT_STAT = "min_ms"  # android_ios_bench.predictor.CORRECTION_STATISTIC


def random_configs(n: int, max_widths, step: int, seed: int):
    """`n` random architectures of the search space (seeded)."""
    from ef_keras import EfficientFormerConfig
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        widths = tuple(int(rng.integers(1, m // step + 1)) * step for m in max_widths)
        depths = tuple(int(rng.integers(1, d + 1)) for d in MAX_DEPTHS)
        out.append(EfficientFormerConfig(widths=widths, depths=depths, num_vit=int(rng.integers(0, depths[3] + 1)),
                                         name=f"random{i}"))
    return out


def action_pairs(bases):
    """(base, derived, action) for the three slimming actions applied to each base config."""
    pairs = []
    for base in bases:
        d = list(base.depths)
        if d[2] > 1:
            d[2] -= 1
            pairs.append((base, dataclasses.replace(base, depths=tuple(d), name=f"{base.name}-depth"), "depth"))
        if base.num_vit:
            pairs.append((base, dataclasses.replace(base, num_vit=base.num_vit - 1, name=f"{base.name}-mb3d"), "mb3d"))
        s = int(np.argmax(base.widths))
        if base.widths[s] > 16:
            w = list(base.widths)
            w[s] -= 16
            pairs.append((base, dataclasses.replace(base, widths=tuple(w), name=f"{base.name}-width"), "width"))
    return pairs


def validation_manifest(configs, units_dir: str, out_dir: str, space) -> str:
    """A manifest of the unit micro-models (linked from `units_dir`) plus the whole models, exported into out_dir."""
    from android_ios_bench.export import export_items, model_item
    from android_ios_bench.lut import load_manifest, save_manifest

    units = load_manifest(os.path.join(units_dir, "manifest.json"), require_files="tflite")
    os.makedirs(os.path.join(out_dir, "tflite"), exist_ok=True)
    for e in units["entries"]:
        link = os.path.join(out_dir, e["tflite"])
        if not os.path.lexists(link):
            os.symlink(os.path.join(units_dir, e["tflite"]), link)
    manifest = export_items([model_item(c.name, c, space, group="validation") for c in configs], out_dir,
                            search_space=space,
                            progress=lambda d, n, k, s: print(f"[export {d}/{n}] {k} {s:.0f}s", file=sys.stderr,
                                                              flush=True))
    keys = {e["key"] for e in manifest["entries"]}
    manifest.pop("_dir", None)
    manifest["entries"] += [e for e in units["entries"] if e["key"] not in keys]
    path = os.path.join(out_dir, "manifest.json")
    save_manifest(manifest, path)
    return path


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two sequences (scipy's definition)."""
    from scipy.stats import kendalltau
    return float(kendalltau(a, b).statistic)


def analyse(doc, configs, pairs) -> dict:
    """Errors of the plain sum, of one global scale (LOO), Kendall tau, Delta errors and the correction fit."""
    from android_ios_bench.predictor import CORRECTION_FORMS, fit_correction, predict

    refs = {r["name"]: r for r in doc["reference_models"]}
    out = {}
    for stat in STATISTICS:
        preds = {c.name: predict(c, doc, correction=False, statistic=stat) for c in configs}
        names = [c.name for c in configs]
        pred = np.array([preds[n].sum_ms for n in names])
        meas = np.array([refs[n][stat] for n in names])
        rel = (pred - meas) / meas
        scaled = np.zeros_like(pred)  # leave-one-out single scale (least squares on relative error)
        for i in range(len(pred)):
            keep = np.arange(len(pred)) != i
            k = float(np.sum(meas[keep] / pred[keep]) / keep.sum())
            scaled[i] = k * pred[i]
        scale_all = float(np.mean(meas / pred))
        srel = (scaled - meas) / meas
        deltas = []
        for base, derived, action in pairs:
            dp = preds[base.name].sum_ms - preds[derived.name].sum_ms
            dm = refs[base.name][stat] - refs[derived.name][stat]
            deltas.append({"base": base.name, "action": action, "predicted_ms": round(dp, 4),
                           "predicted_scaled_ms": round(scale_all * dp, 4), "measured_ms": round(dm, 4),
                           "error_pct": round(100 * (scale_all * dp - dm) / abs(dm), 2) if dm else None})
        derr = np.array([abs(d["error_pct"]) for d in deltas if d["error_pct"] is not None])
        fits = {}
        for form in CORRECTION_FORMS:
            _, loo = fit_correction([preds[n].by_kind() for n in names], meas, form)
            fits[form] = {"loo_mean_abs_pct": round(100 * float(np.mean(np.abs(loo))), 2),
                          "loo_max_abs_pct": round(100 * float(np.max(np.abs(loo))), 2)}
        out[stat] = {
            "abs_mean_pct": round(100 * float(np.mean(np.abs(rel))), 2),
            "abs_max_pct": round(100 * float(np.max(np.abs(rel))), 2),
            "global_scale": round(scale_all, 4),
            "scaled_loo_mean_pct": round(100 * float(np.mean(np.abs(srel))), 2),
            "scaled_loo_max_pct": round(100 * float(np.max(np.abs(srel))), 2),
            "kendall_tau": round(kendall_tau(pred, meas), 4),
            "delta_mean_abs_pct": round(float(derr.mean()), 2) if len(derr) else None,
            "delta_median_abs_pct": round(float(np.median(derr)), 2) if len(derr) else None,
            "corrections": fits,
            "models": [{"name": n, "predicted_sum_ms": round(float(p), 3), "scaled_loo_ms": round(float(s), 3),
                        "measured_ms": round(float(m), 3)} for n, p, s, m in zip(names, pred, scaled, meas)],
            "deltas": deltas}
    return out


def run_v2(session: str, out_dir="benchmarks/results"):
    """Analyses a V2 LUT's own session: its reference models against its units."""
    from android_ios_bench.lut import load_lut
    from ef_keras.registry import architecture

    doc = load_lut(session)
    configs = [dataclasses.replace(architecture(r["config"]), name=r["name"]) for r in doc["reference_models"]]
    result = {"date": doc["measurement"]["date"], "session_lut": session, "runs": doc["measurement"]["runs"],
              "threads": doc["runtime"].get("threads"), "models": len(configs), "action_pairs": 0,
              "units": len(doc["entries"]), "measurement_notes": doc["measurement"].get("notes", ""),
              "device": doc["device"], "correction": doc.get("correction"),
              "by_statistic": analyse(doc, configs, [])}
    write_results(result, out_dir, suffix="_v2", family="EfficientFormerV2 (S0/S1/S2/L and random V2 architectures)")
    return result


def run(n_random=20, seed=0, runs=50, warmup=5, threads=2, out_dir="benchmarks/results", write_lut=None,
        session=None):
    from android_ios_bench.host import measure_manifest
    from android_ios_bench.host.cli import default_models_dir
    from android_ios_bench.lut import default_lut_path, load_lut, save_lut
    from android_ios_bench.predictor import REFERENCE_RANDOM
    from android_ios_bench.units import SearchSpace
    from ef_keras import get_config
    from search.arch import full_arch
    from search.train_supernet import DEFAULT_SUPERNET

    space_obj = SearchSpace()
    space = space_obj.to_dict()
    units_dir = default_models_dir(space_obj, "fp32")
    if not os.path.exists(os.path.join(units_dir, "manifest.json")):
        raise SystemExit(f"no exported micro-models in {units_dir}: run `python -m android_ios_bench.host --lut-out "
                         "LUT` once (it exports them)")
    supernet = full_arch(DEFAULT_SUPERNET, DEFAULT_SUPERNET.depths[3]).to_config(DEFAULT_SUPERNET, name="supernet")
    named = [get_config(n) for n in ("l1", "l3", "l7")]
    randoms = random_configs(n_random, space["max_widths"], space["width_step"], seed)
    configs = named + [supernet] + randoms
    pairs = action_pairs([named[0], supernet] + randoms[:4])
    configs += [d for _, d, _ in pairs]
    start = time.time()
    if session is None:
        work = os.path.join(os.path.expanduser("~/.cache"), "ef_keras", "lut_validation")
        manifest = validation_manifest(configs, units_dir, work, space)
        session = os.path.join(work, f"session_{seed}.json")
        if os.path.exists(session):
            os.remove(session)  # every run is a fresh session
        doc = measure_manifest(manifest, session, threads=threads, warmup=warmup, runs=runs,
                               command="python benchmarks/lut_validation.py",
                               progress=lambda d, n, k, s: d % 50 == 0 and print(f"[measure {d}/{n}] {k}",
                                                                                  file=sys.stderr, flush=True))
    else:
        doc = load_lut(session)
    result = {"date": doc["measurement"]["date"], "session_lut": session, "runs": doc["measurement"]["runs"], "threads": threads, "models": len(configs), "action_pairs": len(pairs),
              "units": len(doc["entries"]), "timing_seconds": round(time.time() - start, 1),
              "measurement_notes": doc["measurement"].get("notes", ""), "device": doc["device"],
              "correction": doc.get("correction"), "by_statistic": analyse(doc, configs, pairs)}
    shipped = load_lut(default_lut_path())
    result["shipped_lut_date"] = shipped["measurement"]["date"]
    if write_lut:  # the harness' reference set: L1, L3 and six random architectures, measured in this session
        keep = {"l1", "l3"} | {c.name for c in randoms[:REFERENCE_RANDOM]}
        doc["reference_models"] = [r for r in doc["reference_models"] if r["name"] in keep]
        from android_ios_bench.predictor import refit_correction
        refit_correction(doc)
        save_lut(doc, write_lut)
        result["wrote_lut"] = write_lut
    write_results(result, out_dir)
    return result


def write_results(result, out_dir, suffix="", family="L1/L3/L7, the supernet, random architectures"):
    from ef_keras.output import write_json

    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, f"lut_validation{suffix}.json"), result)
    lines = [f"# Latency predictor vs measured, one session ({result['date']}, {result['threads']} threads, "
             f"{result['runs']} interleaved rounds; {result['measurement_notes']})", "",
             f"{result['units']} units and {result['models']} whole models ({family}, "
             f"{result['action_pairs']} single-action pairs) timed in one process by the host harness.",
             "", "| statistic | plain sum mean / max abs err % | one global scale (LOO) mean / max % | scale | "
             "Kendall tau | Delta-latency of single actions, mean / median abs err % | correction LOO mean / max % "
             "(global; per family) |", "|---|---|---|---|---|---|---|"]
    for stat, r in result["by_statistic"].items():
        g, f = r["corrections"]["global"], r["corrections"]["per_family"]
        lines.append(f"| {stat} | {r['abs_mean_pct']} / {r['abs_max_pct']} | {r['scaled_loo_mean_pct']} / "
                     f"{r['scaled_loo_max_pct']} | {r['global_scale']} | {r['kendall_tau']} | "
                     f"{r['delta_mean_abs_pct']} / {r['delta_median_abs_pct']} | {g['loo_mean_abs_pct']} / "
                     f"{g['loo_max_abs_pct']}; {f['loo_mean_abs_pct']} / {f['loo_max_abs_pct']} |")
    models = result["by_statistic"][DEFAULT_STAT]["models"]
    lines += ["", f"Whole models ({DEFAULT_STAT}, ms): plain sum of units, one global scale (LOO), measured:", "",
              "| model | plain sum | scaled (LOO) | measured |", "|---|---:|---:|---:|"]
    lines += [f"| {m['name']} | {m['predicted_sum_ms']:.3f} | {m['scaled_loo_ms']:.3f} | {m['measured_ms']:.3f} |"
              for m in models]
    if result["action_pairs"]:
        lines += ["", f"Single-action Delta-latency (scaled prediction vs measured, ms, {DEFAULT_STAT}):", "",
                  "| base | action | predicted | measured | err % |", "|---|---|---:|---:|---:|"]
        for d in result["by_statistic"][DEFAULT_STAT]["deltas"]:
            lines.append(f"| {d['base']} | {d['action']} | {d['predicted_scaled_ms']:.3f} | {d['measured_ms']:.3f} | "
                         f"{d['error_pct']} |")
    command = "python benchmarks/lut_validation.py"
    if suffix:
        command += f" --family v2 --session {result['session_lut']}"
    elif result.get("wrote_lut"):
        command += f" --write-lut {result['wrote_lut']}"
    lines += ["", f"Command: `{command}`", ""]
    from ef_keras.output import write_text
    write_text(os.path.join(out_dir, f"lut_validation{suffix}.md"), "\n".join(lines))
    plot(result, os.path.join(out_dir, f"lut_validation{suffix}.png"))


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result["by_statistic"][DEFAULT_STAT]
    fig, axes = plt.subplots(1, 2 if r["deltas"] else 1, figsize=(11 if r["deltas"] else 5.5, 5), squeeze=False)
    axes = axes[0]
    m = np.array([x["measured_ms"] for x in r["models"]])
    s = np.array([x["scaled_loo_ms"] for x in r["models"]])
    hi = max(m.max(), s.max()) * 1.1
    grid = np.array([0, hi])
    ax = axes[0]
    ax.plot(grid, grid, "k-", lw=1)
    ax.fill_between(grid, grid * 0.95, grid * 1.05, color="0.85", label="±5%")
    ax.scatter(m, s, s=14, label=f"one global scale, LOO (tau {r['kendall_tau']})")
    ax.set(xlabel=f"measured {DEFAULT_STAT} (ms)", ylabel="predicted (ms)", xlim=(0, hi), ylim=(0, hi),
           title="whole models")
    ax.legend(loc="upper left")
    for x in r["models"]:
        ax.annotate(x["name"], (x["measured_ms"], x["scaled_loo_ms"]), fontsize=7)
    if not r["deltas"]:
        _save(fig, path)
        return
    ax = axes[1]
    dm = np.array([d["measured_ms"] for d in r["deltas"]])
    dp = np.array([d["predicted_scaled_ms"] for d in r["deltas"]])
    top = max(dm.max(), dp.max()) * 1.15
    ax.plot([0, top], [0, top], "k-", lw=1)
    ax.fill_between([0, top], [0, top * 0.85], [0, top * 1.15], color="0.85", label="±15%")
    for action, marker in (("depth", "o"), ("mb3d", "s"), ("width", "^")):
        sel = [i for i, d in enumerate(r["deltas"]) if d["action"] == action]
        ax.scatter(dm[sel], dp[sel], marker=marker, label=action)
    ax.set(xlabel=f"measured Delta {DEFAULT_STAT} (ms)", ylabel="predicted Delta (ms)", title="single slimming actions")
    ax.legend(loc="upper left")
    _save(fig, path)


def _save(fig, path):
    import matplotlib.pyplot as plt

    from ef_keras.output import writing

    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main():
    from absl import app, flags
    flags.DEFINE_integer("random", 20, "random architectures besides L1/L3/L7 and the supernet")
    flags.DEFINE_integer("seed", 0, "seed of the random architectures")
    flags.DEFINE_integer("runs", 50, "timed interleaved rounds")
    flags.DEFINE_integer("warmup", 5, "untimed invocations per model")
    flags.DEFINE_integer("threads", 2, "LiteRT threads")
    flags.DEFINE_string("out", "benchmarks/results", "output directory")
    flags.DEFINE_string("write-lut", None, "write the session's LUT (units, reference models, correction) here")
    flags.DEFINE_string("session", None, "analyse this recorded session LUT instead of measuring a new one")
    flags.DEFINE_enum("family", "v1", ["v1", "v2"], "v2: analyse a V2 LUT (--session) against its reference models")
    F = flags.FLAGS

    def _run(argv):
        del argv
        if F.family == "v2":
            if not F.session:
                raise SystemExit("--family v2 analyses a V2 LUT: pass --session LUT "
                                 "(measure one with `python -m android_ios_bench.host --family v2 --lut-out LUT`)")
            run_v2(F.session, F.out)
        else:
            run(F.random, F.seed, F.runs, F.warmup, F.threads, F.out, F["write-lut"].value, F.session)
        print(open(os.path.join(F.out, f"lut_validation{'_v2' if F.family == 'v2' else ''}.md")).read())
    app.run(_run)


if __name__ == "__main__":
    main()

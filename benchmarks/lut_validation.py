"""How well does the LUT predict whole-model latency? Predicted (android_ios_bench.predictor) vs measured end to end.

    python benchmarks/lut_validation.py [--lut PATH] [--random 12] [--runs 50] [--out benchmarks/results]

Exports L1, L3, L7 and `--random` random architectures of the search space (widths multiples
of 16 up to the LUT's max, depths up to L7's, any number of final 3D blocks) with
deploy.to_tflite, times them with the host harness' protocol (LiteRT + XNNPACK, warm-up,
interleaved rounds, medians) and compares with predict(). Reports the plain per-unit sum and
an overhead model `measured ~ scale * sum + per_model_ms` fitted by least squares, with its
error estimated by leave-one-out (each model predicted by a fit on the others).
`--write-overhead` stores the full-data fit in the LUT when it beats the plain sum.
Writes lut_validation.{json,md,png} into --out.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MAX_DEPTHS = (6, 6, 18, 8)  # L7's: the deepest named model


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


def export_models(configs, models_dir: str, input_size: int) -> list[str]:
    """One verified fp32 .tflite per config (skipped if present; named by the architecture)."""
    import deploy
    import keras
    from ef_keras import EfficientFormer

    os.makedirs(models_dir, exist_ok=True)
    paths = []
    for cfg in configs:
        tag = "_".join(["w" + "-".join(map(str, cfg.widths)), "d" + "-".join(map(str, cfg.depths)), f"v{cfg.num_vit}"])
        path = os.path.join(models_dir, f"{tag}_s{input_size}.tflite")
        if not os.path.exists(path):
            start = time.time()
            model = EfficientFormer(cfg, input_shape=(input_size, input_size, 3))
            deploy.to_tflite(model, path, overwrite=True)
            keras.backend.clear_session()
            print(f"exported {cfg.name} {tag} in {time.time() - start:.0f}s", file=sys.stderr, flush=True)
        paths.append(path)
    return paths


def fit_overhead(sums, measured):
    """Least-squares measured ~ scale * sum + c; returns (scale, c)."""
    a = np.stack([sums, np.ones_like(sums)], axis=1)
    (scale, c), *_ = np.linalg.lstsq(a, measured, rcond=None)
    return float(scale), float(c)


def loo_predictions(sums, measured):
    """Leave-one-out predictions of the fitted overhead model."""
    out = np.zeros_like(sums)
    for i in range(len(sums)):
        keep = np.arange(len(sums)) != i
        scale, c = fit_overhead(sums[keep], measured[keep])
        out[i] = scale * sums[i] + c
    return out


def mape(pred, measured):
    return float(np.mean(np.abs(pred - measured) / measured) * 100)


def run(lut_path=None, n_random=12, seed=0, runs=50, warmup=5, threads=2, out_dir="benchmarks/results",
        models_dir=None, write_overhead=False):
    from android_ios_bench import lut as L
    from android_ios_bench.host import time_interleaved
    from ef_keras import get_config
    from android_ios_bench.predictor import predict

    lut_path = lut_path or L.default_lut_path()
    doc = L.load_lut(lut_path)
    space = doc["search_space"]
    named = [get_config(n) for n in ("l1", "l3", "l7")]
    configs = named + random_configs(n_random, space["max_widths"], space["width_step"], seed)
    models_dir = models_dir or os.path.join(os.path.expanduser("~/.cache"), "ef_keras", "lut_validation")
    paths = export_models(configs, models_dir, space["input_size"])
    print(f"timing {len(paths)} models, {runs} interleaved rounds ...", file=sys.stderr, flush=True)
    start = time.time()
    times = time_interleaved(paths, threads=threads, warmup=warmup, runs=runs, seed=seed)
    measured = np.array([np.median(t) for t in times])
    preds = [predict(c, doc, input_size=space["input_size"], overhead=False) for c in configs]
    sums = np.array([p.sum_ms for p in preds])
    # a low percentile resists the contention of a shared machine on both sides
    p10_measured = np.array([np.percentile(t, 10) for t in times])
    p10_sums = np.array([predict(c, doc, input_size=space["input_size"], overhead=False, statistic="p10_ms").sum_ms
                         for c in configs])
    loo = loo_predictions(sums, measured)
    scale, c = fit_overhead(sums, measured)
    rows = [{"name": cfg.name, "widths": list(cfg.widths), "depths": list(cfg.depths), "num_vit": cfg.num_vit,
             "measured_ms": round(float(m), 3), "p10_ms": round(float(np.percentile(t, 10)), 3),
             "p90_ms": round(float(np.percentile(t, 90)), 3), "predicted_sum_ms": round(float(s), 3),
             "predicted_fitted_loo_ms": round(float(f), 3), "error_sum_pct": round(float((s - m) / m * 100), 2),
             "error_fitted_loo_pct": round(float((f - m) / m * 100), 2),
             "predicted_p10_sum_ms": round(float(q), 3), "error_p10_pct": round(float((q - mp) / mp * 100), 2),
             "interpolated_units": len(p.interpolated)}
            for cfg, m, t, s, f, p, q, mp in zip(configs, measured, times, sums, loo, preds, p10_sums, p10_measured)]
    result = {"lut": os.path.relpath(lut_path), "lut_device": doc["device"], "lut_runtime": doc["runtime"],
              "lut_measured": doc["measurement"]["date"], "date": L.now_iso(), "runs": runs, "warmup": warmup,
              "threads": threads, "timing_seconds": round(time.time() - start, 1),
              "load_average": round(os.getloadavg()[0], 2),
              "mape_sum_pct": round(mape(sums, measured), 2), "mape_fitted_loo_pct": round(mape(loo, measured), 2),
              "mape_sum_named_pct": round(mape(sums[:3], measured[:3]), 2),
              "mape_p10_pct": round(mape(p10_sums, p10_measured), 2),
              "mape_p10_named_pct": round(mape(p10_sums[:3], p10_measured[:3]), 2),
              "mape_sum_random_pct": round(mape(sums[3:], measured[3:]), 2),
              "overhead_fit_all": {"scale": round(scale, 4), "per_model_ms": round(c, 4)}, "models": rows}
    if write_overhead and result["mape_fitted_loo_pct"] < result["mape_sum_pct"]:
        doc["overhead"] = {"scale": round(scale, 4), "per_model_ms": round(c, 4), "fitted_on": [r["name"] for r in rows],
                           "note": f"least squares on lut_validation ({result['date']}); leave-one-out MAPE "
                                   f"{result['mape_fitted_loo_pct']}% vs plain sum {result['mape_sum_pct']}%"}
        L.save_lut(doc, lut_path)
        result["overhead_written"] = True
    write_results(result, out_dir)
    return result


def write_results(result, out_dir):
    from android_ios_bench.lut import write_json_atomic
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(result, os.path.join(out_dir, "lut_validation.json"))
    lines = [f"# LUT predictor vs measured end-to-end latency ({result['lut_runtime']['name']} "
             f"{result['lut_runtime']['delegate']}, {result['threads']} threads, {result['lut_runtime']['precision']})",
             "", f"LUT: `{result['lut']}` (measured {result['lut_measured']}); models timed {result['date']}, "
             f"{result['runs']} interleaved rounds, medians; load average {result['load_average']}.", "",
             "| model | widths | depths | 3D | measured median (p10-p90) ms | sum of medians ms | err % "
             "| fitted (LOO) ms | err % | sum of p10s ms | err vs measured p10 % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["models"]:
        lines.append(f"| {r['name']} | {r['widths']} | {r['depths']} | {r['num_vit']} | {r['measured_ms']:.2f} "
                     f"({r['p10_ms']:.2f}-{r['p90_ms']:.2f}) | {r['predicted_sum_ms']:.2f} | {r['error_sum_pct']:+.1f} "
                     f"| {r['predicted_fitted_loo_ms']:.2f} | {r['error_fitted_loo_pct']:+.1f} "
                     f"| {r['predicted_p10_sum_ms']:.2f} | {r['error_p10_pct']:+.1f} |")
    fit = result["overhead_fit_all"]
    lines += ["", f"Mean absolute % error: plain sum **{result['mape_sum_pct']}%** (L1/L3/L7 "
              f"{result['mape_sum_named_pct']}%, random {result['mape_sum_random_pct']}%); fitted overhead model "
              f"(leave-one-out) **{result['mape_fitted_loo_pct']}%**. Fit on all models: measured = "
              f"{fit['scale']} x sum + {fit['per_model_ms']} ms. Sum of per-unit p10 vs measured p10 "
              f"(robust to contention): **{result['mape_p10_pct']}%** (L1/L3/L7 {result['mape_p10_named_pct']}%).",
              "", "Command: `python benchmarks/lut_validation.py`", ""]
    with open(os.path.join(out_dir, "lut_validation.md"), "w") as f:
        f.write("\n".join(lines))
    plot(result, os.path.join(out_dir, "lut_validation.png"))


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array([r["measured_ms"] for r in result["models"]])
    s = np.array([r["predicted_sum_ms"] for r in result["models"]])
    f = np.array([r["predicted_fitted_loo_ms"] for r in result["models"]])
    mp = np.array([r["p10_ms"] for r in result["models"]])
    q = np.array([r["predicted_p10_sum_ms"] for r in result["models"]])
    fig, ax = plt.subplots(figsize=(6, 6))
    hi = max(m.max(), s.max(), f.max(), q.max()) * 1.1
    grid = np.array([0, hi])
    ax.plot(grid, grid, "k-", lw=1, label="y = x")
    ax.fill_between(grid, grid * 0.9, grid * 1.1, color="0.85", label="±10%")
    ax.scatter(m, s, label=f"plain sum (MAPE {result['mape_sum_pct']}%)")
    ax.scatter(m, f, marker="x", label=f"fitted overhead, LOO (MAPE {result['mape_fitted_loo_pct']}%)")
    ax.scatter(mp, q, marker="^", label=f"p10 sum vs measured p10 (MAPE {result['mape_p10_pct']}%)")
    for r in result["models"][:3]:
        ax.annotate(r["name"].upper(), (r["measured_ms"], r["predicted_sum_ms"]), textcoords="offset points",
                    xytext=(5, -10))
    ax.set(xlabel="measured end-to-end latency (ms)", ylabel="predicted latency (ms)", xlim=(0, hi), ylim=(0, hi),
           title=f"LUT predictor, {result['lut_runtime']['name']} {result['threads']} threads")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def main():
    from absl import app, flags
    flags.DEFINE_string("lut", None, "LUT to validate (default: the embedded host LUT)")
    flags.DEFINE_integer("random", 12, "random architectures besides L1/L3/L7")
    flags.DEFINE_integer("seed", 0, "seed of the random architectures and the timing order")
    flags.DEFINE_integer("runs", 50, "timed interleaved rounds")
    flags.DEFINE_integer("warmup", 5, "untimed invocations per model")
    flags.DEFINE_integer("threads", 2, "LiteRT threads (should match the LUT's)")
    flags.DEFINE_string("out", "benchmarks/results", "output directory")
    flags.DEFINE_string("models-dir", None, "cache of exported whole models")
    flags.DEFINE_bool("write-overhead", False, "store the fitted overhead model in the LUT if it helps")
    F = flags.FLAGS

    def _run(argv):
        del argv
        try:
            r = run(F.lut, F.random, F.seed, F.runs, F.warmup, F.threads, F.out, F["models-dir"].value,
                    F["write-overhead"].value)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        print(open(os.path.join(F.out, "lut_validation.md")).read())
        print(f"plain-sum MAPE {r['mape_sum_pct']}%, fitted (LOO) MAPE {r['mape_fitted_loo_pct']}%")
    app.run(_run)


if __name__ == "__main__":
    main()

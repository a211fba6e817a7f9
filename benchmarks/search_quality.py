"""Search quality: does slimming find better architectures than scaled L1, random ones and null searches?

    python -m benchmarks.search_quality --supernet runs/main_job/supernet [--seeds 0,1] [--steps 240]

Protocol, fixed before running (issue 18; Yu et al. 2019 and Li & Talwalkar 2019 for the null
baselines):

- **Supernet and data.** The main job's supernet (quick settings, embedded Fashion-MNIST
  subset, 64 px). The search reads only the training images (search_train / search_val);
  every number below is on the 5,000 held-out **test** images, which the search never sees.
- **Targets.** Three LUT latencies spanning the supernet's range: 30 % and 80 % of the way
  from its smallest to its largest child, and EfficientFormer-L1's predicted latency
  (`--targets 30,l1,80`; a run of fewer targets is reported as such, and the primary goal is
  then not evaluable). Work directories are named by target, so a later run with more targets
  reuses what an earlier one finished.
- **Architectures per target.**
  - searched: `search.slim` (actions and importance as the main job);
  - uniform-importance search: the same with `--importance uniform` (α ignored);
  - random slimming: `--actions random` (random legal actions down to the target);
  - scaled L1: L1's widths and depths scaled by factors as close to each other as possible,
    predicted latency within ±2 % of the target;
  - 6 random architectures of the space (distinct), within ±2 % of the target.
- **Training.** Every architecture from scratch with the same budget (`--steps` batches of
  32 at the supernet's resolution, the EMBEDDED recipe's schedule, the supernet's layer-scale
  init), on the full training split, for every seed in `--seeds`. Per-image predictions on the
  test split are saved (`<work>/runs/*/test_predictions.npz`).
- **Primary endpoint.** Test top-1, mean over seeds, of searched − scaled L1 at each target,
  with a 95 % bootstrap CI (images resampled, the same resample for both architectures and
  every seed, 2,000 resamples). Goal: above 0 with the CI excluding 0 at >= 2 of 3 targets.
- **Secondary.** Searched's percentile among the random architectures (goal: above the 75th);
  Kendall τ between supernet-inherited and from-scratch test top-1 over every architecture
  (goal >= 0.6) with a bootstrap CI over architectures; mean ± SD over seeds for each.

The runs are resumable (each finished run is kept in `<work>`); results go to
benchmarks/results/search_quality.{json,png}. Expect hours on 2 shared cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from benchmarks import define_results_dir_flag, finish
from ef_keras import provenance
from ef_keras.cli import run as run_cli
from ef_keras.errors import InputError

RESULT = "search_quality.json"
PLOT = "search_quality.png"
PRIMARY_ENDPOINT = ("test top-1 (5,000 held-out images), mean over seeds, searched minus scaled L1, per target; "
                    "95 % bootstrap CI over images (2,000 resamples); success at >= 2 of 3 targets")
TOLERANCE = 0.02
NUM_RANDOM = 6
BOOTSTRAP = 2000


def scaled_l1(space, target_ms: float, predict) -> tuple[object, float, float]:
    """(Arch, width factor, depth factor) of the L1 scaled most uniformly (width factor closest to the depth
    factor, then latency closest to the target) within ±2 % of the target."""
    from search.arch import Arch

    l1 = ((48, 96, 224, 448), (3, 2, 6, 4))
    best = None
    for fd in np.arange(0.5, 1.51, 0.05):
        depths = tuple(min(max(1, int(round(d * fd))), dmax) for d, dmax in zip(l1[1], space.depths))
        for fw in np.arange(0.5, 1.51, 0.01):
            widths = tuple(int(min(max(round(w * fw / space.width_step) * space.width_step, lo), hi))
                           for w, lo, hi in zip(l1[0], space.min_widths, space.max_widths))
            choices = tuple(("4d",) * d + ("id",) * (dmax - d) for d, dmax in zip(depths, space.depths))
            choices = choices[:3] + (tuple("3d" if k == depths[3] - 1 else c for k, c in enumerate(choices[3])),)
            arch = Arch(widths, choices)
            latency = predict(arch)
            if abs(latency - target_ms) <= TOLERANCE * target_ms:
                key = (round(abs(fw - fd), 2), abs(latency - target_ms))  # most uniform, then closest
                if best is None or key < best[0]:
                    best = (key, arch, float(fw), float(fd))
    if best is None:
        raise ValueError(f"no scaled L1 within {TOLERANCE:.0%} of {target_ms:.3f} ms")
    return best[1], best[2], best[3]


def random_archs(space, target_ms: float, predict, n: int, seed: int, max_tries: int = 50_000):
    """n distinct random architectures of the space within ±2 % of the target (rejection sampling)."""
    from search.arch import Arch

    rng = np.random.default_rng(seed)
    found = []
    for _ in range(max_tries):
        widths = tuple(int(rng.choice(space.widths(s))) for s in range(4))
        keep = rng.uniform(0.3, 1.0)
        choices = [tuple("4d" if k == 0 or rng.random() < keep else "id" for k in range(d)) for d in space.depths]
        active = [k for k, c in enumerate(choices[3]) if c != "id"]
        n3d = int(rng.integers(0, len(active) + 1))
        choices[3] = tuple("3d" if k in active[len(active) - n3d:] else c for k, c in enumerate(choices[3]))
        arch = Arch(widths, tuple(choices))
        config = arch.to_config(space)
        if any(dataclasses.replace(config, name="") == dataclasses.replace(a.to_config(space), name="")
               for a in found):
            continue
        if abs(predict(arch) - target_ms) <= TOLERANCE * target_ms:
            found.append(arch)
            if len(found) == n:
                return found
    raise ValueError(f"found only {len(found)} random architectures within {TOLERANCE:.0%} of {target_ms:.3f} ms")


def bootstrap_diff(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of top-1(a) − top-1(b) in points and its 95 % CI; a, b: (seeds, images) correctness."""
    rng = np.random.default_rng(seed)
    d = (a.astype(float) - b.astype(float)).mean(axis=0)  # per image, averaged over seeds
    stats = [100.0 * d[rng.integers(0, len(d), len(d))].mean() for _ in range(BOOTSTRAP)]
    return 100.0 * float(d.mean()), float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def kendall_with_ci(x, y, seed: int = 0) -> tuple[float, float, float]:
    """Kendall τ of x vs y and a 95 % bootstrap CI over the pairs."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x), np.asarray(y)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(x), len(x))
        t = kendalltau(x[idx], y[idx]).statistic
        if np.isfinite(t):
            taus.append(t)
    return float(kendalltau(x, y).statistic), float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))


def _train_once(config, run_dir: str, seed: int, steps: int, image_size: int, test):
    """From-scratch training with the fixed budget; per-image test predictions (cached in run_dir)."""
    import keras

    from ef_keras.training.recipe import EMBEDDED
    from ef_keras.training.loop import train
    from search.evaluate import per_image

    cache = os.path.join(run_dir, "test_predictions.npz")
    if os.path.exists(cache):
        with np.load(cache) as f:
            return f["correct"], f["loss"]
    recipe = EMBEDDED.replace(epochs=2, image_size=image_size, batch_size=32)
    result = train(config, "embedded", out_dir=run_dir, recipe=recipe, seed=seed, steps_per_epoch=steps // 2,
                   eval_steps=1, verbose=0, log=lambda *_: None)
    model = keras.saving.load_model(result["model_path"])
    correct, loss = per_image(model, *test)
    from ef_keras.output import writing

    with writing(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, correct=correct, loss=loss)
    keras.backend.clear_session()
    return correct, loss


def main(argv):
    from absl import flags

    from search.arch import Arch
    from search.evaluate import Scorer, load_split, search_splits
    from search.slim import load_lut, predict_ms, reachable_range, slim, slim_settings
    from search.supernet import load_supernet

    FLAGS = flags.FLAGS
    run = provenance.start()
    started = time.time()
    work = FLAGS["work-dir"].value
    lut = load_lut(FLAGS.lut)
    supernet, meta = load_supernet(FLAGS.supernet)
    space = supernet.space
    lo, hi, _ = reachable_range(space, lut)
    from ef_keras.models.efficientformer.config import VARIANTS

    every = {"30": ("30 % of range", lo + 0.3 * (hi - lo)), "l1": ("L1", predict_ms(VARIANTS["l1"], lut)),
             "80": ("80 % of range", lo + 0.8 * (hi - lo))}
    unknown = sorted(set(FLAGS.targets) - set(every))
    if unknown:
        raise InputError(f"--targets: unknown {', '.join(unknown)}; choose from {', '.join(every)}")
    targets = {every[key][0]: every[key][1] for key in FLAGS.targets}
    predict = lambda arch: predict_ms(arch.to_config(space), lut)  # noqa: E731
    seeds = [int(s) for s in FLAGS.seeds.split(",")]
    test = load_split("embedded", None, supernet.image_size)
    calib = load_split("embedded", search_splits()["search_train"], supernet.image_size, max_images=256)[0]
    scorer = Scorer(supernet, calib)
    settings = slim_settings()
    rows = []
    for key in FLAGS.targets:
        t, (label, target) = list(every).index(key), every[key]  # t names its directories and random draws
        archs = {}
        for name, opts in (("searched", {}), ("uniform-importance search", {"importance": "uniform"}),
                           ("random slimming", {"actions": "random"})):
            result = slim(FLAGS.supernet, os.path.join(work, f"target{t}", name.replace(" ", "_")), target=target,
                          lut=lut, data="embedded", **{**settings, **opts}, log=lambda *_: None)
            with open(result["files"]["trajectory"]) as f:
                archs[name] = Arch.from_dict(json.load(f)["steps"][-1]["arch"])
            print(f"[{time.time() - started:5.0f} s] target {label} {target:.3f} ms: {name} -> "
                  f"{archs[name].describe()}", flush=True)
        l1, fw, fd = scaled_l1(space, target, predict)
        archs[f"scaled L1 (w x{fw:.2f}, d x{fd:.2f})"] = l1
        for i, arch in enumerate(random_archs(space, target, predict, NUM_RANDOM, seed=t)):
            archs[f"random {i}"] = arch
        for name, arch in archs.items():
            config = dataclasses.replace(arch.to_config(space, name=f"t{t}_{len(rows)}"),
                                         layer_scale_init=space.config.layer_scale_init)
            per_seed = []
            for seed in seeds:
                run_dir = os.path.join(work, "runs", f"t{t}_{name.split(' (')[0].replace(' ', '_')}_s{seed}")
                t0 = time.time()
                per_seed.append(_train_once(config, run_dir, seed, FLAGS.steps, supernet.image_size, test))
                print(f"[{time.time() - started:5.0f} s]   {name:32s} seed {seed}: test top-1 "
                      f"{100 * per_seed[-1][0].mean():6.2f} % ({time.time() - t0:.0f} s)", flush=True)
            inherited = 100.0 * float(scorer(arch, *test)[0].mean())
            top1 = [100.0 * float(c.mean()) for c, _ in per_seed]
            rows.append({"target": label, "target_ms": target, "name": name, "arch": arch.to_dict(),
                         "describe": arch.describe(), "lut_ms": predict(arch), "top1": top1,
                         "mean_top1": float(np.mean(top1)), "sd_top1": float(np.std(top1, ddof=1)) if len(top1) > 1
                         else 0.0, "inherited_top1": inherited,
                         "_correct": np.stack([c for c, _ in per_seed])})
    summary = _summarise(rows, targets)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    result = {"primary_endpoint": PRIMARY_ENDPOINT, "seeds": seeds, "steps": FLAGS.steps, "targets_ms": targets,
              "seconds": round(time.time() - started), "rows": clean, "summary": summary, "plot": PLOT}
    _plot(clean, targets, os.path.join(FLAGS["results-dir"].value, PLOT))
    return finish(run, RESULT, result, render)


def _summarise(rows, targets) -> dict:
    out = {"per_target": {}}
    for label in targets:
        mine = [r for r in rows if r["target"] == label]
        searched = next(r for r in mine if r["name"] == "searched")
        l1 = next(r for r in mine if r["name"].startswith("scaled L1"))
        diff, lo, hi = bootstrap_diff(searched["_correct"], l1["_correct"])
        randoms = [r["mean_top1"] for r in mine if r["name"].startswith("random ")]
        out["per_target"][label] = {
            "searched_minus_scaled_l1": diff, "ci95": [lo, hi], "ci_excludes_0_above": lo > 0,
            "searched_percentile_among_random": 100.0 * float(np.mean([searched["mean_top1"] > r for r in randoms])),
            "random_p75": float(np.percentile(randoms, 75))}
    tau, tlo, thi = kendall_with_ci([r["inherited_top1"] for r in rows], [r["mean_top1"] for r in rows])
    wins = sum(v["ci_excludes_0_above"] for v in out["per_target"].values())
    out.update({"kendall_tau": tau, "kendall_tau_ci95": [tlo, thi], "architectures": len(rows),
                "goal_primary_met": wins >= 2 if len(targets) == 3 else None, "targets_won": wins,
                "targets_run": len(targets),
                "goal_random_p75_met": all(v["searched_percentile_among_random"] > 75
                                           for v in out["per_target"].values()),
                "goal_tau_met": tau >= 0.6})
    return out


def render(result: dict) -> str:
    """The README table, the endpoints and the goals of a search-quality result."""
    summary = result["summary"]
    lines = ["| target | architecture | widths / depths / vit | LUT ms | test top-1 % mean ± SD over seeds | "
             "inherited top-1 % |", "|---|---|---|---:|---:|---:|"]
    spread_of = (lambda r: f" ± {r['sd_top1']:.2f}") if len(result["seeds"]) > 1 else (lambda r: " (1 seed)")
    for r in result["rows"]:
        spread = spread_of(r)
        lines.append(f"| {r['target']} ({r['target_ms']:.2f} ms) | {r['name']} | {r['describe']} | {r['lut_ms']:.3f} | "
                     f"{r['mean_top1']:.2f}{spread} | {r['inherited_top1']:.2f} |")
    lines.append("")
    for label, v in summary["per_target"].items():
        lines.append(f"- {label}: searched − scaled L1 = {v['searched_minus_scaled_l1']:+.2f} points "
                     f"(95 % CI {v['ci95'][0]:+.2f} to {v['ci95'][1]:+.2f}); searched is above "
                     f"{v['searched_percentile_among_random']:.0f} % of the random architectures "
                     f"(their 75th percentile {v['random_p75']:.2f} %)")
    lines.append(f"- Kendall τ, inherited vs from-scratch, over {summary['architectures']} architectures: "
                 f"{summary['kendall_tau']:.2f} (95 % CI {summary['kendall_tau_ci95'][0]:.2f} to "
                 f"{summary['kendall_tau_ci95'][1]:.2f})")
    primary = {True: "**met**", False: "**not met**", None: "**not evaluable**"}[summary["goal_primary_met"]]
    lines.append(f"- Goals: searched above scaled L1 with the CI excluding 0 at >= 2 of 3 targets: {primary} "
                 f"(the CI is above 0 at {summary['targets_won']} of the {summary['targets_run']} targets run); "
                 f"above the random 75th percentile at every target: "
                 f"{'**met**' if summary['goal_random_p75_met'] else '**not met**'}; τ >= 0.6: "
                 f"{'**met**' if summary['goal_tau_met'] else '**not met**'}")
    lines.append(f"\n{len(result['seeds'])} seeds x {result['steps']} steps of 32 per architecture, "
                 f"{result['seconds'] / 3600:.1f} h in this invocation (runs it found finished are not counted). Primary endpoint, fixed in the script before the run: "
                 f"{result['primary_endpoint']}. Plot: `benchmarks/results/{result['plot']}`.")
    return "\n".join(lines)


def _plot(rows, targets, path):
    from ef_keras.errors import require
    from ef_keras.output import writing

    matplotlib = require("matplotlib", "search", "the search-quality plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    styles = {"searched": ("*", "tab:red", 14), "uniform-importance search": ("P", "tab:purple", 9),
              "random slimming": ("X", "tab:brown", 9), "scaled L1": ("D", "tab:blue", 8),
              "random": ("o", "tab:gray", 6)}
    for kind, (marker, color, size) in styles.items():
        pts = [r for r in rows if r["name"].startswith(kind)]
        ax.errorbar([r["lut_ms"] for r in pts], [r["mean_top1"] for r in pts], yerr=[r["sd_top1"] for r in pts],
                    fmt=marker, color=color, markersize=size, capsize=2, label=kind, linestyle="none")
    for ms in targets.values():
        ax.axvline(ms, color="k", lw=0.6, ls=":")
    ax.set_xlabel("predicted latency (ms, host LUT)")
    ax.set_ylabel("test top-1 % from scratch (mean ± SD over seeds)")
    ax.set_title("search quality: searched vs scaled L1, random architectures and null searches")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def define_flags():
    from absl import flags

    flags.DEFINE_string("supernet", "runs/main_job/supernet", "the main job's supernet directory")
    flags.DEFINE_string("lut", None, "LUT (default: the embedded host LUT, as the search used)")
    flags.DEFINE_string("seeds", "0,1", "comma-separated training seeds")
    flags.DEFINE_list("targets", ["30", "l1", "80"], "targets to run, in this order: 30 and 80 (% of the supernet's "
                      "range), l1 (L1's predicted latency)")
    flags.DEFINE_integer("steps", 240, "training batches of 32 per architecture and seed (the fixed budget)")
    flags.DEFINE_string("work-dir", "runs/search_quality", "searches, training runs and predictions (resumable)")
    define_results_dir_flag()


if __name__ == "__main__":
    define_flags()
    run_cli(main)

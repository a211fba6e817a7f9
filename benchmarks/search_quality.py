"""Search quality: the slimmed architecture vs a uniformly scaled-down L1 vs random architectures.

    python benchmarks/search_quality.py --slim runs/slim --epochs 2 --steps-per-epoch 150 --seeds 0,1

At (about) the slimmed architecture's LUT latency, each architecture is trained from scratch
on the embedded dataset (the Fashion-MNIST subset) at the supernet's proxy resolution with
the same fixed budget (`ef_keras.training.loop.train`, the EMBEDDED recipe with --epochs epochs of
--steps-per-epoch batches, same seeds) and evaluated on all 5,000 held-out images:

- slimmed: `<slim>/architecture.json` from `python -m search.slim`;
- uniform L1: L1's widths and depths scaled by one factor f (widths rounded to multiples of
  16, depths rounded, >= 1, one 3D block), the largest f whose LUT latency <= the slimmed one's;
- random: --random architectures drawn from the supernet's space (per MetaPath 4D with
  p = 0.8 else identity, a random number of closing 3D blocks, widths multiples of 16 in the
  upper half of each stage's range) whose LUT latency is within --tolerance of the slimmed
  one's (rejection sampling, fixed seed).

Runs are interleaved by seed (all architectures for seed 0, then seed 1, ...). Every
architecture is also scored as slimming sees it - supernet weights inherited, BatchNorm
re-estimated - and the Kendall tau between that one-shot accuracy and the stand-alone one
(the standard check that a supernet ranks candidates correctly) is reported. Writes
benchmarks/results/search_quality.{json,md} and prints the table. Caveat: the slimming
chose among candidates by accuracy on (part of) the same held-out split, a selection
advantage the baselines do not get; the supernet's weights are not reused for training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ef_keras.models.efficientformer.config import VARIANTS, EfficientFormerConfig  # noqa: E402
from search.arch import WIDTH_STEP, Arch  # noqa: E402
from search.slim import ARCH_JSON, TRAJECTORY, load_lut, predict_ms  # noqa: E402
from ef_keras.output import write_json, write_text  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def uniform_l1(target_ms: float, lut: dict) -> tuple[EfficientFormerConfig, float]:
    """L1 scaled by the largest factor f in (0, 1] whose predicted latency <= target_ms."""
    l1 = VARIANTS["l1"]
    for f in np.arange(1.0, 0.04, -0.01):
        widths = tuple(max(WIDTH_STEP, int(round(w * f / WIDTH_STEP)) * WIDTH_STEP) for w in l1.widths)
        depths = tuple(max(1, int(round(d * f))) for d in l1.depths)
        cfg = dataclasses.replace(l1, widths=widths, depths=depths, num_vit=1, name=f"l1_x{f:.2f}")
        if predict_ms(cfg, lut) <= target_ms:
            return cfg, float(f)
    raise ValueError(f"no scaled-down L1 reaches {target_ms:.3f} ms on this LUT")


def random_archs(supernet_config: EfficientFormerConfig, target_ms: float, lut: dict, n: int, tolerance: float,
                 seed: int, max_tries: int = 20000) -> list[EfficientFormerConfig]:
    """n random sub-networks of the supernet whose latency is within tolerance of target_ms."""
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(max_tries):
        # widths in the upper half and blocks kept with p = 0.8, so that architectures near the top of the
        # supernet's latency range (where the quick job's target lies) are found by rejection sampling
        widths = tuple(int(rng.integers(max(1, w // WIDTH_STEP // 2), w // WIDTH_STEP + 1)) * WIDTH_STEP
                       for w in supernet_config.widths)
        choices = [tuple(rng.choice(["4d", "id"], p=[0.8, 0.2]) for _ in range(d)) for d in supernet_config.depths]
        active4 = [k for k, c in enumerate(choices[3]) if c != "id"]
        n3d = int(rng.integers(0, len(active4) + 1))
        last = list(choices[3])
        for k in active4[len(active4) - n3d:]:
            last[k] = "3d"
        choices[3] = tuple(last)
        cfg = Arch(widths, tuple(choices)).to_config(supernet_config, name=f"random{len(found)}")
        same = any(dataclasses.replace(cfg, name="") == dataclasses.replace(f, name="") for f in found)
        if abs(predict_ms(cfg, lut) - target_ms) <= tolerance * target_ms and not same:
            found.append(cfg)
            if len(found) == n:
                return found
    raise ValueError(f"found only {len(found)} random architectures within {tolerance:.0%} of {target_ms:.3f} ms")


def arch_of(config: EfficientFormerConfig, supernet_config: EfficientFormerConfig) -> Arch:
    """The supernet sub-network of a config: its first blocks of each stage, the last num_vit of stage 4 in 3D."""
    choices = []
    for s, (d, full) in enumerate(zip(config.depths, supernet_config.depths)):
        stage = ["4d"] * d + ["id"] * (full - d)
        if s == 3:
            for k in range(d - config.num_vit, d):
                stage[k] = "3d"
        choices.append(tuple(stage))
    return Arch(config.widths, tuple(choices))


def inherited_top1(supernet_dir: str, archs, data: str = "embedded") -> list[float]:
    """Held-out top-1 of each config with supernet weights (as slimming scores candidates)."""
    from search.slim import DEFAULT_CALIBRATION_IMAGES, evaluate, load_eval_split
    from search.supernet import child_model, load_supernet

    supernet, _ = load_supernet(supernet_dir)
    x, y = load_eval_split(data, supernet.image_size, max_images=5000)
    calib = load_eval_split(data, supernet.image_size, max_images=DEFAULT_CALIBRATION_IMAGES, split="train")[0]
    return [evaluate(child_model(supernet, arch_of(cfg, supernet.config), calibration=calib), x, y)[0]
            for cfg in archs]


def main(argv):
    from absl import flags
    from scipy.stats import kendalltau

    from ef_keras.training.recipe import EMBEDDED
    from ef_keras.training.loop import train

    FLAGS = flags.FLAGS
    lut = load_lut(FLAGS.lut)
    with open(os.path.join(FLAGS.slim, TRAJECTORY)) as f:
        trajectory = json.load(f)
    with open(os.path.join(trajectory["supernet"], "supernet.json")) as f:
        meta = json.load(f)
    supernet_config = EfficientFormerConfig.from_dict(meta["config"])
    slimmed = EfficientFormerConfig.load(os.path.join(FLAGS.slim, ARCH_JSON))
    target = predict_ms(slimmed, lut)
    uniform, factor = uniform_l1(target, lut)
    # every architecture trains with the supernet's LayerScale init (0.1 for a short run), not L1's 1e-5
    uniform = dataclasses.replace(uniform, layer_scale_init=supernet_config.layer_scale_init)
    randoms = random_archs(supernet_config, target, lut, FLAGS.random, FLAGS.tolerance,
                           seed=FLAGS["arch-seed"].value)
    archs = [("slimmed", slimmed), (f"uniform L1 x{factor:.2f}", uniform)] + [
        (f"random {i}", cfg) for i, cfg in enumerate(randoms)]
    seeds = [int(s) for s in FLAGS.seeds.split(",")]
    recipe = EMBEDDED.replace(epochs=FLAGS.epochs, image_size=meta["image_size"], batch_size=32)
    work = os.path.join(FLAGS["work-dir"].value)
    runs = {name: [] for name, _ in archs}
    for seed in seeds:  # interleaved: every architecture once per seed
        for i, (name, cfg) in enumerate(archs):
            t0 = time.time()
            result = train(cfg, "embedded", out_dir=os.path.join(work, f"arch{i}_seed{seed}"), recipe=recipe,
                           seed=seed, steps_per_epoch=FLAGS["steps-per-epoch"].value, verbose=0, log=lambda *_: None)
            runs[name].append(100.0 * result["eval_top1"])
            print(f"seed {seed}  {name:18s} top-1 {runs[name][-1]:6.2f} %  ({time.time() - t0:.0f} s)", flush=True)
    one_shot = inherited_top1(trajectory["supernet"], [cfg for _, cfg in archs])
    rows = []
    for (name, cfg), inherited in zip(archs, one_shot):
        rows.append({"arch": name, "widths": list(cfg.widths), "depths": list(cfg.depths), "num_vit": cfg.num_vit,
                     "lut_ms": predict_ms(cfg, lut), "top1": runs[name], "mean_top1": float(np.mean(runs[name])),
                     "std_top1": float(np.std(runs[name], ddof=1)) if len(runs[name]) > 1 else 0.0,
                     "inherited_top1": inherited})
    random_mean = float(np.mean([r["mean_top1"] for r in rows if r["arch"].startswith("random")]))
    tau = kendalltau([r["inherited_top1"] for r in rows], [r["mean_top1"] for r in rows])
    del argv
    summary = {"command": "python benchmarks/search_quality.py " + " ".join(sys.argv[1:]),
               "lut_device": lut.get("device", {}).get("name"), "target_ms": target, "epochs": FLAGS.epochs,
               "image_size": recipe.image_size, "seeds": seeds, "rows": rows, "random_mean_top1": random_mean,
               "slimmed_minus_uniform": rows[0]["mean_top1"] - rows[1]["mean_top1"],
               "slimmed_minus_random_mean": rows[0]["mean_top1"] - random_mean,
               "seed_std_max": max(r["std_top1"] for r in rows),
               "kendall_tau_inherited_vs_standalone": float(tau.statistic), "kendall_tau_p": float(tau.pvalue),
               "search": {"supernet": trajectory["supernet"], "target_ms": trajectory["target_ms"],
                          "steps": len(trajectory["steps"]) - 1}}
    table = ["| architecture | widths | depths | vit | LUT ms | top-1 % from scratch, mean ± std over seeds | runs | "
             "top-1 % with supernet weights |", "|---|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        table.append(f"| {r['arch']} | {','.join(map(str, r['widths']))} | {','.join(map(str, r['depths']))} | "
                     f"{r['num_vit']} | {r['lut_ms']:.3f} | {r['mean_top1']:.2f} ± {r['std_top1']:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in r['top1'])} | {r['inherited_top1']:.2f} |")
    table.append(f"| mean of {len(randoms)} random | | | | | {random_mean:.2f} | | |")
    table.append(f"\nKendall tau, supernet-inherited vs stand-alone top-1 over these {len(rows)} architectures: "
                 f"{tau.statistic:.3f} (p = {tau.pvalue:.3f}).")
    text = "\n".join(table)
    os.makedirs(RESULTS, exist_ok=True)
    write_json(os.path.join(RESULTS, "search_quality.json"), summary)
    md = (f"# Search quality (embedded Fashion-MNIST subset, {recipe.image_size} px, {FLAGS.epochs} x "
          f"{FLAGS['steps-per-epoch'].value} steps of {recipe.batch_size} from scratch, "
          f"seeds {seeds}; latency from LUT `{summary['lut_device']}`)\n\n`{summary['command']}`\n\n{text}\n")
    write_text(os.path.join(RESULTS, "search_quality.md"), md)
    print(text)


if __name__ == "__main__":
    from absl import app, flags

    from ef_keras.cli import dashed_argv

    flags.DEFINE_string("slim", "runs/slim", "output directory of `python -m search.slim`")
    flags.DEFINE_string("lut", None, "LUT (default: the embedded host LUT, as the search used)")
    flags.DEFINE_integer("epochs", 2, "training epochs per architecture (the fixed budget)")
    flags.DEFINE_integer("steps-per-epoch", 150, "batches per epoch (the fixed budget)")
    flags.DEFINE_string("seeds", "0,1", "comma-separated training seeds")
    flags.DEFINE_integer("random", 3, "number of random architectures")
    flags.DEFINE_float("tolerance", 0.05, "random architectures' latency within this fraction of the target")
    flags.DEFINE_integer("arch-seed", 0, "seed of the random architecture sampler")
    flags.DEFINE_string("work-dir", "runs/search_quality", "training run directories (resumable)")
    app.run(main, argv=dashed_argv(sys.argv))

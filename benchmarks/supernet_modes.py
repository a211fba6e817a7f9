"""Which weight-sharing rule trains the supernet's children better, at equal training compute?

    python -m benchmarks.supernet_modes [--uniform-steps 300] [--eval-images 2000] [--work-dir DIR]

The issue asks to pick the rule that trains every child slimming evaluates by measurement.
Every rule of `search.train_supernet.RULES` trains the default space on the embedded data
with the quick job's settings (`quick_settings`), for the same number of training
multiply-adds: "uniform" (one random child per step) gets `--uniform-steps` steps; "sandwich"
(largest, smallest, two random children, in-place distillation) and "progressive" (the
largest alone in the warm-up epoch, then uniform) the most steps whose schedule costs no
more, from the children's forward multiply-adds (`ef_keras.info.block_macs` over each
child's plan; Gumbel-sampled MetaPaths counted at their expectation under uniform α). The
count is load-independent; the wall seconds are reported beside it.

Then each supernet scores the same children as slimming would (weights inherited, BatchNorm
re-estimated, `search.evaluate.Scorer`) on `--eval-images` search-validation images: the
slimming start (largest widths, stage 4 in MB3D), EfficientFormer-L1's point of the space,
the smallest child and 7 random deployable children. Reported: top-1 and cross-entropy per
child and rule, and each rule's mean difference from "uniform" with its paired standard
error over children × images. Writes benchmarks/results/supernet_modes.json.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks import define_results_dir_flag, finish
from ef_keras import provenance
from ef_keras.cli import run as run_cli

RESULT = "supernet_modes.json"


def _macs(space, widths, choices_probs, image_size):
    """Expected forward multiply-adds of a child: per MetaPath, 4D and 3D blocks weighted by their probability."""
    from ef_keras.models.efficientformer.macs import block_macs
    from ef_keras.models.plan import plan

    cfg = space.config
    grid = (image_size, image_size)
    full4 = plan(widths, [("4d",) * d for d in cfg.depths], grid, 10)
    full3 = plan(widths, [("3d",) * d for d in cfg.depths], grid, 10)
    fixed = sum(block_macs(b, cfg, distillation=False) for b in full4 if b.kind in ("stem", "downsample", "head"))
    m4 = [block_macs(b, cfg, distillation=False) for b in full4 if b.kind == "meta4d"]
    m3 = [block_macs(b, cfg, distillation=False) for b in full3 if b.kind == "meta3d"]
    return fixed + sum(p4 * a + p3 * b for (p4, p3), a, b in zip(choices_probs, m4, m3))


def schedule_macs(trainer, total_steps: int, image_size: int) -> float:
    """Expected forward multiply-adds of a trainer's whole schedule (α uniform)."""
    from search.scoring import uniform_probabilities

    uniform = uniform_probabilities(trainer.supernet.path_stage)
    first = {min(q for q, s in enumerate(trainer.supernet.path_stage) if s == st) for st in range(4)}
    cache, total = {}, 0.0
    for i in range(total_steps):
        for role, widths, _ in trainer.children(i):
            key = (role, tuple(int(w) for w in widths))
            if key not in cache:
                if role == "largest":
                    probs = [(p[0] / (p[0] + p[1]), p[1] / (p[0] + p[1])) for p in uniform]
                elif role == "smallest":
                    probs = [(1.0, 0.0) if p in first else (0.0, 0.0) for p in range(len(uniform))]
                else:
                    probs = [(p[0], p[1]) for p in uniform]
                cache[key] = _macs(trainer.space, key[1], probs, image_size)
            total += cache[key]
    return total


def children_to_score(space, seed: int = 0):
    """The fixed set of deployable children both supernets are scored on."""
    from search.arch import Arch, full_arch, smallest_arch

    rng = np.random.default_rng(seed)
    out = {"start (largest, stage 4 MB3D)": full_arch(space, space.depths[3]),
           "L1 point": Arch((48, 96, 224, 448), (("4d",) * 3 + ("id",), ("4d",) * 2 + ("id",), ("4d",) * 6,
                                                 ("4d",) * 3 + ("3d",))),
           "smallest": smallest_arch(space, 1)}
    while len(out) < 10:
        widths = tuple(int(rng.choice(space.widths(s))) for s in range(4))
        choices = [tuple("4d" if k == 0 or rng.random() < 0.7 else "id" for k in range(d)) for d in space.depths]
        active = [k for k, c in enumerate(choices[3]) if c != "id"]
        n3d = int(rng.integers(0, len(active) + 1))
        choices[3] = tuple("3d" if k in active[len(active) - n3d:] else c for k, c in enumerate(choices[3]))
        out[f"random {len(out) - 2}"] = Arch(widths, tuple(choices))
    return out


def main(argv):
    from absl import flags

    import keras

    from ef_keras.training.loop import make_strategy
    from search.evaluate import Scorer, load_split, search_splits, standard_error
    from search.space import default_space
    from search.supernet import load_supernet
    from search.train_supernet import RULES, SupernetTrainer, quick_settings, train_supernet

    FLAGS = flags.FLAGS
    run = provenance.start()
    q = quick_settings()
    space = default_space()
    work = FLAGS["work-dir"].value
    epochs, warmup = q["epochs"], q["warmup_epochs"]
    spe = {"uniform": FLAGS["uniform-steps"].value // epochs}
    budget = None
    for rule in RULES:
        probe = SupernetTrainer(space, image_size=q["image_size"], classes=10, mixing=q["mixing"], rule=rule,
                                total_steps=1, steps_per_epoch=1, batch_size=q["batch_size"], lr=q["lr"],
                                weight_decay=0.025, alpha_lr=q["alpha_lr"], alpha_weight_decay=1e-3, seed=0,
                                strategy=make_strategy("one_device"))

        def cost(steps_per_epoch):
            probe.warmup_steps = warmup * steps_per_epoch
            return schedule_macs(probe, epochs * steps_per_epoch, q["image_size"])

        if rule == "uniform":
            budget = cost(spe[rule])
        else:  # the most steps per epoch whose schedule costs no more than the uniform rule's
            spe[rule] = max(n for n in range(1, spe["uniform"] + 1) if n == 1 or cost(n) <= budget)
        del probe
        keras.backend.clear_session()
    print(f"steps per epoch at equal forward multiply-adds ({budget / 1e9:.0f} G): {spe}", flush=True)
    seconds = {}
    for rule in RULES:
        start = time.time()
        train_supernet(os.path.join(work, rule), space=space, data="embedded",
                       **{**q, "rule": rule, "steps_per_epoch": spe[rule]})
        seconds[rule] = time.time() - start
        keras.backend.clear_session()
    splits = search_splits()
    x, y = load_split("embedded", splits["search_val"], q["image_size"], max_images=FLAGS["eval-images"].value)
    calib = load_split("embedded", splits["search_train"], q["image_size"], max_images=256)[0]
    children = children_to_score(space)
    per_image = {}
    for rule in RULES:
        supernet, _ = load_supernet(os.path.join(work, rule))
        scorer = Scorer(supernet, calib)
        per_image[rule] = {name: scorer(arch, x, y) for name, arch in children.items()}
        keras.backend.clear_session()
    rows = [{"child": name, "describe": arch.describe(), "arch": arch.to_dict(),
             **{f"{rule}_top1": 100 * float(per_image[rule][name][0].mean()) for rule in RULES},
             **{f"{rule}_loss": float(per_image[rule][name][1].mean()) for rule in RULES}}
            for name, arch in children.items()]
    comparisons = {}
    for rule in RULES[1:]:  # each against the uniform rule, paired over children x images
        d_acc = np.concatenate([100.0 * (per_image[rule][n][0].astype(float) - per_image["uniform"][n][0])
                                for n in children])
        d_loss = np.concatenate([per_image[rule][n][1] - per_image["uniform"][n][1] for n in children])
        comparisons[f"{rule}_minus_uniform"] = {"top1": float(d_acc.mean()), "top1_se": standard_error(d_acc),
                                                "loss": float(d_loss.mean()), "loss_se": standard_error(d_loss)}
    mean_loss = {rule: float(np.mean([r[f"{rule}_loss"] for r in rows])) for rule in RULES}
    best = min(RULES, key=mean_loss.get)
    outside = all(abs(c["loss"]) > 1.96 * c["loss_se"] for c in comparisons.values())
    result = {"settings": {**q, "steps": {r: spe[r] * epochs for r in RULES}, "eval_images": int(len(y))},
              "forward_gmacs": budget / 1e9, "train_seconds": seconds, "children": rows,
              "comparisons": comparisons, "mean_loss": mean_loss, "best": best, "best_outside_noise": outside}
    return finish(run, RESULT, result, render)


def render(result: dict) -> str:
    """The table of inherited top-1 per child and rule, and the paired comparisons."""
    rules = list(result["mean_loss"])
    lines = ["| child | architecture | " + " | ".join(f"{r} top-1 %" for r in rules) + " |",
             "|---|---|" + "---:|" * len(rules)]
    lines += [f"| {r['child']} | {r['describe']} | " + " | ".join(f"{r[f'{k}_top1']:.2f}" for k in rules) + " |"
              for r in result["children"]]
    steps = result["settings"]["steps"]
    lines.append("")
    for name, c in result["comparisons"].items():
        lines.append(f"- {name.replace('_', ' ')} over {len(result['children'])} children x "
                     f"{result['settings']['eval_images']} images: top-1 {c['top1']:+.2f} ± {c['top1_se']:.2f} points, "
                     f"cross-entropy {c['loss']:+.4f} ± {c['loss_se']:.4f} (paired SE)")
    lines.append(f"- steps at equal forward multiply-adds ({result['forward_gmacs']:.0f} G): "
                 + ", ".join(f"{r} {steps[r]}" for r in rules)
                 + " (wall seconds are in the file; they count only this invocation's work, so a resumed run's "
                   "are not comparable)")
    lines.append(f"- lowest mean cross-entropy over the children: **{result['best']}**"
                 + ("" if result["best_outside_noise"] else " (not every difference is outside noise)"))
    return "\n".join(lines) + "\n"


def define_flags():
    from absl import flags

    flags.DEFINE_integer("uniform-steps", 300, "steps of the uniform rule (the sandwich rule gets equal compute)")
    flags.DEFINE_integer("eval-images", 2000, "search-validation images per child")
    flags.DEFINE_string("work-dir", "runs/supernet_modes", "where the two supernets are trained (resumable)")
    define_results_dir_flag()


if __name__ == "__main__":
    define_flags()
    run_cli(main)

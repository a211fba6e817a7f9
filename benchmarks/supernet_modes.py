"""Which weight-sharing rule trains the supernet's children better, at equal training compute?

    python benchmarks/supernet_modes.py [--uniform-steps 300] [--eval-images 2000] [--work-dir DIR]

The issue asks to pick the rule that trains every child slimming evaluates by measurement.
Both rules train the default space on the embedded data with the quick job's settings
(`search.train_supernet.quick_settings`), for the same number of training multiply-adds:
"uniform" (one random child per step) gets `--uniform-steps` steps, "sandwich" (largest,
smallest, two random children, in-place distillation) the number of steps that costs the
same, from the children's forward multiply-adds (`ef_keras.info.block_macs` over each
child's plan; Gumbel-sampled MetaPaths counted at their expectation under uniform α). The
count is load-independent; the wall seconds are reported beside it.

Then each supernet scores the same children as slimming would (weights inherited, BatchNorm
re-estimated, `search.evaluate.Scorer`) on `--eval-images` search-validation images: the
slimming start (largest widths, stage 4 in MB3D), EfficientFormer-L1's point of the space,
the smallest child and 7 random deployable children. Reported: top-1 and cross-entropy per
child and rule, and the mean difference (sandwich − uniform) with its paired standard error
over children × images. Writes benchmarks/results/supernet_modes.{json,md}.
"""

from __future__ import annotations

import os
import time

import numpy as np


def _macs(space, widths, choices_probs, image_size):
    """Expected forward multiply-adds of a child: per MetaPath, 4D and 3D blocks weighted by their probability."""
    from ef_keras.info import block_macs
    from ef_keras.plan import plan

    cfg = space.config
    grid = (image_size, image_size)
    full4 = plan(widths, [("4d",) * d for d in cfg.depths], grid, 10)
    full3 = plan(widths, [("3d",) * d for d in cfg.depths], grid, 10)
    fixed = sum(block_macs(b, cfg, distillation=False) for b in full4 if b.kind in ("stem", "downsample", "head"))
    m4 = [block_macs(b, cfg, distillation=False) for b in full4 if b.kind == "meta4d"]
    m3 = [block_macs(b, cfg, distillation=False) for b in full3 if b.kind == "meta3d"]
    return fixed + sum(p4 * a + p3 * b for (p4, p3), a, b in zip(choices_probs, m4, m3))


def step_macs(trainer, steps: int, image_size: int) -> float:
    """Mean expected forward multiply-adds per training step of a trainer's rule (α uniform)."""
    from search.scoring import uniform_probabilities

    uniform = uniform_probabilities(trainer.supernet.path_stage)
    total = 0.0
    for i in range(steps):
        for role, widths, _ in trainer.children(i):
            if role == "largest":
                probs = [(p[0] / (p[0] + p[1]), p[1] / (p[0] + p[1])) for p in uniform]
            elif role == "smallest":
                first = {min(q for q, s in enumerate(trainer.supernet.path_stage) if s == st) for st in range(4)}
                probs = [(1.0, 0.0) if p in first else (0.0, 0.0) for p in range(len(uniform))]
            else:
                probs = [(p[0], p[1]) for p in uniform]
            total += _macs(trainer.space, tuple(int(w) for w in widths), probs, image_size)
    return total / steps


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

    from ef_keras.output import write_json, write_text
    from ef_keras.training import make_strategy
    from search.evaluate import Scorer, load_split, search_splits, standard_error
    from search.space import default_space
    from search.supernet import load_supernet
    from search.train_supernet import SupernetTrainer, quick_settings, train_supernet

    FLAGS = flags.FLAGS
    q = quick_settings()
    space = default_space()
    work = FLAGS["work-dir"].value
    spe_uniform = FLAGS["uniform-steps"].value // q["epochs"]
    per_step = {}
    for rule in ("uniform", "sandwich"):
        probe = SupernetTrainer(space, image_size=q["image_size"], classes=10, mixing=q["mixing"], rule=rule,
                                total_steps=100, steps_per_epoch=50, batch_size=q["batch_size"], lr=q["lr"],
                                weight_decay=0.025, alpha_lr=q["alpha_lr"], alpha_weight_decay=1e-3, seed=0,
                                strategy=make_strategy("one_device"))
        per_step[rule] = step_macs(probe, 100, q["image_size"])
        del probe
        keras.backend.clear_session()
    spe = {"uniform": spe_uniform,
           "sandwich": max(1, round(spe_uniform * per_step["uniform"] / per_step["sandwich"]))}
    print(f"forward MMACs per step: uniform {per_step['uniform'] / 1e6:.0f}, sandwich "
          f"{per_step['sandwich'] / 1e6:.0f}: steps per epoch {spe}", flush=True)
    seconds = {}
    for rule in ("uniform", "sandwich"):
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
    for rule in ("uniform", "sandwich"):
        supernet, _ = load_supernet(os.path.join(work, rule))
        scorer = Scorer(supernet, calib)
        per_image[rule] = {name: scorer(arch, x, y) for name, arch in children.items()}
        keras.backend.clear_session()
    rows = []
    for name, arch in children.items():
        u, s = per_image["uniform"][name], per_image["sandwich"][name]
        rows.append({"child": name, "arch": arch.to_dict(), "describe": arch.describe(),
                     "uniform_top1": 100 * float(u[0].mean()), "sandwich_top1": 100 * float(s[0].mean()),
                     "uniform_loss": float(u[1].mean()), "sandwich_loss": float(s[1].mean())})
    d_acc = np.concatenate([100.0 * (per_image["sandwich"][n][0].astype(float) - per_image["uniform"][n][0])
                            for n in children])
    d_loss = np.concatenate([per_image["sandwich"][n][1] - per_image["uniform"][n][1] for n in children])
    summary = {"top1_diff": float(d_acc.mean()), "top1_diff_se": standard_error(d_acc),
               "loss_diff": float(d_loss.mean()), "loss_diff_se": standard_error(d_loss)}
    z = abs(summary["loss_diff"]) / max(summary["loss_diff_se"], 1e-12)
    winner = ("sandwich" if summary["loss_diff"] < 0 else "uniform") if z > 1.96 else None
    result = {"command": "python benchmarks/supernet_modes.py " + " ".join(argv[1:]),
              "settings": {**q, "uniform_steps": spe["uniform"] * q["epochs"],
                           "sandwich_steps": spe["sandwich"] * q["epochs"], "eval_images": int(len(y))},
              "forward_mmacs_per_step": {k: v / 1e6 for k, v in per_step.items()},
              "train_seconds": seconds, "load_average": list(os.getloadavg()), "children": rows,
              "sandwich_minus_uniform": summary, "winner_outside_noise": winner}
    out = FLAGS.out
    write_json(os.path.join(out, "supernet_modes.json"), result)
    table = ["| child | architecture | uniform top-1 % | sandwich top-1 % | uniform loss | sandwich loss |",
             "|---|---|---:|---:|---:|---:|"]
    table += [f"| {r['child']} | {r['describe']} | {r['uniform_top1']:.2f} | {r['sandwich_top1']:.2f} | "
              f"{r['uniform_loss']:.3f} | {r['sandwich_loss']:.3f} |" for r in rows]
    text = "\n".join(table) + (
        f"\n\nsandwich − uniform over the {len(rows)} children × {len(y)} images: top-1 {summary['top1_diff']:+.2f} ± "
        f"{summary['top1_diff_se']:.2f} points, cross-entropy {summary['loss_diff']:+.4f} ± {summary['loss_diff_se']:.4f} "
        f"(paired SE); steps uniform {result['settings']['uniform_steps']} / sandwich "
        f"{result['settings']['sandwich_steps']} (equal forward multiply-adds), wall s uniform {seconds['uniform']:.0f} "
        f"/ sandwich {seconds['sandwich']:.0f}; winner outside noise: {winner or 'none'}\n")
    write_text(os.path.join(out, "supernet_modes.md"), text)
    print(text)


def define_flags():
    from absl import flags

    flags.DEFINE_integer("uniform-steps", 300, "steps of the uniform rule (the sandwich rule gets equal compute)")
    flags.DEFINE_integer("eval-images", 2000, "search-validation images per child")
    flags.DEFINE_string("work-dir", "runs/supernet_modes", "where the two supernets are trained (resumable)")
    flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"), "results folder")


if __name__ == "__main__":
    from ef_keras.errors import run

    define_flags()
    run(main)

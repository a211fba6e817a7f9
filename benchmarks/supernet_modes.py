"""Soft (the paper's equation) vs hard (GDAS) supernet mixing: time per step, and do they rank paths alike?

    python benchmarks/supernet_modes.py [--steps-per-epoch 80] [--epochs 3] [--out benchmarks/results]

Two `SupernetTrainer`s with the quick job's settings (search.train_supernet.QUICK_SETTINGS,
the default supernet, the embedded data), the same seed and the very same batches: every
step runs the soft trainer then the hard one, so both are timed interleaved in one process.
Reports the median and p10 seconds per step of each (weight step + α step after the warm-up
epoch), their ratio, each mode's MetaPath scores (paper §3.3) and the Kendall tau between the
two modes' path scores and stage scores. Writes supernet_modes.{json,md} into --out.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(epochs=3, steps_per_epoch=80, seed=0, out_dir="benchmarks/results"):
    import keras
    import tensorflow as tf
    from scipy.stats import kendalltau

    from ef_keras import data as ef_data
    from search.scoring import path_scores
    from search.slim import load_eval_split
    from search.train_supernet import DEFAULT_SUPERNET, QUICK_SETTINGS, SupernetTrainer

    q = QUICK_SETTINGS
    keras.utils.set_random_seed(seed)
    total = epochs * steps_per_epoch
    trainers = {mode: SupernetTrainer(DEFAULT_SUPERNET, image_size=q["image_size"], classes=10, mixing=mode,
                                      total_steps=total, steps_per_epoch=steps_per_epoch, batch_size=q["batch_size"],
                                      lr=1e-3, weight_decay=0.025, alpha_lr=q["alpha_lr"], alpha_weight_decay=1e-3,
                                      seed=seed, strategy=tf.distribute.get_strategy())
                for mode in ("soft", "hard")}
    alpha_data = load_eval_split("embedded", q["image_size"], max_images=5000, seed=seed)
    seconds = {mode: [] for mode in trainers}
    step = 0
    for epoch in range(epochs):
        ds = ef_data.make_dataset("embedded", "train", image_size=q["image_size"], batch_size=q["batch_size"],
                                  training=True, seed=seed, epoch=epoch, augment="light").take(steps_per_epoch)
        for batch in ds:
            for mode, trainer in trainers.items():
                start = time.perf_counter()
                trainer.step(step, batch, alpha_data if epoch >= q["warmup_epochs"] else None)
                seconds[mode].append(time.perf_counter() - start)
            step += 1
            if step % 20 == 0:
                print(f"step {step}/{total}: " + ", ".join(f"{m} {np.median(s[-20:]):.2f} s" for m, s in seconds.items()),
                      file=sys.stderr, flush=True)
    scores, stage = {}, {}
    for mode, trainer in trainers.items():
        net = trainer.supernet
        scores[mode] = path_scores(net.probabilities(), net.path_stage)
        stage[mode] = [float(sum(scores[mode][p] for p in paths)) for paths in net.paths_by_stage()]
    timed = {m: np.array(s[1:]) for m, s in seconds.items()}  # the first step traces the tf.functions
    result = {
        "settings": {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "image_size": q["image_size"],
                     "batch_size": q["batch_size"], "alpha_lr": q["alpha_lr"], "supernet": DEFAULT_SUPERNET.to_dict()},
        "load_average": round(os.getloadavg()[0], 2),
        "seconds_per_step": {m: {"median": round(float(np.median(t)), 3), "p10": round(float(np.percentile(t, 10)), 3),
                                 "steps_per_s": round(float(1 / np.median(t)), 3)} for m, t in timed.items()},
        "soft_over_hard_median": round(float(np.median(timed["soft"]) / np.median(timed["hard"])), 2),
        "soft_over_hard_p10": round(float(np.percentile(timed["soft"], 10) / np.percentile(timed["hard"], 10)), 2),
        "path_scores": {m: [round(float(v), 4) for v in s] for m, s in scores.items()},
        "stage_scores": {m: [round(v, 4) for v in s] for m, s in stage.items()},
        "kendall_tau_paths": round(float(kendalltau(scores["soft"], scores["hard"]).statistic), 3),
        "kendall_tau_paths_p": round(float(kendalltau(scores["soft"], scores["hard"]).pvalue), 4),
        "kendall_tau_stages": round(float(kendalltau(stage["soft"], stage["hard"]).statistic), 3),
    }
    write(result, out_dir)
    return result


def write(result, out_dir):
    from ef_keras.output import write_json, write_text

    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "supernet_modes.json"), result)
    s = result["settings"]
    sp = result["seconds_per_step"]
    lines = [f"# Supernet mixing modes, one interleaved run ({s['epochs']} x {s['steps_per_epoch']} steps, "
             f"{s['image_size']} px, batch {s['batch_size']}, load average {result['load_average']})", "",
             "| mode | median s/step | p10 s/step | steps/s |", "|---|---:|---:|---:|"]
    for m in ("soft", "hard"):
        lines.append(f"| {m} | {sp[m]['median']} | {sp[m]['p10']} | {sp[m]['steps_per_s']} |")
    lines += ["", f"soft / hard time per step: {result['soft_over_hard_median']}x (median), "
              f"{result['soft_over_hard_p10']}x (p10).", "",
              f"Kendall tau between the two modes' MetaPath scores: {result['kendall_tau_paths']} "
              f"(p = {result['kendall_tau_paths_p']}); between their stage scores: {result['kendall_tau_stages']}.", "",
              "Command: `python benchmarks/supernet_modes.py`", ""]
    write_text(os.path.join(out_dir, "supernet_modes.md"), "\n".join(lines))


def main():
    from absl import app, flags
    flags.DEFINE_integer("epochs", 3, "epochs (the first trains weights only)")
    flags.DEFINE_integer("steps-per-epoch", 80, "batches per epoch")
    flags.DEFINE_integer("seed", 0, "seed")
    flags.DEFINE_string("out", "benchmarks/results", "output directory")
    F = flags.FLAGS

    def _run(argv):
        del argv
        run(F.epochs, F["steps-per-epoch"].value, F.seed, F.out)
        print(open(os.path.join(F.out, "supernet_modes.md")).read())
    app.run(_run)


if __name__ == "__main__":
    main()

"""Trains the Gumbel-softmax supernet: network weights and architecture parameters α.

    python -m search.train_supernet --data embedded --out runs/supernet            # ~5 min on 2 cores
    python -m search.train_supernet --data imagenet2012 --data-dir ~/tensorflow_datasets \\
        --widths 96,192,384,768 --depths 6,6,18,8 --image-size 224 --epochs 30 --mixing soft \\
        --strategy mirrored --out runs/supernet_in1k

How the two kinds of parameters are trained (the paper only says "Gumbel softmax"; this
follows DARTS/FBNet): alternating steps on split data. Each step updates the weights with
AdamW on a `train` batch (label smoothing 0.1, cosine lr with warmup), then - after
`warmup_epochs` of weights only, so α is not fitted to untrained blocks (FBNet) - updates α
with Adam (β₁ 0.5, DARTS) on a batch of the held-out split, with BatchNorm in inference mode
so no held-out statistics leak into the weights. Both steps draw fresh Gumbel noise; τ
anneals 5 -> 0.5 (supernet.tau_at). Slimming later scores candidates on the same held-out
split: both only ever see it through α or sub-network selection, never through weight updates.

Mixing (`--mixing`): "soft" computes every candidate of every MetaPath (the paper's
equation); "hard" runs only the sampled one (GDAS, straight-through gradient to α), about
3x faster per step at 96 px (benchmarks/supernet_modes.py measures both and the rank
correlation of their path scores). The quick proxy job uses the mode `QUICK_SETTINGS` names.

Distribution: the steps run under any `tf.distribute` strategy (`--strategy`, as
`ef_keras.train`): each replica takes its share of the global batch, the losses are summed
over replicas and divided by the global batch, BatchNorm is synchronised (SyncBN, as the
recipe), and all replicas draw the same Gumbel sample (a function of the step, not of the
replica), so two replicas of B/2 compute what one device computes on B.

Fault tolerance: the run's settings are recorded in `<out>/run.json` and a checkpoint
(`ef_keras.runs.Checkpoints` in `<out>/ckpt/`: weights, α, both optimizers, step) is written
every `checkpoint_every` steps and at epoch ends; a re-run resumes from the newest one (a
run with other settings, e.g. the other mixing mode, is refused before anything is built).
The data order of an epoch and the Gumbel noise of a step are pure functions of (seed,
epoch/step), so a resumed run reproduces an uninterrupted one. A non-finite loss
stops the run with an error; the last checkpoint (all finite) stays.

Outputs: `supernet.json` + `supernet.weights.h5` (what search.slim loads),
`importance.json` (α, probabilities, scores), TensorBoard logs in `<out>/tb`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from ef_keras.models.efficientformer.config import EfficientFormerConfig
from search.arch import CANDIDATES
from search.scoring import initial_num_vit, path_scores
from search.supernet import (MIXING_MODES, Supernet, SupernetError, gumbel_noise, save_supernet, tau_at)
from ef_keras.checks import read_json
from ef_keras.output import check_run_directory, write_json
from ef_keras.runs import Checkpoints, record_settings, resume_settings, summary_scalar

#: The default supernet: L1's widths (48,96,224,448) with one more block in stage 2, so every
#: named L1-like point and `--target-like l1` lie inside it, small enough to train at 96 px on
#: 2 cores in a few minutes. Layer scales start at 0.1, not the paper's 1e-5: in a 240-step run
#: they only grew to ~0.006 from 1e-5 (measured), every block stayed near the identity, and
#: removing any block changed no held-out prediction, so slimming had nothing to measure.
DEFAULT_SUPERNET = EfficientFormerConfig(widths=(48, 96, 224, 448), depths=(3, 3, 6, 4), num_vit=0,
                                         layer_scale_init=0.1, name="supernet")
#: What `python -m search.slim` uses when it has to train a supernet itself (embedded data):
#: 96 px inputs (stage grids 24/12/6/3), 3 epochs of 80 batches of 32 (the first weights only).
#: α's learning rate is higher than DARTS' 3e-3 because the run is short: at 3e-3 the
#: stage-4 probabilities ended within 0.31-0.37 of uniform.
QUICK_SETTINGS = dict(epochs=3, warmup_epochs=1, steps_per_epoch=80, batch_size=32, image_size=96, mixing="hard",
                      alpha_lr=1e-2)
IMPORTANCE_JSON = "importance.json"


def _check_settings(epochs, warmup_epochs, batch_size, lr, alpha_lr, image_size, steps_per_epoch, mixing):
    ints = dict(epochs=epochs, batch_size=batch_size, image_size=image_size)
    for name, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise SupernetError(f"{name} must be a positive integer, got {value!r}")
    if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or steps_per_epoch <= 0):
        raise SupernetError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    if not 0 <= warmup_epochs <= epochs:
        raise SupernetError(f"need 0 <= warmup_epochs <= epochs, got {warmup_epochs} and {epochs}")
    for name, value in (("lr", lr), ("alpha_lr", alpha_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise SupernetError(f"{name} must be a finite positive number, got {value!r}")
    if mixing not in MIXING_MODES:
        raise SupernetError(f"mixing must be one of {', '.join(MIXING_MODES)}, got {mixing!r}")


def train_supernet(out_dir: str, *, config: EfficientFormerConfig = DEFAULT_SUPERNET, data: str = "embedded",
                   data_dir=None, image_size: int = 96, epochs: int = 3, warmup_epochs: int = 1,
                   steps_per_epoch: int | None = None, batch_size: int = 32, lr: float = 1e-3,
                   weight_decay: float = 0.025, alpha_lr: float = 3e-3, alpha_weight_decay: float = 1e-3,
                   mixing: str = "hard", seed: int = 0, augment=None, checkpoint_every: int = 50,
                   max_alpha_images: int = 5000, max_steps: int | None = None, strategy="auto",
                   progress: bool = True):
    """Trains (or resumes, or just loads if finished) a supernet into `out_dir`; returns (supernet, importance).

    `steps_per_epoch` caps the batches per epoch (each epoch reshuffles the whole split);
    `max_steps` stops early (after checkpointing) - used to test kill/resume. `strategy` is a
    `tf.distribute.Strategy` or a name of `ef_keras.training.loop.STRATEGIES`.
    """
    from ef_keras import data as ef_data
    from ef_keras.training.loop import make_strategy
    from search.slim import load_eval_split

    _check_settings(epochs, warmup_epochs, batch_size, lr, alpha_lr, image_size, steps_per_epoch, mixing)
    out_dir = check_run_directory(out_dir)
    strategy = strategy if isinstance(strategy, tf.distribute.Strategy) else make_strategy(strategy)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise SupernetError(f"batch_size {batch_size} is not divisible by the {replicas} replicas of the strategy")
    keras.utils.set_random_seed(seed)
    augment = augment or ("light" if data in ef_data.ARRAY_DATASETS else "recipe")
    classes = ef_data.num_classes_of(data, data_dir)
    spe = ef_data.steps_per_epoch(data, batch_size, data_dir, cap=steps_per_epoch)
    total = epochs * spe
    ckpt_dir = os.path.join(out_dir, "ckpt")
    run_id = {"config": config.to_dict(), "image_size": image_size, "classes": classes, "data": data,
              "epochs": epochs, "steps_per_epoch": spe, "batch_size": batch_size, "seed": seed, "mixing": mixing}
    recorded = resume_settings(out_dir, run_id, error=SupernetError)
    trainer = SupernetTrainer(config, image_size=image_size, classes=classes, mixing=mixing, total_steps=total,
                              steps_per_epoch=spe, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                              alpha_lr=alpha_lr, alpha_weight_decay=alpha_weight_decay, seed=seed, strategy=strategy)
    supernet = trainer.supernet
    saved_step = tf.Variable(0, dtype=tf.int64, name="step")
    # The supernet's weights as a list: its blocks live in Python lists, which TF's checkpoint
    # graph does not follow into Keras 3 layers (their BatchNorm statistics would be lost).
    checkpoints = Checkpoints(ckpt_dir, keep=2, error=SupernetError, weights=supernet.weights, opt_w=trainer.opt_w,
                              opt_a=trainer.opt_a, step=saved_step)
    checkpoints.restore()
    step = int(saved_step.numpy())
    if step >= total and os.path.exists(os.path.join(out_dir, IMPORTANCE_JSON)):
        return supernet, read_json(os.path.join(out_dir, IMPORTANCE_JSON), "importance report", SupernetError)

    alpha_data = load_eval_split(data, image_size, data_dir, max_alpha_images, seed)
    os.makedirs(out_dir, exist_ok=True)  # only now: a run that cannot start leaves no empty directory
    if not recorded:
        record_settings(out_dir, run_id)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    bar = keras.utils.Progbar(total, stateful_metrics=["loss", "acc", "tau", "a_loss"]) if progress else None
    if bar is not None and step:
        print(f"resuming supernet training at step {step}/{total}")
        bar.update(step)
    for epoch in range(step // spe, epochs):
        ds = ef_data.make_dataset(data, "train", data_dir=data_dir, image_size=image_size, batch_size=batch_size,
                                  training=True, seed=seed, epoch=epoch, augment=augment)
        ds = ds.skip(step - epoch * spe).take(spe - (step - epoch * spe))
        for batch in strategy.experimental_distribute_dataset(ds):
            values = trainer.step(step, batch, alpha_data if epoch >= warmup_epochs else None)
            if not all(math.isfinite(v) for _, v in values):
                raise SupernetError(f"non-finite loss at step {step + 1} ({dict(values)}); the last good checkpoint "
                                    f"is kept in {ckpt_dir}: lower --lr (now {lr}) or --alpha-lr (now {alpha_lr})")
            step += 1
            if bar is not None:
                bar.update(step, values)
            with writer.as_default(step=step):
                for k, v in values:
                    summary_scalar(f"supernet/{k}", v)
            if step % checkpoint_every == 0 or step % spe == 0 or step == total:
                saved_step.assign(step)
                checkpoints.save(step)
            if max_steps is not None and step >= max_steps:
                return supernet, None
        with writer.as_default(step=step):
            probs = supernet.probabilities()
            for p in range(supernet.num_paths):
                summary_scalar(f"alpha_prob_identity/path{p:02d}", float(probs[p, 2]))
        writer.flush()

    importance = importance_report(supernet)
    save_supernet(supernet, out_dir, extra={"training": run_id, "steps": total})
    write_json(os.path.join(out_dir, IMPORTANCE_JSON), importance)
    return supernet, importance


class SupernetTrainer:
    """A supernet, its two optimizers and its weight and α steps (distributed tf.functions, one trace each).

    `step(i, batch, alpha_data)` is one training step: τ of step i, a weight step on `batch`
    (a distributed (x, one-hot y) batch) and, when `alpha_data` (held-out x, int y) is given,
    an α step on `batch_size` of its images drawn as a function of (seed, i). Both draw their
    own Gumbel noise of (seed, i). Returns [(name, value)] of loss, acc, tau (, a_loss).
    """

    def __init__(self, config: EfficientFormerConfig, *, image_size: int, classes: int, mixing: str, total_steps: int,
                 steps_per_epoch: int, batch_size: int, lr: float, weight_decay: float, alpha_lr: float,
                 alpha_weight_decay: float, seed: int, strategy: tf.distribute.Strategy):
        from ef_keras.training.loop import enable_sync_batchnorm

        self.total, self.global_batch, self.seed, self.classes = total_steps, batch_size, seed, classes
        spe = steps_per_epoch
        with strategy.scope():
            self.supernet = Supernet(config, image_size=image_size, classes=classes, mixing=mixing)
            if strategy.num_replicas_in_sync > 1:
                enable_sync_batchnorm(self.supernet)  # the recipe's SyncBN: statistics of the global batch
            wvars = self.supernet.weight_variables()
            schedule = keras.optimizers.schedules.CosineDecay(0.0, max(total_steps - spe // 2, 1), alpha=0.01,
                                                              warmup_target=lr,
                                                              warmup_steps=min(spe // 2, total_steps))
            # No clipnorm: Keras clips each replica's partial gradient before the cross-replica sum,
            # which would make a distributed run differ from a single-device one.
            self.opt_w = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
            self.opt_w.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "layer_scale",
                                                            "attention_biases"])
            self.opt_a = keras.optimizers.Adam(alpha_lr, beta_1=0.5)
            self.opt_w.build(wvars)
            self.opt_a.build([self.supernet.alpha])
        self.wvars, self.strategy, self.alpha_wd = wvars, strategy, alpha_weight_decay
        self.ce_smooth = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction=None)
        self.ce = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)
        self._weights = tf.function(self._distributed(self._weight_replica))
        self._alpha = tf.function(self._distributed(self._alpha_replica))

    def step(self, i: int, batch, alpha_data=None) -> list[tuple[str, float]]:
        """Training step i (see the class docstring)."""
        net = self.supernet
        net.tau.assign(tau_at(i, self.total))
        loss, acc = self._weights(batch, gumbel_noise(self.seed, 2 * i, net.num_paths))
        values = [("loss", float(loss)), ("acc", float(acc)), ("tau", float(net.tau.numpy()))]
        if alpha_data is not None:
            xa, ya = alpha_data
            idx = np.random.default_rng([self.seed, i]).choice(len(xa), min(self.global_batch, len(xa)), replace=False)
            a_loss = self.alpha((tf.gather(xa, idx), tf.one_hot(tf.gather(ya, idx), self.classes)),
                                gumbel_noise(self.seed, 2 * i + 1, net.num_paths))
            values.append(("a_loss", float(a_loss)))
        return values

    def _distributed(self, fn):
        def run(batch, noise):
            per_replica = self.strategy.run(fn, args=(*batch, noise))
            return tf.nest.map_structure(
                lambda v: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None), per_replica)
        return run

    def _weight_replica(self, x, y, noise):
        with tf.GradientTape() as tape:
            logits = self.supernet(x, training=True, noise=noise)
            loss = tf.reduce_sum(self.ce_smooth(y, logits)) / self.global_batch
        self.opt_w.apply_gradients(zip(tape.gradient(loss, self.wvars), self.wvars))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == tf.argmax(y, -1), tf.float32))
        return loss, correct / self.global_batch

    def _alpha_replica(self, x, y, noise):
        alpha = self.supernet.alpha
        with tf.GradientTape() as tape:
            data_loss = tf.reduce_sum(self.ce(y, self.supernet(x, training=False, noise=noise))) / self.global_batch
            loss = data_loss + self.alpha_wd * tf.reduce_sum(tf.square(alpha)) / self.strategy.num_replicas_in_sync
        self.opt_a.apply_gradients([(tape.gradient(loss, alpha), alpha)])
        return loss

    def alpha(self, batch, noise):
        """One α step on a (x, one-hot y) batch of held-out images, split over the replicas."""
        x, y = batch
        n = self.strategy.num_replicas_in_sync
        if n > 1:
            x, y = (self.strategy.experimental_distribute_values_from_function(
                lambda ctx, t=t: t[ctx.replica_id_in_sync_group::n]) for t in (x, y))
        return self._alpha((x, y), noise)


def importance_report(supernet: Supernet) -> dict:
    """α, candidate probabilities and the paper's scores, per MetaPath and per stage."""
    probs = supernet.probabilities()
    scores = path_scores(probs, supernet.path_stage)
    by_stage = supernet.paths_by_stage()
    alpha = supernet.alpha.numpy()
    return {
        "candidates": list(CANDIDATES),
        "paths": [{"stage": s + 1, "position": k, "alpha": [float(v) for v in alpha[p]],
                   "probabilities": [float(v) for v in probs[p]], "score": float(scores[p])}
                  for s in range(4) for k, p in enumerate(by_stage[s])],
        "stage_scores": [float(sum(scores[p] for p in by_stage[s])) for s in range(4)],
        "initial_num_vit": initial_num_vit(probs, supernet.path_stage),
        "score_definition": "s = p4D/pI (stages 1-2), (p3D+p4D)/pI (stages 3-4), p = softmax(alpha)",
    }


# --------------------------------------------------------------------------- CLI
def _ints(text, name):
    from ef_keras.checks import parse_int_list

    return parse_int_list(f"--{name}", text, length=4)


def main(argv):
    from absl import flags

    del argv
    FLAGS = flags.FLAGS
    t0 = time.time()
    config = dataclasses.replace(DEFAULT_SUPERNET, widths=_ints(FLAGS.widths, "widths"),
                                 depths=_ints(FLAGS.depths, "depths"),
                                 layer_scale_init=FLAGS["layer-scale-init"].value)
    _, importance = train_supernet(FLAGS.out, config=config, data=FLAGS.data, data_dir=FLAGS["data-dir"].value,
                                   image_size=FLAGS["image-size"].value, epochs=FLAGS.epochs,
                                   warmup_epochs=FLAGS["warmup-epochs"].value,
                                   steps_per_epoch=FLAGS["steps-per-epoch"].value or None,
                                   batch_size=FLAGS["batch-size"].value, lr=FLAGS.lr, alpha_lr=FLAGS["alpha-lr"].value,
                                   mixing=FLAGS.mixing, seed=FLAGS.seed, strategy=FLAGS.strategy,
                                   checkpoint_every=FLAGS["checkpoint-every"].value)
    print(f"supernet trained in {time.time() - t0:.0f} s -> {FLAGS.out}")
    print("stage scores:", ", ".join(f"{s:.3f}" for s in importance["stage_scores"]),
          f"| initial num_vit {importance['initial_num_vit']}")


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    from absl import flags

    d = DEFAULT_SUPERNET
    from ef_keras.training.loop import STRATEGIES

    flags.DEFINE_string("data", "embedded", "dataset: embedded (Fashion-MNIST subset), digits, fashion_mnist, "
                                            "a tfds name or an ImageFolder directory")
    flags.DEFINE_string("data-dir", None, "tfds data directory")
    flags.DEFINE_string("out", "runs/supernet", "output directory (resumes if it holds a checkpoint)")
    flags.DEFINE_string("widths", ",".join(map(str, d.widths)), "supernet stage widths (multiples of 16)")
    flags.DEFINE_string("depths", ",".join(map(str, d.depths)), "supernet stage depths")
    flags.DEFINE_integer("image-size", QUICK_SETTINGS["image_size"], "proxy input size (multiple of 32)")
    flags.DEFINE_integer("epochs", QUICK_SETTINGS["epochs"], "training epochs")
    flags.DEFINE_integer("warmup-epochs", QUICK_SETTINGS["warmup_epochs"], "epochs of weight-only training")
    flags.DEFINE_integer("steps-per-epoch", QUICK_SETTINGS["steps_per_epoch"],
                         "cap on batches per epoch (0: the whole split)")
    flags.DEFINE_enum("mixing", QUICK_SETTINGS["mixing"], list(MIXING_MODES),
                      "soft: every candidate computed (the paper); hard: only the sampled one (GDAS)")
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES), "tf.distribute strategy (as ef_keras.train)")
    flags.DEFINE_integer("batch-size", QUICK_SETTINGS["batch_size"], "batch size")
    flags.DEFINE_float("lr", 1e-3, "peak learning rate of the weights (AdamW)")
    flags.DEFINE_float("alpha-lr", QUICK_SETTINGS["alpha_lr"], "learning rate of alpha (Adam)")
    flags.DEFINE_float("layer-scale-init", DEFAULT_SUPERNET.layer_scale_init,
                       "initial LayerScale (the paper's 1e-5 suits long runs; short proxy runs need more)")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_integer("checkpoint-every", 50, "steps between checkpoints")


def run():
    """Console entry point (`ef-train-supernet`): flags, then `main` with one-line errors for bad input."""
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main)


if __name__ == "__main__":
    run()

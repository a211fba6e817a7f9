"""Trains the supernet: the shared weights of every child, and the architecture parameters α.

    python -m search.train_supernet --data embedded --out runs/supernet            # the quick proxy run
    python -m search.train_supernet --data imagenet2012 --data-dir ~/tensorflow_datasets \\
        --image-size 224 --epochs 30 --steps-per-epoch 0 --batch-size 256 --strategy mirrored --out runs/in1k

**Weights: every child slimming asks about is trained** (weight sharing). Each step samples
children of the elastic supernet and trains the shared weights on them (`--rule`):

- "sandwich" (BigNAS, Yu et al. 2020): the largest child on the labels, then the smallest
  and two random children on the largest one's predictions (in-place distillation); their
  gradients are summed into one update;
- "uniform" (SPOS / FairNAS style single-path): one child per step, widths uniform over the
  grid;
- "progressive" (Once-for-All's progressive shrinking, in its simplest form): the largest
  child alone during the weight-only warm-up epochs, then "uniform".

A child's widths come from the rule; its MetaPath candidates are sampled from the Gumbel-
softmax over α (the paper's supernet; the largest child excludes identities, the smallest
keeps the first block of each stage). `benchmarks/supernet_modes.py` compares the rules
at equal time by how well the trained weights rank and score children.

**α** (the paper's importance) is trained DARTS/FBNet-style in alternating steps after
`warmup_epochs` of weights only: Adam (β₁ 0.5) on a batch of the search-validation split,
through the paper's soft Gumbel-softmax mixture Σ_n w_n·MP_n(x) at random widths, whatever
`mixing` the weights train with. τ anneals 5 → 0.5 (`supernet.tau_at`).

Why α never takes GDAS' straight-through gradient: it is ∂L/∂w_k = ⟨∂L/∂out, out⟩ for the
sampled candidate only, and a stage's last MetaPath feeds only a scale-invariant op (the next
downsampling's conv → BatchNorm, or the head's LayerNorm), for which that inner product is 0.
Those α never moved: in the main job's supernet of 0.2.x (hard mixing, straight-through α)
the last path of every stage ended within 0.002 of uniform probabilities, the others at
0.28-0.55. In the mixture each ⟨∂L/∂out, MP_n(x)⟩ is non-zero even where their w-weighted
sum is 0, so every MetaPath learns; it costs computing every candidate in the α step
(`tests/test_supernet.py` compares the two gradients at such paths).

Splits (`search.evaluate.search_splits`): weights on train[:80%], α on train[80%:]; the
held-out split is never read.

Distribution: the steps run under any `tf.distribute` strategy (`--strategy`, including
multi_worker: TF_CONFIG, every worker runs the same command); each replica takes its share of
the global batch, BatchNorm statistics are those of the global batch (SyncBN), and all
replicas draw the same children and Gumbel noise (functions of the step), so two replicas of
B/2 compute what one device computes on B. Under several replicas a hard-mixing child runs
every candidate of a MetaPath and keeps the chosen one (`Supernet._chosen_path`), so its step
costs what a soft one does. A multi-worker non-chief writes its files beside `out_dir`
(`out_dir.worker-<i>`) and every worker resumes from the chief's checkpoint.

Fault tolerance: the run's settings are recorded in `<out>/run.json`; a checkpoint (weights,
α, both optimizers, step) is written every `checkpoint_every` steps and at epoch ends, and a
re-run resumes from it (a run with other settings is refused before anything is built). The
data order of an epoch, the children and the noise of a step are pure functions of (seed,
epoch/step), so a resumed run reproduces an uninterrupted one.

Outputs: `supernet.json` + `supernet.weights.h5` (what search.slim loads), `importance.json`
(α, probabilities, normalised scores), TensorBoard logs in `<out>/tb`.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from ef_keras.errors import require_tensorflow_backend
from search.arch import CANDIDATES
from search.evaluate import load_split, search_splits
from search.scoring import importance_report
from search.space import DEFAULT_DEPTHS, DEFAULT_MAX_WIDTHS, DEFAULT_MIN_WIDTHS, SearchSpace, SpaceError, default_space
from search.supernet import MIXING_MODES, Supernet, SupernetError, gumbel_noise, save_supernet, tau_at

#: Weight-sharing rules (module docstring).
RULES = ("uniform", "sandwich", "progressive")
IMPORTANCE_JSON = "importance.json"


def quick_settings() -> dict:
    """The proxy run `python -m search.slim` trains when given no supernet (embedded data, 2 cores).

    64 px inputs (stage grids 16/8/4/2: attention mixes 16 tokens in stage 3 and 4 in stage 4;
    the embedded images are 28 px, so nothing is lost), batches of 32, the first epoch weights
    only. 96 px cost 1.8-2.4x as much per step and per scored child (idle 2-core host: a weight
    step 0.26 against 0.18 s, an α step 0.45 against 0.20 s, a full child scored on 2,000 images
    8.4 against 3.6 s), which put the main job over its 10-minute budget. The rule is
    "progressive": at equal training multiply-adds its children scored 11.7 ± 0.4 top-1 points
    above the uniform rule's and the sandwich rule's 9.4 below (`benchmarks/supernet_modes.py`,
    at 96 px). α's learning rate is higher than DARTS' 3e-3 because the run is short (at 3e-3
    the probabilities stayed within a few points of uniform in 0.2).
    """
    return dict(epochs=3, warmup_epochs=1, steps_per_epoch=100, batch_size=32, image_size=64, mixing="hard",
                rule="progressive", alpha_lr=1e-2, lr=2e-3)


def _check_settings(epochs, warmup_epochs, batch_size, lr, alpha_lr, image_size, steps_per_epoch, mixing, rule):
    from ef_keras.checks import check_int, check_number

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("image_size", image_size)):
        check_int(name, value, low=1, error=SupernetError)
    if steps_per_epoch is not None:
        check_int("steps_per_epoch", steps_per_epoch, low=1, error=SupernetError)
    if not 0 <= warmup_epochs <= epochs:
        raise SupernetError(f"need 0 <= warmup_epochs <= epochs, got {warmup_epochs} and {epochs}")
    for name, value in (("lr", lr), ("alpha_lr", alpha_lr)):
        check_number(name, value, low=0.0, low_open=True, error=SupernetError)
    if mixing not in MIXING_MODES:
        raise SupernetError(f"mixing must be one of {', '.join(MIXING_MODES)}, got {mixing!r}")
    if rule not in RULES:
        raise SupernetError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")


def train_supernet(out_dir: str, *, space: SearchSpace | None = None, data: str = "embedded", data_dir=None,
                   image_size: int = 64, epochs: int = 3, warmup_epochs: int = 1, steps_per_epoch: int | None = None,
                   batch_size: int = 32, lr: float = 2e-3, weight_decay: float = 0.025, alpha_lr: float = 1e-2,
                   alpha_weight_decay: float = 1e-3, mixing: str = "hard", rule: str = "progressive", seed: int = 0,
                   augment=None, checkpoint_every: int = 50, max_steps: int | None = None, strategy="auto",
                   val_percent: int = 20, log=print):
    """Trains (or resumes, or just loads if finished) a supernet into `out_dir`; returns (supernet, importance).

    `steps_per_epoch` caps the batches per epoch (each epoch reshuffles the split); `max_steps`
    stops early (after checkpointing), used to test kill/resume. `strategy` is a
    `tf.distribute.Strategy` or a name of `ef_keras.training.STRATEGIES`. `log` receives one
    line per tenth of the run (a progress bar when stdout is a terminal).
    """
    import keras
    import tensorflow as tf

    from ef_keras import data as ef_data
    from ef_keras.checks import read_json
    from ef_keras.output import check_run_directory
    from ef_keras.runs import Checkpoints, record_settings, resume_settings, summary_scalar
    from ef_keras.training.loop import make_strategy, worker_directory

    require_tensorflow_backend("supernet training (tf.data and tf.distribute)")
    space = space or default_space()
    _check_settings(epochs, warmup_epochs, batch_size, lr, alpha_lr, image_size, steps_per_epoch, mixing, rule)
    check_run_directory(out_dir)  # before a multi-worker strategy waits for its peers
    strategy = strategy if isinstance(strategy, tf.distribute.Strategy) else make_strategy(strategy)
    chief_dir, out_dir = check_run_directory(out_dir), check_run_directory(worker_directory(out_dir, strategy))
    if batch_size % strategy.num_replicas_in_sync:
        raise SupernetError(f"batch_size {batch_size} is not divisible by the {strategy.num_replicas_in_sync} "
                            "replicas of the strategy")
    keras.utils.set_random_seed(seed)
    splits = search_splits(val_percent)
    augment = augment or ("light" if data in ef_data.ARRAY_DATASETS else "recipe")
    classes = ef_data.num_classes_of(data, data_dir)
    spe = ef_data.steps_per_epoch(data, batch_size, data_dir, split=splits["search_train"], cap=steps_per_epoch)
    total = epochs * spe
    run_id = {"space": space.to_dict(), "image_size": image_size, "classes": classes, "data": data,
              "splits": splits, "epochs": epochs, "warmup_epochs": warmup_epochs, "steps_per_epoch": spe,
              "batch_size": batch_size, "lr": lr, "alpha_lr": alpha_lr, "seed": seed, "mixing": mixing, "rule": rule}
    recorded = resume_settings(out_dir, run_id, error=SupernetError)
    trainer = SupernetTrainer(space, image_size=image_size, classes=classes, mixing=mixing, rule=rule,
                              total_steps=total, steps_per_epoch=spe, batch_size=batch_size, lr=lr,
                              weight_decay=weight_decay, alpha_lr=alpha_lr, alpha_weight_decay=alpha_weight_decay,
                              seed=seed, strategy=strategy, warmup_steps=warmup_epochs * spe)
    supernet = trainer.supernet
    saved_step = tf.Variable(0, dtype=tf.int64, name="step")
    # The supernet's weights as a list: its blocks live in Python lists, which TF's checkpoint
    # graph does not follow into Keras 3 layers (their BatchNorm statistics would be lost).
    checkpoints = Checkpoints(os.path.join(out_dir, "ckpt"), keep=2, error=SupernetError,
                              restore_from=os.path.join(chief_dir, "ckpt"),  # every worker resumes at one step
                              weights=supernet.weights,
                              opt_w=trainer.opt_w, opt_a=trainer.opt_a, step=saved_step)
    checkpoints.restore()
    step = int(saved_step.numpy())
    if step >= total and os.path.exists(os.path.join(out_dir, IMPORTANCE_JSON)):
        return supernet, read_json(os.path.join(out_dir, IMPORTANCE_JSON), "importance report", SupernetError)

    alpha_data = load_split(data, splits["search_val"], image_size, data_dir)
    os.makedirs(out_dir, exist_ok=True)  # only now: a run that cannot start leaves no empty directory
    if not recorded:
        record_settings(out_dir, run_id)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    progress = _Progress(total, step, log)
    started = time.time()
    for epoch in range(step // spe, epochs):
        ds = ef_data.make_dataset(data, splits["search_train"], data_dir=data_dir, image_size=image_size,
                                  batch_size=batch_size, training=True, seed=seed, epoch=epoch, augment=augment)
        ds = ds.skip(step - epoch * spe).take(spe - (step - epoch * spe))
        for batch in strategy.experimental_distribute_dataset(ds):
            values = trainer.step(step, batch, alpha_data if epoch >= warmup_epochs else None)
            if not all(math.isfinite(v) for _, v in values):
                raise SupernetError(f"non-finite loss at step {step + 1} ({dict(values)}); the last good checkpoint "
                                    f"is kept in {out_dir}/ckpt: lower --lr (now {lr}) or --alpha-lr (now {alpha_lr})")
            step += 1
            progress.update(step, values)
            with writer.as_default(step=step):
                for k, v in values:
                    summary_scalar(f"supernet/{k}", v)
            if step % checkpoint_every == 0 or step % spe == 0 or step == total:
                saved_step.assign(step)
                checkpoints.save(step)
            if max_steps is not None and step >= max_steps:
                return supernet, None
        writer.flush()

    importance = importance_report(supernet.probabilities(), supernet.path_stage)
    save_supernet(supernet, out_dir, extra={"training": run_id, "steps": total,
                                             "train_seconds": round(time.time() - started, 1)})
    from ef_keras.output import write_json

    write_json(os.path.join(out_dir, IMPORTANCE_JSON), importance)
    return supernet, importance


class _Progress:
    """A Keras progress bar on a terminal; otherwise one line per tenth of the run."""

    def __init__(self, total: int, start: int, log):
        import keras

        self.total, self.log, self.started, self.first = total, log, time.time(), start
        self.bar = keras.utils.Progbar(total, stateful_metrics=["loss", "acc", "tau", "a_loss"]) \
            if sys.stdout.isatty() and log is print else None
        self.every = max(total // 10, 1)
        if start:
            log(f"resuming supernet training at step {start}/{total}")
            if self.bar is not None:
                self.bar.update(start)

    def update(self, step: int, values):
        if self.bar is not None:
            self.bar.update(step, values)
        elif step % self.every == 0 or step == self.total:
            rate = (time.time() - self.started) / max(step - self.first, 1)
            self.log(f"supernet step {step}/{self.total}  " + "  ".join(f"{k} {v:.3f}" for k, v in values)
                     + f"  ({rate:.2f} s/step)")


class SupernetTrainer:
    """A supernet, its two optimizers and its training step (one traced child step, any strategy).

    `step(i, batch, alpha_data)`: τ of step i; a weight update from the children of the rule
    on `batch` (a distributed (x, one-hot y) batch); and, when `alpha_data` (x, int y) is
    given, an α update on `batch_size` of its images drawn as a function of (seed, i).
    Returns [(name, value)] of loss (the largest or only child's), acc, tau (, a_loss).
    """

    def __init__(self, space: SearchSpace, *, image_size: int, classes: int, mixing: str, rule: str,
                 total_steps: int, steps_per_epoch: int, batch_size: int, lr: float, weight_decay: float,
                 alpha_lr: float, alpha_weight_decay: float, seed: int, strategy, warmup_steps: int = 0):
        import keras
        import tensorflow as tf

        self.total, self.global_batch, self.seed, self.classes, self.rule = total_steps, batch_size, seed, classes, rule
        self.space, self.strategy, self.alpha_wd, self.warmup_steps = space, strategy, alpha_weight_decay, warmup_steps
        spe = steps_per_epoch
        with strategy.scope():
            self.supernet = Supernet(space, image_size=image_size, classes=classes, mixing=mixing)
            self.wvars = self.supernet.weight_variables()
            schedule = keras.optimizers.schedules.CosineDecay(0.0, max(total_steps - spe // 2, 1), alpha=0.01,
                                                              warmup_target=lr,
                                                              warmup_steps=min(spe // 2, total_steps))
            # No clipnorm: Keras clips each replica's partial gradient before the cross-replica sum,
            # which would make a distributed run differ from a single-device one.
            self.opt_w = keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
            self.opt_w.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "layer_scale",
                                                            "attention_biases"])
            self.opt_a = keras.optimizers.Adam(alpha_lr, beta_1=0.5)
            self.opt_w.build(self.wvars)
            self.opt_a.build([self.supernet.alpha])
        self._child = tf.function(lambda *args: strategy.run(self._child_replica, args=args), autograph=False)
        self._alpha_grad = tf.function(lambda *args: strategy.run(self._alpha_replica, args=args), autograph=False)
        self._apply_w = tf.function(lambda *grads: strategy.run(self._apply_w_replica, args=grads),
                                    autograph=False)
        self._apply_a = tf.function(lambda grad: strategy.run(self._apply_a_replica, args=(grad,)),
                                    autograph=False)
        mask = self.supernet.candidate_mask
        self._largest_bias = np.where(np.arange(len(CANDIDATES)) == CANDIDATES.index("id"), -1e9, 0.0)[None] \
            * np.ones_like(mask)
        smallest = np.full(mask.shape, -1e9, "float32")
        first_of_stage = [p == min(q for q, s in enumerate(self.supernet.path_stage) if s == stage)
                          for p, stage in enumerate(self.supernet.path_stage)]
        for p, first in enumerate(first_of_stage):
            smallest[p, CANDIDATES.index("4d" if first else "id")] = 0.0
        self._smallest_bias = smallest
        self._free_bias = np.zeros(mask.shape, "float32")

    # ------------------------------------------------------------------ children of a step
    def children(self, i: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """[(role, widths (4,), candidate bias (paths, 3))] of step i: a pure function of (seed, i)."""
        rng = np.random.default_rng([self.seed, i])
        space = self.space

        def random_widths():
            return np.array([rng.choice(space.widths(s)) for s in range(4)], "int32")

        largest = ("largest", np.array(space.max_widths, "int32"), self._largest_bias)
        if self.rule == "progressive" and i < self.warmup_steps:
            return [largest]
        if self.rule in ("uniform", "progressive"):
            return [("random", random_widths(), self._free_bias)]
        return [largest,
                ("smallest", np.array(space.min_widths, "int32"), self._smallest_bias),
                ("random", random_widths(), self._free_bias), ("random", random_widths(), self._free_bias)]

    def step(self, i: int, batch, alpha_data=None) -> list[tuple[str, float]]:
        """Training step i (see the class docstring)."""
        import tensorflow as tf

        net = self.supernet
        net.tau.assign(tau_at(i, self.total))
        x, y = batch
        grads, teacher, values = [], None, []
        for k, (role, widths, bias) in enumerate(self.children(i)):
            targets = y if teacher is None else teacher
            loss, acc, probs, g_w = self._child(x, targets, widths, bias.astype("float32"),
                                                gumbel_noise(self.seed, 8 * i + k, net.num_paths))
            grads.append(g_w)
            if k == 0:
                values += [("loss", self._sum(loss)), ("acc", self._sum(acc))]
                if self.rule == "sandwich":  # in-place distillation: the others learn the largest's predictions
                    teacher = tf.nest.map_structure(tf.stop_gradient, probs)
        self._apply_w(*grads)
        values.append(("tau", float(net.tau.numpy())))
        if alpha_data is not None:
            values.append(("a_loss", self._alpha_step(i, alpha_data)))
        return values

    def _alpha_step(self, i: int, alpha_data) -> float:
        xa, ya = alpha_data
        rng = np.random.default_rng([self.seed, i, 1])
        idx = rng.choice(len(xa), min(self.global_batch, len(xa)), replace=False)
        widths = np.array([rng.choice(self.space.widths(s)) for s in range(4)], "int32")
        x, y = self._distribute(xa[idx], np.eye(self.classes, dtype="float32")[ya[idx]])
        loss, g_a = self._alpha_grad(x, y, widths, gumbel_noise(self.seed, 8 * i + 7, self.supernet.num_paths))
        self._apply_a(g_a)
        return self._sum(loss)

    # ------------------------------------------------------------------ replica functions
    def _child_replica(self, x, targets, widths, bias, noise):
        """Loss, accuracy, predictions and weight gradients of one sampled child on this replica's share."""
        import tensorflow as tf

        net = self.supernet
        weights = net.mixing_weights(noise, bias)
        with tf.GradientTape() as tape:
            if net.mixing == "soft":
                logits = net.forward(x, widths, None, soft_weights=weights, training=True)
            else:
                logits = net.forward(x, widths, tf.argmax(weights, axis=-1, output_type=tf.int32), training=True)
            loss = self._loss(logits, targets)
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == tf.argmax(targets, -1), tf.float32))
        return loss, correct / self.global_batch, tf.nn.softmax(logits), tape.gradient(loss, self.wvars)

    def _alpha_replica(self, x, targets, widths, noise):
        """Loss and α's gradient of the soft Gumbel-softmax mixture on this replica's share (module docstring)."""
        import tensorflow as tf

        net = self.supernet
        with tf.GradientTape() as tape:
            loss = self._loss(net.forward(x, widths, None, soft_weights=net.mixing_weights(noise), training=True),
                              targets)
            penalty = self.alpha_wd * tf.reduce_sum(tf.square(net.alpha)) / self.strategy.num_replicas_in_sync
        return loss, tape.gradient([loss, penalty], net.alpha)

    def _loss(self, logits, targets):
        """This replica's share of the global batch's label-smoothed (0.1) cross-entropy."""
        import tensorflow as tf

        smoothed = targets * 0.9 + 0.1 / self.classes  # a no-op on soft targets' argmax
        return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(smoothed, logits)) / self.global_batch

    # The gradients come in as arguments of a traced `strategy.run`, which carry no device; the
    # optimizers' all-reduce takes its destinations from the gradients' devices (MultiWorker-
    # MirroredStrategy refuses empty ones), so each first passes an op on this replica (the
    # children's sum, 0 + g for one child, or an identity).
    def _apply_w_replica(self, *grads):
        """One update from the gradients of the step's children, summed (the sandwich rule's one update)."""
        self.opt_w.apply_gradients(zip([sum(parts) for parts in zip(*grads)], self.wvars))

    def _apply_a_replica(self, grad):
        import tensorflow as tf

        self.opt_a.apply_gradients([(tf.identity(grad), self.supernet.alpha)])

    # ------------------------------------------------------------------ helpers
    def _sum(self, value) -> float:
        import tensorflow as tf

        return float(self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None))

    def _distribute(self, x, y):
        """Splits a host batch over the replicas (identity for one replica)."""
        n = self.strategy.num_replicas_in_sync
        if n == 1:
            return x, y
        return tuple(self.strategy.experimental_distribute_values_from_function(
            lambda ctx, t=t: t[ctx.replica_id_in_sync_group::n]) for t in (x, y))


# --------------------------------------------------------------------------- CLI
def main(argv):
    from absl import flags

    from ef_keras.checks import parse_int_list
    from ef_keras.training.loop import make_strategy

    del argv
    FLAGS = flags.FLAGS
    t0 = time.time()
    space = default_space(FLAGS["layer-scale-init"].value,
                          max_widths=parse_int_list("--max-widths", FLAGS["max-widths"].value, 4, SpaceError),
                          min_widths=parse_int_list("--min-widths", FLAGS["min-widths"].value, 4, SpaceError),
                          depths=parse_int_list("--depths", FLAGS["depths"].value, 4, SpaceError))
    _, importance = train_supernet(
        FLAGS.out, space=space, data=FLAGS.data, data_dir=FLAGS["data-dir"].value,
        image_size=FLAGS["image-size"].value, epochs=FLAGS.epochs, warmup_epochs=FLAGS["warmup-epochs"].value,
        steps_per_epoch=FLAGS["steps-per-epoch"].value or None, batch_size=FLAGS["batch-size"].value, lr=FLAGS.lr,
        alpha_lr=FLAGS["alpha-lr"].value, mixing=FLAGS.mixing, rule=FLAGS.rule, seed=FLAGS.seed,
        strategy=make_strategy(FLAGS.strategy, peer_timeout_s=FLAGS["peer-timeout"].value),
        checkpoint_every=FLAGS["checkpoint-every"].value)
    print(f"supernet trained in {time.time() - t0:.0f} s -> {FLAGS.out}")
    print("stage scores (1 = uniform α):", ", ".join(f"{s:.3f}" for s in importance["stage_scores"]))


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    from absl import flags

    from ef_keras.training.loop import PEER_TIMEOUT_S, STRATEGIES

    q = quick_settings()
    flags.DEFINE_string("data", "embedded", "dataset: embedded (Fashion-MNIST subset), digits, fashion_mnist, "
                                            "a tfds name or an ImageFolder directory")
    flags.DEFINE_string("data-dir", None, "tfds data directory")
    flags.DEFINE_string("out", "runs/supernet", "output directory (resumes if it holds a checkpoint)")
    flags.DEFINE_string("max-widths", ",".join(map(str, DEFAULT_MAX_WIDTHS)), "the supernet's stage widths")
    flags.DEFINE_string("min-widths", ",".join(map(str, DEFAULT_MIN_WIDTHS)),
                        "the narrowest width slimming may give each stage (multiples of 16)")
    flags.DEFINE_string("depths", ",".join(map(str, DEFAULT_DEPTHS)), "the supernet's blocks per stage")
    flags.DEFINE_integer("image-size", q["image_size"], "proxy input size (multiple of 32)")
    flags.DEFINE_integer("epochs", q["epochs"], "training epochs")
    flags.DEFINE_integer("warmup-epochs", q["warmup_epochs"], "epochs of weight-only training")
    flags.DEFINE_integer("steps-per-epoch", q["steps_per_epoch"], "cap on batches per epoch (0: the whole split)")
    flags.DEFINE_enum("mixing", q["mixing"], list(MIXING_MODES),
                      "weight steps: soft, every candidate computed (the paper); hard, only the sampled one (GDAS). "
                      "α always trains through the soft mixture")
    flags.DEFINE_enum("rule", q["rule"], list(RULES), "weight sharing: sandwich (BigNAS, in-place distillation), "
                      "uniform (one random child per step) or progressive (the largest during the warm-up, then uniform)")
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES), "tf.distribute strategy (as ef_keras.train)")
    flags.DEFINE_integer("peer-timeout", PEER_TIMEOUT_S, "--strategy multi_worker: seconds to wait for every worker "
                                                         "of TF_CONFIG's cluster before giving up.", lower_bound=1)
    flags.DEFINE_integer("batch-size", q["batch_size"], "batch size")
    flags.DEFINE_float("lr", q["lr"], "peak learning rate of the weights (AdamW)")
    flags.DEFINE_float("alpha-lr", q["alpha_lr"], "learning rate of alpha (Adam)")
    flags.DEFINE_float("layer-scale-init", 0.1, "initial LayerScale (the paper's 1e-5 suits long runs; short proxy "
                                                "runs need more)")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_integer("checkpoint-every", 50, "steps between checkpoints")


def run():
    """Console entry point (`ef-train-supernet`): flags, then `main` with one-line errors for bad input."""
    from ef_keras.cli import run as run_cli

    define_flags()
    run_cli(main)


if __name__ == "__main__":
    run()

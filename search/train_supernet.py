"""Trains the Gumbel-softmax supernet: network weights and architecture parameters α.

    python -m search.train_supernet --data embedded --out runs/supernet            # ~6 min on 2 cores
    python -m search.train_supernet --data imagenet2012 --data-dir ~/tensorflow_datasets \\
        --widths 96,192,384,768 --depths 6,6,18,8 --image-size 224 --epochs 30 --out runs/supernet_in1k

How the two kinds of parameters are trained (the paper only says "Gumbel softmax"; this
follows DARTS/FBNet): alternating steps on split data. Each step updates the weights with
AdamW on a `train` batch (label smoothing 0.1, cosine lr with warmup), then — after
`warmup_epochs` of weights only, so α is not fitted to untrained blocks (FBNet) — updates α
with Adam (β₁ 0.5, DARTS) on a batch of the held-out split, with BatchNorm in inference mode
so no held-out statistics leak into the weights. Both steps draw fresh Gumbel noise; τ
anneals 5 → 0.5 (supernet.tau_at). The held-out split is the dataset's validation split
(the embedded digits: 360 images); slimming later scores candidates on it too: both only
ever see it through α or sub-network selection, never through weight updates.

Fault tolerance: `<out>/ckpt/step-N/` (weights, both optimizers, step) is written every
`checkpoint_every` steps and at epoch ends, as a temp directory renamed into place; a
re-run resumes from the newest one. The data order of an epoch and the Gumbel noise of a
step are pure functions of (seed, epoch/step), so a resumed run reproduces an
uninterrupted one (tested: equal to 1e-5 at a tiny size; bit-identical there across
processes). At the default size two fresh runs agree only to float round-off, which
grows over training (TF CPU kernels; observed |Δα| <= 0.03 after 264 steps with oneDNN
on or off); slimming from a given supernet is exactly deterministic.

Outputs: `supernet.json` + `supernet.weights.h5` (what search.slim loads),
`importance.json` (α, probabilities, scores), TensorBoard logs in `<out>/tb`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from ef_keras.config import EfficientFormerConfig
from search.arch import CANDIDATES
from search.scoring import initial_num_vit, path_scores
from search.supernet import (Supernet, SupernetError, gumbel_noise, save_supernet, tau_at,
                             write_json_atomic)

#: The default supernet: every stage wider and deeper than L1 (48,96,224,448 / 3,2,6,4), so
#: `--target-like l1` is inside its range, yet small enough to train at 64 px on 2 cores.
DEFAULT_SUPERNET = EfficientFormerConfig(widths=(64, 128, 256, 512), depths=(3, 3, 6, 4), num_vit=0,
                                         name="supernet")
#: What `python -m search.slim` uses when it has to train a supernet itself (embedded data).
QUICK_SETTINGS = dict(epochs=6, warmup_epochs=1, batch_size=32, image_size=64)
IMPORTANCE_JSON = "importance.json"


def train_supernet(out_dir: str, *, config: EfficientFormerConfig = DEFAULT_SUPERNET, data: str = "embedded",
                   data_dir=None, image_size: int = 64, epochs: int = 6, warmup_epochs: int = 1,
                   batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.025, alpha_lr: float = 3e-3,
                   alpha_weight_decay: float = 1e-3, seed: int = 0, augment=None, checkpoint_every: int = 50,
                   max_alpha_images: int = 5000, max_steps: int | None = None, progress: bool = True):
    """Trains (or resumes, or just loads if finished) a supernet into `out_dir`; returns (supernet, importance).

    `max_steps` stops early (after checkpointing) - used to test kill/resume.
    """
    from ef_keras import data as ef_data
    from search.slim import load_eval_split

    if epochs <= 0 or batch_size <= 0 or not 0 <= warmup_epochs <= epochs:
        raise SupernetError(f"need epochs > 0, batch_size > 0 and 0 <= warmup_epochs <= epochs "
                            f"(got {epochs}, {batch_size}, {warmup_epochs})")
    os.makedirs(out_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)
    augment = augment or ("light" if data == ef_data.EMBEDDED else "recipe")
    classes = ef_data.num_classes_of(data, data_dir)
    spe = ef_data.steps_per_epoch(data, batch_size, data_dir)
    total = epochs * spe
    supernet = Supernet(config, image_size=image_size, classes=classes)
    wvars = supernet.weight_variables()
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(total - spe // 2, 1), alpha=0.01,
                                                      warmup_target=lr, warmup_steps=min(spe // 2, total))
    opt_w = keras.optimizers.AdamW(schedule, weight_decay=weight_decay, clipnorm=5.0)
    opt_w.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "layer_scale", "attention_biases"])
    opt_a = keras.optimizers.Adam(alpha_lr, beta_1=0.5)
    opt_w.build(wvars)
    opt_a.build([supernet.alpha])

    ckpt_dir = os.path.join(out_dir, "ckpt")
    run_id = {"config": config.to_dict(), "image_size": image_size, "classes": classes, "data": data,
              "epochs": epochs, "batch_size": batch_size, "seed": seed}
    step = _restore(ckpt_dir, supernet, opt_w, opt_a, run_id)
    if step >= total and os.path.exists(os.path.join(out_dir, IMPORTANCE_JSON)):
        return supernet, _read_json(os.path.join(out_dir, IMPORTANCE_JSON))

    xa, ya = load_eval_split(data, image_size, data_dir, max_alpha_images, seed)
    ya = tf.one_hot(ya, classes)
    ce_smooth = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)

    @tf.function
    def weight_step(x, y, noise):
        with tf.GradientTape() as tape:
            logits = supernet(x, training=True, noise=noise)
            loss = ce_smooth(y, logits)
        opt_w.apply_gradients(zip(tape.gradient(loss, wvars), wvars))
        return loss, tf.reduce_mean(tf.cast(tf.argmax(logits, -1) == tf.argmax(y, -1), tf.float32))

    @tf.function
    def alpha_step(x, y, noise):
        with tf.GradientTape() as tape:
            loss = ce(y, supernet(x, training=False, noise=noise)) + alpha_weight_decay * tf.reduce_sum(
                tf.square(supernet.alpha))
        opt_a.apply_gradients([(tape.gradient(loss, supernet.alpha), supernet.alpha)])
        return loss

    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    bar = keras.utils.Progbar(total, stateful_metrics=["loss", "acc", "tau", "a_loss"]) if progress else None
    if bar is not None and step:
        print(f"resuming supernet training at step {step}/{total}")
        bar.update(step)
    start_epoch = step // spe
    for epoch in range(start_epoch, epochs):
        ds = ef_data.make_dataset(data, "train", data_dir=data_dir, image_size=image_size, batch_size=batch_size,
                                  training=True, seed=seed, epoch=epoch, augment=augment)
        for x, y in ds.skip(step - epoch * spe).take(spe - (step - epoch * spe)):
            supernet.tau.assign(tau_at(step, total))
            loss, acc = weight_step(x, y, gumbel_noise(seed, 2 * step, supernet.num_paths))
            values = [("loss", float(loss)), ("acc", float(acc)), ("tau", float(supernet.tau.numpy()))]
            if epoch >= warmup_epochs:
                idx = np.random.default_rng([seed, step]).choice(len(xa), min(batch_size, len(xa)), replace=False)
                a_loss = alpha_step(tf.gather(xa, idx), tf.gather(ya, idx),
                                    gumbel_noise(seed, 2 * step + 1, supernet.num_paths))
                values.append(("a_loss", float(a_loss)))
            step += 1
            if bar is not None:
                bar.update(step, values)
            with writer.as_default(step=step):
                for k, v in values:
                    _scalar(f"supernet/{k}", v)
            if step % checkpoint_every == 0 or step % spe == 0 or step == total:
                _save(ckpt_dir, step, supernet, opt_w, opt_a, run_id)
            if max_steps is not None and step >= max_steps:
                return supernet, None
        with writer.as_default(step=step):
            probs = supernet.probabilities()
            for p in range(supernet.num_paths):
                _scalar(f"alpha_prob_identity/path{p:02d}", float(probs[p, 2]))
        writer.flush()

    importance = importance_report(supernet)
    save_supernet(supernet, out_dir, extra={"training": run_id, "steps": total})
    write_json_atomic(os.path.join(out_dir, IMPORTANCE_JSON), importance)
    return supernet, importance


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


def _scalar(name, value):
    """A TensorBoard scalar without the tensorboard package (TF 2.21 no longer installs it)."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(name, tf.constant(value, tf.float32), metadata=metadata)


# --------------------------------------------------------------------------- checkpoints
def _save(ckpt_dir, step, supernet, opt_w, opt_a, run_id):
    os.makedirs(ckpt_dir, exist_ok=True)
    final = os.path.join(ckpt_dir, f"step-{step:08d}")
    tmp = f"{final}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    supernet.save_weights(os.path.join(tmp, "model.weights.h5"))
    np.savez(os.path.join(tmp, "optimizers.npz"), *[v.numpy() for v in opt_w.variables + opt_a.variables])
    write_json_atomic(os.path.join(tmp, "state.json"), {"step": step, "run": run_id})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _checkpoints(ckpt_dir)[:-2]:  # keep the newest two
        shutil.rmtree(os.path.join(ckpt_dir, old), ignore_errors=True)


def _checkpoints(ckpt_dir):
    if not os.path.isdir(ckpt_dir):
        return []
    return sorted(d for d in os.listdir(ckpt_dir) if d.startswith("step-") and ".tmp" not in d)


def _restore(ckpt_dir, supernet, opt_w, opt_a, run_id) -> int:
    """Loads the newest checkpoint; returns its step (0 if none). SupernetError if it is for another run."""
    names = _checkpoints(ckpt_dir)
    if not names:
        return 0
    path = os.path.join(ckpt_dir, names[-1])
    state = _read_json(os.path.join(path, "state.json"))
    if state.get("run") != run_id:
        diff = sorted(k for k in set(run_id) | set(state.get("run", {}))
                      if state.get("run", {}).get(k) != run_id.get(k))
        raise SupernetError(f"checkpoint {path} belongs to a different supernet run (differs in {diff}); "
                            f"use another --out or delete {ckpt_dir}")
    try:
        supernet.load_weights(os.path.join(path, "model.weights.h5"))
        with np.load(os.path.join(path, "optimizers.npz")) as f:
            arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
        variables = opt_w.variables + opt_a.variables
        if len(arrays) != len(variables):
            raise ValueError(f"{len(arrays)} optimizer arrays for {len(variables)} variables")
        for v, a in zip(variables, arrays):
            v.assign(a)
    except Exception as e:  # corrupt file: h5py/numpy raise many types
        raise SupernetError(f"checkpoint {path} is unreadable ({str(e).splitlines()[0]}); delete it to resume "
                            "from the previous one") from None
    return int(state["step"])


def _read_json(path):
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- CLI
def _ints(text, name):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise SupernetError(f"--{name} must be 4 comma-separated integers, got {text!r}") from None
    return values


def main(argv):
    from absl import flags

    del argv
    FLAGS = flags.FLAGS
    t0 = time.time()
    try:
        config = EfficientFormerConfig(widths=_ints(FLAGS.widths, "widths"), depths=_ints(FLAGS.depths, "depths"),
                                       num_vit=0, name="supernet")
        _, importance = train_supernet(FLAGS.out, config=config, data=FLAGS.data, data_dir=FLAGS.data_dir,
                                       image_size=FLAGS.image_size, epochs=FLAGS.epochs,
                                       warmup_epochs=FLAGS.warmup_epochs, batch_size=FLAGS.batch_size, lr=FLAGS.lr,
                                       alpha_lr=FLAGS.alpha_lr, seed=FLAGS.seed,
                                       checkpoint_every=FLAGS.checkpoint_every)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"supernet trained in {time.time() - t0:.0f} s -> {FLAGS.out}")
    print("stage scores:", ", ".join(f"{s:.3f}" for s in importance["stage_scores"]),
          f"| initial num_vit {importance['initial_num_vit']}")


def _define_flags():
    from absl import flags

    d = DEFAULT_SUPERNET
    flags.DEFINE_string("data", "embedded", "dataset: embedded, a tfds name or an ImageFolder directory")
    flags.DEFINE_string("data_dir", None, "tfds data directory")
    flags.DEFINE_string("out", "runs/supernet", "output directory (resumes if it holds a checkpoint)")
    flags.DEFINE_string("widths", ",".join(map(str, d.widths)), "supernet stage widths (multiples of 16)")
    flags.DEFINE_string("depths", ",".join(map(str, d.depths)), "supernet stage depths")
    flags.DEFINE_integer("image_size", QUICK_SETTINGS["image_size"], "proxy input size (multiple of 32)")
    flags.DEFINE_integer("epochs", QUICK_SETTINGS["epochs"], "training epochs")
    flags.DEFINE_integer("warmup_epochs", QUICK_SETTINGS["warmup_epochs"], "epochs of weight-only training")
    flags.DEFINE_integer("batch_size", QUICK_SETTINGS["batch_size"], "batch size")
    flags.DEFINE_float("lr", 1e-3, "peak learning rate of the weights (AdamW)")
    flags.DEFINE_float("alpha_lr", 3e-3, "learning rate of alpha (Adam)")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_integer("checkpoint_every", 50, "steps between checkpoints")


if __name__ == "__main__":
    from absl import app

    from search._cli import dashed_flags

    _define_flags()
    app.run(main, argv=dashed_flags())

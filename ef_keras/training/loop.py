"""Training and fine-tuning on tf.distribute: the paper's recipe with hard distillation.

`train(arch, dataset, out_dir=...)` runs a custom loop under a `tf.distribute` strategy
(one device, mirrored GPUs, multi-worker or TPU) and writes into `out_dir`:

- ``run.json``: the run's settings (`ef_keras.runs`); a re-run with other settings is
  refused before anything is built.
- ``checkpoints/``: `ef_keras.runs.Checkpoints` (model, optimizer with EMA, random-generator
  states, step and running sums) every `checkpoint_every` steps and at every epoch end.
  A new run in the same `out_dir` resumes from the newest one (BackupAndRestore-style):
  the epoch's data is rebuilt deterministically and the batches already seen are skipped,
  so a run killed with SIGKILL and resumed ends with the same weights as an uninterrupted
  one. An unreadable checkpoint stops the run before anything is written.
- ``history.csv`` and ``tensorboard/``: per-epoch train loss, lr and eval top-1/top-5.
- ``model.keras``: the final model (EMA weights when EMA is on); ``results.json``.

Hard distillation (DeiT; facts file §4): loss = (1-a)·CE(head, label) + a·CE(head_dist,
argmax teacher), both heads trained, eval on their average (the model's output).
Gradients are summed over replicas, then adaptively clipped (AGC, NFNets) before AdamW.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf
import keras

from ef_keras import data as ef_data
from ef_keras.checks import check_int
from ef_keras.errors import EfKerasError, require_tensorflow_backend
from ef_keras.output import check_run_directory, run_directory, write_json, write_text
from ef_keras.runs import Checkpoints, record_settings, resume_settings, summary_scalar
from ef_keras.saving import load_model, save_model
from ef_keras.training.recipe import RECIPES, Recipe, default_recipe, describe

#: The smallest value of each integer argument of train().
_COUNT_LOWS = {"num_classes": 1, "checkpoint_every": 0, "keep_checkpoints": 1, "steps_per_epoch": 1, "eval_steps": 1,
               "seed": 0, "verbose": 0, "batch_size": 1, "image_size": 32}
#: Substrings of variable names that get no weight decay: norms, biases, layer scales, attention biases.
NO_DECAY_NAMES = ("gamma", "beta", "bias", "layer_scale", "attention_biases")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
#: Seconds a multi-worker process waits for every peer of its TF_CONFIG cluster before it gives up.
PEER_TIMEOUT_S = 300
_TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}')
_HEADS = ("head", "head_dist")


class TrainError(EfKerasError):
    """A training set-up that cannot run as asked (message says what to change)."""


# --------------------------------------------------------------------------- pieces
def make_strategy(name: str = "auto", tpu_address: str | None = None,
                  peer_timeout_s: float = PEER_TIMEOUT_S) -> tf.distribute.Strategy:
    """A tf.distribute strategy by name.

    "auto": TPU when `tpu_address` is given, MirroredStrategy over all GPUs when there are
    several, else the default single-device strategy. "multi_worker" reads the cluster from
    the TF_CONFIG environment variable (see `multi_worker_strategy`); "tpu" from `tpu_address`
    (or the environment).
    """
    if name not in STRATEGIES:
        raise TrainError(f"unknown strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":  # first: the strategy configures TensorFlow's context, which listing devices starts
        return multi_worker_strategy(peer_timeout_s)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if tpu_address:
            name = "tpu"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise TrainError(f"no TPU found ({str(e).splitlines()[0]}); pass --tpu ADDRESS or another --strategy") from e
    return tf.distribute.TPUStrategy(resolver)


def cluster_task() -> tuple[dict, str, int]:
    """(cluster, task type, task index) from the TF_CONFIG environment variable, checked; TrainError if unusable."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    fix = f"set TF_CONFIG on every worker, e.g. '{_TF_CONFIG_EXAMPLE}' (index 1 on the second worker)"
    if not raw:
        raise TrainError(f"--strategy multi_worker needs the TF_CONFIG environment variable: {fix}")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TrainError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}): {fix}") from e
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    jobs = {job: hosts for job, hosts in (cluster or {}).items() if job in ("chief", "worker")} \
        if isinstance(cluster, dict) else {}
    if not jobs or not all(isinstance(h, list) and h and all(isinstance(a, str) and ":" in a for a in h)
                           for h in jobs.values()):
        raise TrainError(f'TF_CONFIG has no "cluster" with a "worker" (or "chief") list of "host:port" addresses: '
                         f"{fix}")
    if not isinstance(task, dict) or task.get("type") not in jobs or not isinstance(task.get("index"), int) \
            or isinstance(task.get("index"), bool) or not 0 <= task["index"] < len(jobs[task["type"]]):
        raise TrainError(f'TF_CONFIG\'s "task" must name this process in the cluster ("type" one of '
                         f'{", ".join(sorted(jobs))}, "index" below that list\'s length), got {task!r}: {fix}')
    return jobs, task["type"], task["index"]


def local_cluster(workers: int) -> list[str]:
    """TF_CONFIG values of a cluster of `workers` processes on 127.0.0.1 (free ports), by task index.

    For running every worker of a multi-worker job on this host (tests, benchmarks). A port is
    free when this returns; another process may take it before the worker binds it.
    """
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}) for i in range(workers)]


#: The watchdog process of `multi_worker_strategy`: argv = parent pid, seconds, message. Ends quietly when its stdin
#: closes (the cluster met, or the parent is gone); after the timeout it prints the message and kills the parent.
_WATCHDOG = """
import os, select, signal, sys
parent, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if not select.select([sys.stdin], [], [], seconds)[0]:
    print(message, file=sys.stderr, flush=True)
    os.kill(parent, signal.SIGKILL)
"""


def multi_worker_strategy(peer_timeout_s: float = PEER_TIMEOUT_S) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over TF_CONFIG's cluster, once every worker has answered.

    TensorFlow waits for missing peers without a limit, inside C++ that holds the interpreter
    (no Python thread or signal handler runs, and it ignores SIGTERM). A watchdog process
    therefore prints one `error:` line and kills this one when the cluster has not met within
    `peer_timeout_s`: a timeout, not a hang (exit status 137, from the kill).
    """
    import subprocess

    jobs, task_type, index = cluster_task()
    me = jobs[task_type][index]
    peers = [a for hosts in jobs.values() for a in hosts if a != me]
    message = (f"error: {task_type} {index} ({me}) did not reach its peers {', '.join(peers)} within "
               f"{peer_timeout_s:.0f} s: start every worker of TF_CONFIG's cluster (each with its own task index) and "
               "check the addresses and ports")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(peer_timeout_s), message],
                                stdin=subprocess.PIPE)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    # A barrier (traced: eager collectives log a warning): every worker has met once it returns.
    tf.function(lambda: strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)),
                                        axis=None), autograph=False)()
    watchdog.stdin.close()
    watchdog.wait()
    return strategy


def worker_directory(out_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes a run: `out_dir`, or `out_dir.<type>-<index>` on a multi-worker non-chief.

    Every worker of a MultiWorkerMirroredStrategy must save checkpoints (saving reads the
    variables collectively) but only the chief (worker 0, or "chief") owns `out_dir`; the
    others keep theirs beside it. All resume from the chief's checkpoints
    (`Checkpoints(restore_from=...)`), so they restart at one step.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None \
            or not resolver.cluster_spec().as_dict():
        return out_dir
    task_type, index = resolver.task_type, resolver.task_id
    jobs = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in jobs)
    return out_dir if chief else f"{os.path.abspath(out_dir).rstrip(os.sep)}.{task_type}-{index}"


def enable_sync_batchnorm(model: keras.Model) -> int:
    """Makes every BatchNormalization in `model` compute cross-replica statistics (SyncBN).

    Keras' BatchNormalization reads `synchronized` at call time, so this works on a built
    model; returns the number of layers changed.
    """
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def unitwise_norm(x, name: str = ""):
    """Per-output-unit L2 norm (keepdims): Keras kernels keep outputs on the last axis.

    Vectors use their whole norm; the (heads, N) attention bias table is per head (timm).
    """
    if x.shape.rank <= 1:
        return tf.norm(x)
    if "attention_biases" in name:
        return tf.norm(x, axis=-1, keepdims=True)
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=list(range(x.shape.rank - 1)), keepdims=True))


def adaptive_clip_gradients(grads, variables, clip: float = 0.01, eps: float = 1e-3):
    """Adaptive gradient clipping (Brock et al. 2021; timm's `adaptive_clip_grad`).

    Each unit's gradient is scaled down to at most `clip` x max(|unit weights|, eps).
    """
    clipped = []
    for grad, var in zip(grads, variables):
        if grad is None:
            clipped.append(grad)
            continue
        value = tf.convert_to_tensor(var)
        g32 = tf.cast(grad, tf.float32)
        max_norm = tf.maximum(unitwise_norm(tf.cast(value, tf.float32), var.path), eps) * clip
        grad_norm = unitwise_norm(g32, var.path)
        scaled = g32 * (max_norm / tf.maximum(grad_norm, 1e-6))
        clipped.append(tf.cast(tf.where(grad_norm > max_norm, scaled, g32), grad.dtype))
    return clipped


def distillation_loss(labels, head_logits, dist_logits, teacher_logits, alpha: float = 0.5,
                      label_smoothing: float = 0.1):
    """Per-example hard-distillation loss (DeiT): (1-a)·CE(head, labels) + a·CE(dist, argmax teacher).

    `labels` are (possibly mixed) one-hot targets; label smoothing applies to them only,
    as in DeiT/timm. With `teacher_logits=None` it is CE(head, labels).
    """
    head_logits = tf.cast(head_logits, tf.float32)
    ce = keras.losses.categorical_crossentropy(labels, head_logits, from_logits=True,
                                               label_smoothing=label_smoothing)
    if teacher_logits is None:
        return ce
    hard = tf.one_hot(tf.argmax(teacher_logits, axis=-1), tf.shape(labels)[-1], dtype=tf.float32)
    ce_dist = keras.losses.categorical_crossentropy(hard, tf.cast(dist_logits, tf.float32), from_logits=True)
    return (1.0 - alpha) * ce + alpha * ce_dist


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int):
    """Linear warm-up from `warmup_lr` to the peak lr, then cosine down to `min_lr`."""
    total = max(1, recipe.epochs * steps_per_epoch)
    warmup = min(int(round(recipe.warmup_epochs * steps_per_epoch)), total - 1)
    peak = recipe.peak_lr
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.warmup_lr if warmup else peak, decay_steps=max(1, total - warmup),
        alpha=min(1.0, recipe.min_lr / peak), warmup_target=peak if warmup else None, warmup_steps=warmup)


def make_optimizer(recipe: Recipe, steps_per_epoch: int, mixed_precision: str | None = None):
    """AdamW per the recipe, no decay on `NO_DECAY_NAMES`, EMA when `ema_decay` > 0."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate_schedule(recipe, steps_per_epoch), weight_decay=recipe.weight_decay,
        epsilon=recipe.adam_epsilon, use_ema=recipe.ema_decay > 0,
        ema_momentum=recipe.ema_decay if recipe.ema_decay > 0 else 0.99)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    if mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _is_keras_file(path):
    return str(path).endswith(".keras")


def build_model(arch, num_classes: int, image_size: int, drop_path_rate: float = 0.0, init_checkpoint=None,
                log=print) -> keras.Model:
    """An EfficientFormer for training, optionally initialised from a checkpoint.

    Args:
        arch: a variant name of either family ("l1", "s0"), an architecture JSON path or config of
            either family, or a callable `(num_classes, image_size, drop_path_rate) -> keras.Model`.
        init_checkpoint: a `.keras` model of ours, or an official/timm `.pth`/`.safetensors`.
            When its classifier has another number of classes, the heads are left freshly
            initialised (fine-tuning) and a message says so.
    """
    from ef_keras import ConfigError, ModelArgumentError
    from ef_keras.registry import build_model as build_architecture

    try:
        if callable(arch) and not isinstance(arch, type):
            model = arch(num_classes, image_size, drop_path_rate)
        else:
            model = build_architecture(arch, classes=num_classes, input_shape=(image_size, image_size, 3),
                                       drop_path_rate=drop_path_rate)
    except (ConfigError, ModelArgumentError) as e:
        raise TrainError(str(e)) from e
    if init_checkpoint:
        _init_from_checkpoint(model, init_checkpoint, num_classes, log)
    return model


def _init_from_checkpoint(model, path, num_classes, log):
    from ef_keras.weights import CheckpointError, load_weights_from_checkpoint, read_state_dict

    if not os.path.exists(path):
        raise TrainError(f"--init-checkpoint {path} does not exist")
    if _is_keras_file(path):
        source = load_model(path, what="--init-checkpoint", error=TrainError)
        src_classes = _head_classes(source)
        copied = 0
        for layer in source.layers:
            if not layer.weights or (layer.name in _HEADS and src_classes != num_classes):
                continue
            try:
                target = model.get_layer(layer.name)
                target.set_weights(layer.get_weights())
            except ValueError as e:
                raise TrainError(f"{path}: layer {layer.name!r} does not fit this architecture "
                                 f"({str(e).splitlines()[0]})") from e
            copied += 1
    else:
        try:
            state = read_state_dict(path)
            head = state.get("head.weight")
            src_classes = None if head is None else int(np.shape(head)[0])
            load_weights_from_checkpoint(model, path, skip_head=src_classes != num_classes)
        except CheckpointError as e:
            raise TrainError(str(e)) from e
    if src_classes != num_classes:
        log(f"init: loaded {path}; its classifier has {src_classes} classes, this run {num_classes}: "
            "heads re-initialised")
    else:
        log(f"init: loaded {path} including its {num_classes}-class heads")


def _head_classes(model):
    try:
        return int(model.get_layer("head").kernel.shape[-1])
    except ValueError:
        return None


def load_teacher(teacher, num_classes: int) -> keras.Model | None:
    """A teacher model (Keras model or `.keras` path) checked to predict `num_classes` classes."""
    if teacher is None:
        return None
    where = "the teacher"
    if isinstance(teacher, (str, os.PathLike)):
        where = f"the teacher {os.fspath(teacher)}"
        teacher = load_model(teacher, what="--teacher", error=TrainError)
    outputs = teacher.outputs if isinstance(teacher.outputs, (list, tuple)) else [teacher.outputs]
    out = outputs[0]
    if len(outputs) != 1 or len(out.shape) != 2:
        raise TrainError(f"{where} ({type(teacher).__name__}) outputs {[tuple(o.shape) for o in outputs]}, not one "
                         "(batch, classes) score per image: the teacher must be an image classifier")
    if out.shape[-1] != num_classes:
        raise TrainError(f"the teacher predicts {out.shape[-1]} classes but the dataset has {num_classes}; "
                         "give a teacher trained on this dataset")
    teacher.trainable = False
    return teacher


# --------------------------------------------------------------------------- files
_CSV_FIELDS = ("epoch", "step", "lr", "train_loss", "eval_loss", "eval_top1", "eval_top5", "seconds")


def _read_history(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_history(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


# --------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class _State:
    """Everything besides model and optimizer that a checkpoint must carry for an exact resume."""

    step: tf.Variable
    loss_sum: tf.Variable
    loss_count: tf.Variable


def train(arch, dataset: str = "embedded", *, out_dir: str, recipe: Recipe | None = None, data_dir=None,
          num_classes: int | None = None, teacher=None, strategy="auto", init_checkpoint=None,
          mixed_precision: str | None = None, jit_compile: bool = False, checkpoint_every: int = 500,
          keep_checkpoints: int = 3, seed: int = 0, deterministic: bool = True, steps_per_epoch: int | None = None,
          eval_steps: int | None = None, prepare: bool = False, verbose: int = 1, log=print,
          on_step=None) -> dict:
    """Trains (or resumes training) and evaluates a model; see the module docstring.

    Args:
        arch: see `build_model`.
        dataset: a `make_dataset` name ("embedded", "imagenet2012", a tfds name, a folder).
        out_dir: run directory (checkpoints, logs, final model). Reusing it resumes.
        recipe: a `Recipe` (default: `EMBEDDED` for the small in-memory datasets, else `PAPER`:
            `recipe.default_recipe`). The first line logged names it and its resolution.
        num_classes: classifier size; the dataset's (default), and any other value is refused (the
            labels decide it).
        teacher: None, a Keras model or a `.keras` path -> hard distillation.
        strategy: a name from `STRATEGIES` or a `tf.distribute.Strategy`.
        init_checkpoint: weights to start from (fine-tuning); ignored when resuming.
        mixed_precision: None, "mixed_float16" or "mixed_bfloat16".
        jit_compile: compile the train step with XLA.
        checkpoint_every: steps between checkpoints (0: epoch ends only).
        steps_per_epoch / eval_steps: cap the batches per epoch (default: the whole split).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        log: where messages go (print).
        on_step: optional `fn(global_step, loss)` called after each step (and its checkpoint).

    Returns:
        dict with the final eval_top1, eval_top5, eval_loss, train_loss, steps, epochs and paths.
    """
    require_tensorflow_backend("training (tf.data and tf.distribute)")
    recipe = recipe or RECIPES[default_recipe(dataset)]
    if not isinstance(recipe, Recipe):
        raise TrainError(f"recipe must be an ef_keras.training.recipe.Recipe, got {type(recipe).__name__}")
    ef_data.get_augment(recipe.augment)  # an unknown augmentation fails now, not after the model is built
    _check_counts(num_classes=num_classes, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                  steps_per_epoch=steps_per_epoch, eval_steps=eval_steps, seed=seed, verbose=verbose)
    check_run_directory(out_dir)
    if mixed_precision not in (None, "mixed_float16", "mixed_bfloat16"):
        raise TrainError(f"mixed_precision must be mixed_float16 or mixed_bfloat16, got {mixed_precision!r}")
    strategy = strategy if isinstance(strategy, tf.distribute.Strategy) else make_strategy(strategy)
    chief_dir, out_dir = check_run_directory(out_dir), check_run_directory(worker_directory(out_dir, strategy))
    replicas = strategy.num_replicas_in_sync
    if recipe.batch_size % replicas:
        raise TrainError(f"batch size {recipe.batch_size} is not divisible by the {replicas} replicas; "
                         f"use a multiple of {replicas}")
    data_classes = ef_data.num_classes_of(dataset, data_dir)
    if num_classes is not None and num_classes != data_classes:
        raise TrainError(f"num_classes (--num-classes) is {num_classes} but {dataset!r} has {data_classes} classes: "
                         "the classifier's size comes from the data's labels; drop --num-classes")
    num_classes = data_classes
    if default_recipe(dataset) != "paper" and recipe.image_size >= RECIPES["paper"].image_size:
        hint = " (an ImageNet-size recipe on a small dataset; --recipe embedded fits it)"
    else:
        hint = ""
    log(f"training on {dataset!r} ({num_classes} classes) with {describe(recipe)}{hint}")
    spe = ef_data.steps_per_epoch(dataset, recipe.batch_size, data_dir, cap=steps_per_epoch)
    settings = {"arch": _describe_arch(arch), "dataset": dataset, "num_classes": num_classes, "steps_per_epoch": spe,
                "seed": seed, "recipe": dataclasses.asdict(recipe)}
    recorded = resume_settings(out_dir, settings, error=TrainError)
    resuming = tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints")) is not None

    with run_directory(out_dir), _dtype_policy(mixed_precision):
        keras.utils.set_random_seed(seed)
        model, teacher_model, optimizer, state = _build(arch, recipe, num_classes, spe, strategy, teacher,
                                                        None if resuming else init_checkpoint, mixed_precision, log)
        checkpoints = Checkpoints(os.path.join(out_dir, "checkpoints"), keep=keep_checkpoints, error=TrainError,
                                  restore_from=os.path.join(chief_dir, "checkpoints"),  # every worker: one step
                                  model=model, optimizer=optimizer, step=state.step, loss_sum=state.loss_sum,
                                  loss_count=state.loss_count,
                                  rng=[v for v in model.variables if "seed_generator_state" in v.path])
        if checkpoints.restore():
            log(f"resume: {checkpoints.latest} (step {int(state.step.numpy())} of {spe * recipe.epochs})")
        if not recorded:
            record_settings(out_dir, settings)

        runner = _Runner(model, optimizer, teacher_model, recipe, strategy, num_classes, jit_compile)
        log_file = _EpochLog(out_dir, start_epoch=int(state.step.numpy()) // spe)

        def eval_set():
            ds = ef_data.make_dataset(dataset, data_dir=data_dir, image_size=recipe.image_size,
                                      batch_size=recipe.batch_size, training=False, num_classes=num_classes,
                                      crop_pct=recipe.crop_pct, deterministic=deterministic)
            return ds.take(eval_steps) if eval_steps else ds

        metrics = {}
        start_epoch, start_in_epoch = divmod(int(state.step.numpy()), spe)
        for epoch in range(start_epoch, recipe.epochs):
            started = time.time()
            ds = ef_data.make_dataset(dataset, data_dir=data_dir, image_size=recipe.image_size,
                                      batch_size=recipe.batch_size, training=True, seed=seed, epoch=epoch,
                                      augment=recipe.augment, num_classes=num_classes, deterministic=deterministic,
                                      prepare=prepare and epoch == start_epoch)
            batches = strategy.experimental_distribute_dataset(ds.take(spe))
            train_loss = _train_epoch(runner, state, checkpoints, batches,
                                      skip=start_in_epoch if epoch == start_epoch else 0, steps=spe,
                                      checkpoint_every=checkpoint_every, verbose=verbose, on_step=on_step)
            metrics = runner.evaluate(eval_set())
            lr = float(optimizer.learning_rate.numpy()) if hasattr(optimizer.learning_rate, "numpy") else 0.0
            log_file.add(epoch, int(state.step.numpy()), lr, train_loss, metrics, time.time() - started)
            checkpoints.save(int(state.step.numpy()))
            if verbose:
                log(f"epoch {epoch + 1}/{recipe.epochs}: train_loss {train_loss:.4f}  eval_loss {metrics['loss']:.4f}"
                    f"  top1 {metrics['top1']:.4f}  top5 {metrics['top5']:.4f}")

        if not metrics:  # resumed a finished run: evaluate what it left
            metrics = runner.evaluate(eval_set())
        return _finish(out_dir, model, optimizer, metrics, log_file.rows, int(state.step.numpy()), recipe.epochs,
                       num_classes, replicas)


def _build(arch, recipe, num_classes, steps_per_epoch, strategy, teacher, init_checkpoint, mixed_precision, log):
    """The model (from `init_checkpoint` if given), teacher, optimizer and step counters, under `strategy`."""
    with strategy.scope():
        model = build_model(arch, num_classes, recipe.image_size, recipe.drop_path_rate, init_checkpoint, log=log)
        if strategy.num_replicas_in_sync > 1:
            enable_sync_batchnorm(model)
        teacher_model = load_teacher(teacher, num_classes)
        optimizer = make_optimizer(recipe, steps_per_epoch, mixed_precision)
        optimizer.build(model.trainable_variables)  # after init: the EMA copies start from these weights
        state = _State(tf.Variable(0, dtype=tf.int64, name="global_step"),
                       tf.Variable(0.0, dtype=tf.float64, name="loss_sum"),
                       tf.Variable(0, dtype=tf.int64, name="loss_count"))
    return model, teacher_model, optimizer, state


def _describe_arch(arch):
    """The architecture as a run setting: a name or path as given, a config as its dict, a builder by name."""
    if isinstance(arch, str):
        return arch
    if hasattr(arch, "to_dict"):
        return arch.to_dict()
    return getattr(arch, "__qualname__", type(arch).__qualname__)


def _train_epoch(runner, state, checkpoints, batches, *, skip: int, steps: int, checkpoint_every: int, verbose: int,
                 on_step) -> float:
    """Runs the steps skip..steps-1 of one epoch (the first `skip` batches are drawn and dropped: a resume).

    Checkpoints every `checkpoint_every` global steps inside the epoch (the epoch end is saved by
    the caller, after evaluation); a non-finite loss stops the run before any save, so the last
    checkpoint stays the last good one. Returns the epoch's mean training loss.
    """
    iterator = iter(batches)
    for _ in range(skip):
        next(iterator)
    if skip == 0:
        state.loss_sum.assign(0.0)
        state.loss_count.assign(0)
    # The bar only on a terminal: a piped or logged run gets the epoch lines alone.
    bar = keras.utils.Progbar(steps, verbose=1 if verbose == 1 and sys.stdout.isatty() else 0, unit_name="step")
    if skip:
        bar.update(skip)
    for index in range(skip, steps):
        loss = float(runner.train_step(next(iterator)))
        if not np.isfinite(loss):
            raise TrainError(
                f"the training loss became {loss} at step {int(state.step.numpy()) + 1}; stopped. The last good "
                f"checkpoint ({checkpoints.latest or 'none yet'}) is kept; lower --base-lr (or raise "
                "--warmup-epochs) and resume or start a new --out")
        state.step.assign_add(1)
        state.loss_sum.assign_add(loss)
        state.loss_count.assign_add(1)
        step = int(state.step.numpy())
        bar.update(index + 1, [("loss", loss)])
        if checkpoint_every and step % checkpoint_every == 0 and index + 1 < steps:
            checkpoints.save(step)
        if on_step is not None:
            on_step(step, loss)
    return float(state.loss_sum.numpy() / max(1, int(state.loss_count.numpy())))


class _EpochLog:
    """history.csv and TensorBoard scalars, one row per finished epoch; rows of unfinished epochs are dropped."""

    def __init__(self, out_dir: str, start_epoch: int):
        self.path = os.path.join(out_dir, "history.csv")
        self.rows = [r for r in _read_history(self.path) if int(r["epoch"]) < start_epoch]
        _write_history(self.path, self.rows)
        self.writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard"))

    def add(self, epoch: int, step: int, lr: float, train_loss: float, metrics: dict, seconds: float) -> None:
        row = {"epoch": epoch, "step": step, "lr": f"{lr:.6g}", "train_loss": f"{train_loss:.6f}",
               "eval_loss": f"{metrics['loss']:.6f}", "eval_top1": f"{metrics['top1']:.6f}",
               "eval_top5": f"{metrics['top5']:.6f}", "seconds": f"{seconds:.1f}"}
        self.rows.append(row)
        _write_history(self.path, self.rows)
        with self.writer.as_default(step=step):
            for key in ("lr", "train_loss", "eval_loss", "eval_top1", "eval_top5"):
                summary_scalar(key, float(row[key]))
        self.writer.flush()


def _finish(out_dir, model, optimizer, metrics, rows, steps, epochs, num_classes, replicas) -> dict:
    """Saves the final model (EMA weights when EMA is on) and results.json; returns the results."""
    if optimizer_uses_ema(optimizer):
        _swap_ema(optimizer, model)
    model_path = os.path.join(out_dir, "model.keras")
    save_model(model, model_path)
    result = {"eval_top1": metrics["top1"], "eval_top5": metrics["top5"], "eval_loss": metrics["loss"],
              "train_loss": float(rows[-1]["train_loss"]) if rows else None, "steps": steps, "epochs": epochs,
              "num_classes": num_classes, "replicas": replicas, "model_path": model_path, "out_dir": out_dir}
    write_json(os.path.join(out_dir, "results.json"), result)
    return result


def _check_counts(**counts):
    """Refuses bools, non-integers and values out of range among integer arguments (None = the default)."""
    for name, value in counts.items():
        if value is not None:
            check_int(f"{name} (--{name.replace('_', '-')})", value, low=_COUNT_LOWS[name],
                      high=2 if name == "verbose" else None, error=TrainError)


@contextlib.contextmanager
def _dtype_policy(mixed_precision):
    """Sets Keras' global dtype policy for the run and restores the previous one afterwards."""
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy(mixed_precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def optimizer_uses_ema(optimizer) -> bool:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return bool(inner.use_ema)


def _swap_ema(optimizer, model):
    """Exchanges the model's trainable weights with the optimizer's EMA copies (call twice to undo)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    for var, average in zip(model.trainable_variables, inner._model_variables_moving_average):
        current = tf.identity(var.value)
        var.assign(average)
        average.assign(current)


class _Runner:
    """The compiled distributed train and eval steps."""

    def __init__(self, model, optimizer, teacher, recipe, strategy, num_classes, jit_compile):
        self.model, self.optimizer, self.teacher, self.recipe = model, optimizer, teacher, recipe
        self.strategy = strategy
        self.has_dist = any(layer.name == "head_dist" for layer in model.layers)
        self.train_model = model.heads_model() if self.has_dist else model
        self.variables = model.trainable_variables
        self.clip_mask = [not any(v.path.startswith(f"{h}/") for h in _HEADS) for v in self.variables]
        self._train = tf.function(self._train_replica, jit_compile=jit_compile or None)
        self._train_step = tf.function(self._distributed_train_step)
        self._eval = tf.function(self._distributed_eval_step)
        self.global_batch = recipe.batch_size
        self.num_classes = num_classes

    def _train_replica(self, images, labels):
        teacher_logits = self.teacher(images, training=False) if self.teacher is not None else None
        with tf.GradientTape() as tape:
            outputs = self.train_model(images, training=True)
            if self.has_dist:
                head, dist = outputs
                if teacher_logits is None:  # no teacher: train the heads' average (the eval output)
                    head = (tf.cast(head, tf.float32) + tf.cast(dist, tf.float32)) / 2.0
            else:
                head, dist = outputs, None
            per_example = distillation_loss(labels, head, dist, teacher_logits, self.recipe.distill_alpha,
                                            self.recipe.label_smoothing)
            loss = tf.reduce_sum(per_example) / self.global_batch
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.variables)
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.recipe.agc_clip > 0:
            scale = self._loss_scale()
            unscaled = [g / scale for g in grads]
            clipped = adaptive_clip_gradients([g for g, m in zip(unscaled, self.clip_mask) if m],
                                              [v for v, m in zip(self.variables, self.clip_mask) if m],
                                              self.recipe.agc_clip)
            it = iter(clipped)
            grads = [next(it) * scale if m else g * scale for g, m in zip(unscaled, self.clip_mask)]
        # The optimizer sums over replicas again; hand it each replica's share of the total.
        replicas = self.strategy.num_replicas_in_sync
        self.optimizer.apply([g / replicas for g in grads], self.variables)
        return loss

    def _loss_scale(self):
        return tf.cast(self.optimizer.dynamic_scale, tf.float32) if hasattr(self.optimizer, "dynamic_scale") \
            else tf.constant(1.0)

    def _distributed_train_step(self, batch):
        per_replica = self.strategy.run(self._train, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def train_step(self, batch):
        """One optimizer step on a distributed batch; returns the mean loss."""
        return self._train_step(batch)

    def _distributed_eval_step(self, batch):
        per_replica = self.strategy.run(self._eval_replica, args=batch)
        # One reduction per scalar: a stacked vector came back wrong across MultiWorkerMirroredStrategy workers.
        return tf.stack([self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica])

    def _eval_replica(self, images, labels):
        logits = tf.cast(self.model(images, training=False), tf.float32)
        target = tf.argmax(labels, axis=-1)
        loss = tf.reduce_sum(keras.losses.categorical_crossentropy(labels, logits, from_logits=True))
        top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(target, logits, 1), tf.float32))
        top5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(target, logits, min(5, self.num_classes)), tf.float32))
        return loss, top1, top5, tf.cast(tf.shape(labels)[0], tf.float32)

    def evaluate(self, dataset) -> dict:
        """Eval loss and top-1/top-5 accuracy over `dataset` (EMA weights when EMA is on)."""
        ema = optimizer_uses_ema(self.optimizer) and int(self.optimizer.iterations.numpy()) > 0
        if ema:
            _swap_ema(self.optimizer, self.model)
        try:
            totals = np.zeros(4)
            for batch in self.strategy.experimental_distribute_dataset(dataset):
                totals += self._eval(batch).numpy()
        finally:
            if ema:
                _swap_ema(self.optimizer, self.model)
        n = max(totals[3], 1.0)
        return {"loss": float(totals[0] / n), "top1": float(totals[1] / n), "top5": float(totals[2] / n),
                "examples": int(totals[3])}


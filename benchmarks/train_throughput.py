"""Training throughput: our L1 train step (tf.function, XLA) vs timm's eager PyTorch L1 step, and the input pipeline.

    python -m benchmarks.train_throughput [--rounds 6] [--batch-size 32] [--image-size 224]

Each train step is the real recipe step on a batch of 32 at 224x224: forward, label-smoothed
cross-entropy, backward, adaptive gradient clipping (0.01) and AdamW. Ours is
`ef_keras.training.loop`'s distributed step (default strategy); timm's is `efficientformer_l1` in
train mode with `timm.utils.agc.adaptive_clip_grad` and `torch.optim.AdamW` (imported with
tools/timm_reference.import_timm; skipped when torch/timm are missing or the size is not 224).
The variants run interleaved (`ef_keras.timing`, one step of each per round in a shuffled order) after their
first call (tracing/compilation, timed separately) and warm-up; the table shows medians and
p10 per step and images/s.
The input pipeline is `ef_keras.data.make_dataset` on the embedded data at 224x224 with the
full recipe augmentation (crop, flip, RandAugment, RandomErasing, Mixup/CutMix), in its
parallel and its deterministic mode. `--mixed-precision` matters on a GPU.

Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import os
import time

from absl import flags

from benchmarks import define_results_dir_flag, finish
from ef_keras import provenance, timing
from ef_keras.cli import run as run_cli

FLAGS = flags.FLAGS
RESULT = "train_throughput.json"


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_string("model", "l1", "Variant.")
    flags.DEFINE_integer("batch-size", 32, "Batch size.", lower_bound=1)
    flags.DEFINE_integer("image-size", 224, "Resolution.", lower_bound=32)
    flags.DEFINE_integer("warmup", 2, "Untimed steps per variant (after the first call).", lower_bound=0)
    flags.DEFINE_integer("rounds", 6, "Interleaved rounds (one timed step of every variant each).", lower_bound=1)
    flags.DEFINE_integer("pipeline-batches", 8, "Batches timed for the input pipeline.", lower_bound=1)
    flags.DEFINE_enum("mixed-precision", None, ["mixed_float16", "mixed_bfloat16"], "Policy for our step.")
    flags.DEFINE_bool("torch", True, "Include timm's PyTorch step when torch and timm import.")
    define_results_dir_flag()


def _our_step(model_name, jit_compile, batch_size, image_size, mixed_precision):
    import keras
    import numpy as np
    import tensorflow as tf

    from ef_keras import EfficientFormer

    from ef_keras.training import loop as training, recipe

    if mixed_precision:
        keras.config.set_dtype_policy(mixed_precision)
    keras.utils.set_random_seed(0)
    r = recipe.PAPER.replace(batch_size=batch_size, image_size=image_size, ema_decay=0.0)
    model = EfficientFormer(model_name, input_shape=(image_size, image_size, 3))
    optimizer = training.make_optimizer(r, steps_per_epoch=1000, mixed_precision=mixed_precision)
    optimizer.build(model.trainable_variables)
    runner = training._Runner(model, optimizer, None, r, tf.distribute.get_strategy(), 1000, jit_compile)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(batch_size, image_size, image_size, 3)).astype("float32"))
    labels = tf.one_hot(rng.integers(0, 1000, batch_size), 1000)
    keras.config.set_dtype_policy("float32")
    return lambda: float(runner.train_step((images, labels)))


def _timm_step(model_name, batch_size, image_size):
    from tools.timm_reference import import_timm

    timm = import_timm()
    import torch
    from timm.utils.agc import adaptive_clip_grad

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    model = timm.create_model(f"efficientformer_{model_name}", pretrained=False, num_classes=1000).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.025, eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch_size, 3, image_size, image_size)
    labels = torch.randint(0, 1000, (batch_size,))
    params = [p for n, p in model.named_parameters() if not n.startswith("head")]

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        adaptive_clip_grad(params, clip_factor=0.01)
        optimizer.step()
        return loss.item()

    return step


def _pipeline_rate(deterministic, batch_size, image_size, batches):
    from ef_keras import data

    ds = data.make_dataset("embedded", image_size=image_size, batch_size=batch_size, training=True,
                           augment="recipe", deterministic=deterministic)
    it = iter(ds.repeat())
    next(it)  # build and warm up
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def render(result: dict) -> str:
    """The README table of a train_throughput result."""
    bs = result["batch_size"]
    lines = [f"| {result['model'].upper()}, batch {bs}, {result['image_size']}×{result['image_size']} | first call s "
             "| median s/step | p10 s/step | img/s (median) |", "|---|---:|---:|---:|---:|"]
    for r in result["train_step"]:
        median_s, p10_s = r["step"]["median_ms"] / 1e3, r["step"]["p10_ms"] / 1e3
        lines.append(f"| {r['variant']} | {r['first_call_s']:.0f} | {median_s:.2f} | {p10_s:.2f} "
                     f"| {bs / median_s:.1f} |")
    fastest = max(bs * 1e3 / r["step"]["median_ms"] for r in result["train_step"]
                  if r["variant"].startswith("ef_keras"))
    for mode, rate in result["pipeline_images_per_s"].items():
        lines.append(f"| input pipeline, recipe augmentation, {mode} | | | | {rate:.1f} ({rate / fastest:.1f}× our "
                     "fastest step) |")
    return "\n".join(lines) + f"\n\n{result['rounds']} interleaved rounds after {result['warmup']} warm-up steps each."


def main(argv):
    del argv
    run = provenance.start()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    name, bs, size = FLAGS.model, FLAGS["batch-size"].value, FLAGS["image-size"].value
    mp = FLAGS["mixed-precision"].value
    variants = {}
    print("building ours (tf.function) ...", flush=True)
    variants["ef_keras tf.function"] = _our_step(name, False, bs, size, mp)
    print("building ours (XLA) ...", flush=True)
    variants["ef_keras tf.function + XLA"] = _our_step(name, True, bs, size, mp)
    if FLAGS.torch and size != 224:
        print(f"skipping timm: its V1 attention is built for 224 px (its 7x7 grid), not {size}")
    elif FLAGS.torch:
        try:
            variants["timm PyTorch eager"] = _timm_step(name, bs, size)
        except ImportError as e:
            print(f"skipping timm: {e}")
    first_call_s = {}
    for variant, step in variants.items():
        start = time.perf_counter()
        step()  # the first call traces / compiles
        first_call_s[variant] = time.perf_counter() - start
        print(f"{variant}: first call {first_call_s[variant]:.1f} s", flush=True)
    times = timing.time_interleaved(variants, FLAGS.rounds, FLAGS.warmup, progress=timing.print_every(1))
    pipeline = {mode: _pipeline_rate(mode == "deterministic", bs, size, FLAGS["pipeline-batches"].value)
                for mode in ("parallel", "deterministic")}
    result = {"model": name, "batch_size": bs, "image_size": size, "mixed_precision": mp,
              "rounds": FLAGS.rounds, "warmup": FLAGS.warmup,
              "devices": [d.name for d in tf.config.list_logical_devices()],
              "train_step": [{"variant": v, "first_call_s": first_call_s[v], "step": timing.summarize(times[v])}
                             for v in variants],
              "pipeline_images_per_s": pipeline}
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

"""Training throughput: our L1 train step (tf.function, XLA) vs timm's eager PyTorch L1 step, and the input pipeline.

    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput.json

Each train step is the real recipe step on a batch of 32 at 224x224: forward, label-smoothed
cross-entropy, backward, adaptive gradient clipping (0.01) and AdamW. Ours is
`ef_keras.training.loop`'s distributed step (default strategy); timm's is `efficientformer_l1` in
train mode with `timm.utils.agc.adaptive_clip_grad` and `torch.optim.AdamW` (imported with
tools/timm_reference.import_timm, skipped when torch/timm are missing). The variants run
interleaved (round-robin) after warm-up; the table shows medians and minimums in images/s.
The input pipeline is `ef_keras.data.make_dataset` on the embedded data at 224x224 with the
full recipe augmentation (crop, flip, RandAugment, RandomErasing, Mixup/CutMix), in its
parallel and its deterministic mode. `--mixed-precision` and `--xla` matter on a GPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "l1", "Variant.")
flags.DEFINE_integer("batch-size", 32, "Batch size.")
flags.DEFINE_integer("image-size", 224, "Resolution.")
flags.DEFINE_integer("warmup", 2, "Untimed steps per variant (after compilation).")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
flags.DEFINE_integer("steps", 2, "Timed steps per variant per round.")
flags.DEFINE_integer("pipeline-batches", 8, "Batches timed for the input pipeline.")
flags.DEFINE_enum("mixed-precision", None, ["mixed_float16", "mixed_bfloat16"], "Policy for our step.")
flags.DEFINE_bool("torch", True, "Include timm's PyTorch step when torch and timm import.")
flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results", "train_throughput.json"), "Results JSON.")


def _our_step(jit_compile, batch_size, image_size, mixed_precision):
    import keras
    import numpy as np
    import tensorflow as tf

    from ef_keras import EfficientFormer

    from ef_keras.training import loop as training, recipe

    if mixed_precision:
        keras.config.set_dtype_policy(mixed_precision)
    keras.utils.set_random_seed(0)
    r = recipe.PAPER.replace(batch_size=batch_size, image_size=image_size, ema_decay=0.0)
    model = EfficientFormer(FLAGS.model, input_shape=(image_size, image_size, 3))
    optimizer = training.make_optimizer(r, steps_per_epoch=1000, mixed_precision=mixed_precision)
    optimizer.build(model.trainable_variables)
    runner = training._Runner(model, optimizer, None, r, tf.distribute.get_strategy(), 1000, jit_compile)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(batch_size, image_size, image_size, 3)).astype("float32"))
    labels = tf.one_hot(rng.integers(0, 1000, batch_size), 1000)
    keras.config.set_dtype_policy("float32")
    return lambda: float(runner.train_step((images, labels)))


def _timm_step(batch_size, image_size):
    from tools.timm_reference import import_timm

    timm = import_timm()
    import torch
    from timm.utils.agc import adaptive_clip_grad

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    model = timm.create_model(f"efficientformer_{FLAGS.model}", pretrained=False, num_classes=1000).train()
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

    return step, torch.__version__, timm.__version__


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


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    bs, size = FLAGS["batch-size"].value, FLAGS["image-size"].value
    mp = FLAGS["mixed-precision"].value
    variants = {}
    print("building ours (tf.function) ...", flush=True)
    variants["ef_keras tf.function"] = _our_step(False, bs, size, mp)
    print("building ours (XLA) ...", flush=True)
    variants["ef_keras tf.function+XLA"] = _our_step(True, bs, size, mp)
    versions = {"tensorflow": tf.__version__}
    if FLAGS.torch:
        try:
            step, torch_version, timm_version = _timm_step(bs, size)
            variants["timm PyTorch eager"] = step
            versions.update(torch=torch_version, timm=timm_version)
        except ImportError as e:
            print(f"skipping timm: {e}")
    compile_seconds = {}
    for name, step in variants.items():
        start = time.perf_counter()
        step()  # first call traces/compiles
        compile_seconds[name] = time.perf_counter() - start
        for _ in range(FLAGS.warmup):
            step()
    times = {name: [] for name in variants}
    for round_index in range(FLAGS.rounds):
        for name, step in variants.items():
            for _ in range(FLAGS.steps):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{FLAGS.rounds} done", flush=True)

    rows = []
    for name, ts in times.items():
        rows.append({"variant": name, "median_step_s": statistics.median(ts), "min_step_s": min(ts),
                     "images_per_s_median": bs / statistics.median(ts), "images_per_s_best": bs / min(ts),
                     "first_call_s": compile_seconds[name], "steps_timed": len(ts)})
    pipeline = {mode: _pipeline_rate(mode == "deterministic", bs, size, FLAGS["pipeline-batches"].value)
                for mode in ("parallel", "deterministic")}
    fastest_step = max(r["images_per_s_median"] for r in rows if r["variant"].startswith("ef_keras"))

    print(f"\n{FLAGS.model.upper()} train step, batch {bs}, {size}x{size}, {os.cpu_count()} CPU threads"
          + (f", {mp}" if mp else ""))
    print(f"{'variant':<28}{'median s/step':>14}{'img/s (median)':>16}{'img/s (best)':>14}{'1st call s':>12}")
    for r in rows:
        print(f"{r['variant']:<28}{r['median_step_s']:>14.3f}{r['images_per_s_median']:>16.1f}"
              f"{r['images_per_s_best']:>14.1f}{r['first_call_s']:>12.1f}")
    for mode, rate in pipeline.items():
        print(f"input pipeline ({mode}, recipe augmentation): {rate:.1f} img/s = "
              f"{rate / fastest_step:.1f}x our fastest train step")

    result = {"model": FLAGS.model, "batch_size": bs, "image_size": size, "mixed_precision": mp,
              "cpu_count": os.cpu_count(), "devices": [d.name for d in tf.config.list_logical_devices()],
              "versions": versions, "train_step": rows, "pipeline_images_per_s": pipeline,
              "command": " ".join(["python", "benchmarks/train_throughput.py"] + sys.argv[1:])}
    from ef_keras.output import check_output, write_json

    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    write_json(check_output(FLAGS.out, overwrite=True, suffix=".json"), result)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)

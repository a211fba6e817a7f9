"""Train or fine-tune an EfficientFormer: `python -m ef_keras.train --model l1 --data imagenet2012 ...`.

Examples:
    # No download, no GPU: a small net on the digits with the small-data recipe (without
    # --recipe embedded the digits get the paper's ImageNet recipe; benchmarks/digits_training.py)
    python -m ef_keras.train --data digits --recipe embedded --model tiny.json --out runs/digits

    # The paper's ImageNet-1k recipe (tfds manual dir), with the distillation teacher
    python -m ef_keras.train --model l1 --data imagenet2012 --data-dir ~/tensorflow_datasets \\
        --recipe paper --batch-size 1024 --strategy mirrored --teacher regnety160.keras --out runs/l1

    # Fine-tune timm's ImageNet weights on an ImageFolder with 5 classes
    python -m ef_keras.train --model l1 --data /data/flowers --init-checkpoint l1.safetensors \\
        --num-classes 5 --epochs 30 --batch-size 64 --out runs/flowers

Re-running with the same --out resumes from the last checkpoint. The logic lives in
`ef_keras.training.loop.train`; this module only parses flags and reports errors.
"""

import os

from absl import flags

from ef_keras.data import DatasetError
from ef_keras.cli import run as run_cli
from ef_keras.errors import InputError

#: Bad-input errors besides EfKerasError that the CLI reports in one line.
USER_ERRORS = (DatasetError,)

FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (called by `run`, so importing the module defines none)."""
    flags.DEFINE_string("model", "l1", "Variant name (l1, l3, l7) or an architecture JSON (e.g. from the search).")
    flags.DEFINE_string("data", "embedded", "'embedded', 'imagenet2012', a prepared tfds name, or an ImageFolder dir.")
    flags.DEFINE_string("data-dir", None, "tfds data directory (default ~/tensorflow_datasets). Never downloads.")
    flags.DEFINE_bool("prepare", False, "Prepare imagenet2012 from the tars in <data-dir>/downloads/manual first.")
    flags.DEFINE_string("out", None, "Run directory: checkpoints, history.csv, tensorboard/, model.keras.")
    flags.DEFINE_enum("recipe", None, ["paper", "embedded"],
                      "Base recipe (default: 'embedded' for --data embedded, else 'paper'); flags below override it.")
    flags.DEFINE_integer("epochs", None, "Epochs.")
    flags.DEFINE_integer("batch-size", None, "Global batch size (over all replicas).")
    flags.DEFINE_integer("image-size", None, "Training/eval resolution (multiple of 32).")
    flags.DEFINE_float("base-lr", None, "lr = base-lr x batch-size / 1024.")
    flags.DEFINE_float("weight-decay", None, "AdamW decoupled weight decay.")
    flags.DEFINE_float("warmup-epochs", None, "Linear warm-up epochs.")
    flags.DEFINE_float("ema", None, "EMA decay of the weights (0 = off).")
    flags.DEFINE_float("agc", None, "Adaptive gradient clipping factor (0 = off).")
    flags.DEFINE_float("drop-path", None, "Stochastic depth rate at the last block.")
    flags.DEFINE_float("label-smoothing", None, "Label smoothing.")
    flags.DEFINE_string("augment", None, "Augmentation preset: recipe, light or none.")
    flags.DEFINE_string("teacher", None, "Hard-distillation teacher (.keras) predicting the same classes.")
    flags.DEFINE_float("distill-alpha", None, "Weight of the distillation head's loss.")
    flags.DEFINE_string("init-checkpoint", None,
                        "Start from these weights (.keras, or official/timm .pth/.safetensors).")
    flags.DEFINE_integer("num-classes", None, "Classifier size (default: the dataset's).")
    flags.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored", "multi_worker", "tpu"],
                      "tf.distribute strategy.")
    flags.DEFINE_string("tpu", None, "TPU address for --strategy tpu.")
    flags.DEFINE_enum("mixed-precision", None, ["mixed_float16", "mixed_bfloat16"], "Mixed-precision policy.")
    flags.DEFINE_bool("xla", False, "Compile the train step with XLA (jit_compile).")
    flags.DEFINE_integer("checkpoint-every", 500, "Steps between checkpoints (0: only at epoch ends).")
    flags.DEFINE_integer("steps-per-epoch", None, "Cap on training batches per epoch.")
    flags.DEFINE_integer("eval-steps", None, "Cap on eval batches.")
    flags.DEFINE_integer("seed", 0, "Random seed (weights, data order, augmentation).")
    flags.DEFINE_bool("deterministic", True, "Reproducible input pipeline (needed for exact resume).")
    flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar (on a terminal) and a line per epoch, "
                                       "2 a line per epoch.")


def _recipe():
    from ef_keras.training import recipe as recipes

    base = recipes.RECIPES[FLAGS.recipe or ("embedded" if FLAGS.data == "embedded" else "paper")]
    return base.replace(epochs=FLAGS.epochs, batch_size=FLAGS["batch-size"].value,
                        image_size=FLAGS["image-size"].value, base_lr=FLAGS["base-lr"].value,
                        weight_decay=FLAGS["weight-decay"].value, warmup_epochs=FLAGS["warmup-epochs"].value,
                        ema_decay=FLAGS.ema, agc_clip=FLAGS.agc, drop_path_rate=FLAGS["drop-path"].value,
                        label_smoothing=FLAGS["label-smoothing"].value, augment=FLAGS.augment,
                        distill_alpha=FLAGS["distill-alpha"].value)


def main(argv):
    if len(argv) > 1:
        raise InputError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    if not FLAGS.out:
        raise InputError("--out DIR is required (the run directory; re-use it to resume)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ef_keras.training import loop as training

    result = training.train(
        FLAGS.model, FLAGS.data, out_dir=FLAGS.out, recipe=_recipe(), data_dir=FLAGS["data-dir"].value,
        num_classes=FLAGS["num-classes"].value, teacher=FLAGS.teacher, strategy=FLAGS.strategy
        if FLAGS.strategy != "tpu" else training.make_strategy("tpu", FLAGS.tpu),
        init_checkpoint=FLAGS["init-checkpoint"].value, mixed_precision=FLAGS["mixed-precision"].value,
        jit_compile=FLAGS.xla, checkpoint_every=FLAGS["checkpoint-every"].value, seed=FLAGS.seed,
        deterministic=FLAGS.deterministic, steps_per_epoch=FLAGS["steps-per-epoch"].value,
        eval_steps=FLAGS["eval-steps"].value, prepare=FLAGS.prepare, verbose=FLAGS.verbose)
    print(f"done: eval top-1 {result['eval_top1']:.4f}, top-5 {result['eval_top5']:.4f} after {result['steps']} "
          f"steps; model {result['model_path']}")
    return 0


def run():
    """Console entry point (`ef-train`, `python -m ef_keras.train`)."""
    define_flags()
    run_cli(main, user_errors=USER_ERRORS)


if __name__ == "__main__":
    run()

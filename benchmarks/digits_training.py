"""A tiny EfficientFormer trained on scikit-learn's digits with the embedded recipe: accuracy and wall time.

    python -m benchmarks.digits_training [--epochs 15]

The same run as `python -m ef_keras.train --data digits --recipe embedded --model tiny.json
--out DIR` (both call `ef_keras.training.train`), where tiny.json is widths 16/32/48/64,
depths 1/1/1/2 and one MB3D block. The embedded recipe is 64 px, batch 64, 15 epochs; without
`--recipe embedded` the digits get the paper's ImageNet recipe (224 px, batch 3072), which
does not fit them. Reports held-out top-1 (the digits' fixed 360-image split) and the wall
time of the whole call, tracing included. Writes benchmarks/results/digits_training.json.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from benchmarks import define_results_dir_flag, finish  # noqa: E402
from ef_keras import provenance  # noqa: E402
from ef_keras.cli import run as run_cli  # noqa: E402

FLAGS = flags.FLAGS
RESULT = "digits_training.json"
TINY = {"widths": (16, 32, 48, 64), "depths": (1, 1, 1, 2), "num_vit": 1}


def define_flags():
    """Defines this script's flags (importing the module defines none)."""
    flags.DEFINE_integer("epochs", None, "Epochs (default: the embedded recipe's).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Weights, data order and augmentation seed.")
    define_results_dir_flag()


def render(result: dict) -> str:
    """The README sentence of a digits_training result."""
    a, r = result["arch"], result["recipe"]
    return (f"`python -m ef_keras.train --data digits --recipe embedded --model tiny.json --out DIR` (tiny: widths "
            f"{'/'.join(map(str, a['widths']))}, depths {'/'.join(map(str, a['depths']))}, {a['num_vit']} MB3D; "
            f"{r['image_size']} px, batch {r['batch_size']}, {result['epochs']} epochs) reaches "
            f"**{100 * result['eval_top1']:.1f} %** top-1 on the digits' held-out split in {result['seconds']:.0f} s "
            f"({result['steps']} steps, tracing included).")


def main(argv):
    del argv
    run = provenance.start()
    from ef_keras import EfficientFormerConfig
    from ef_keras.training import loop as training, recipe

    r = recipe.EMBEDDED.replace(epochs=FLAGS.epochs)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        trained = training.train(EfficientFormerConfig(**TINY), "digits", out_dir=out, recipe=r, seed=FLAGS.seed,
                                 verbose=0)
        seconds = time.perf_counter() - start
    result = {"arch": TINY, "recipe": {"image_size": r.image_size, "batch_size": r.batch_size},
              "epochs": r.epochs, "seed": FLAGS.seed, "seconds": seconds, "steps": trained["steps"],
              "eval_top1": trained["eval_top1"], "eval_top5": trained["eval_top5"]}
    return finish(run, RESULT, result, render)


if __name__ == "__main__":
    define_flags()
    run_cli(main)

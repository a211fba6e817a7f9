"""Model build time, before vs after a change: L1/L3/L7 built by two checkouts, interleaved.

    python benchmarks/build_time.py [--before ed4c180] [--models l1,l3,l7] [--rounds 5]

`--before` is checked out into a temporary git worktree; the working tree is "after". Each
round starts one fresh Python per (model, side), alternating which side goes first, imports
`ef_keras` from that checkout (not timed) and times `create_model(name)` (any registered variant,
V1 or V2): the cost a user pays to get a model, graph construction and weight creation included. Medians and p10 per
side and their ratio (after / before) go to stdout and benchmarks/results/build_time.{json,md}.
The issue's goal: no regression above 10 % (ratio <= 1.10). On this shared machine absolute
seconds move between hours; only the interleaved ratio is meaningful.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ef_keras.output import write_json, write_text  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("before", "ed4c180", "Git revision to compare against (0.1 state).")
flags.DEFINE_list("models", ["l1", "l3", "l7"], "Variants to build.")
flags.DEFINE_integer("rounds", 5, "Builds per model and side.")
flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results"), "Where results go.")

_BUILD = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {root!r})
import ef_keras
assert ef_keras.__file__.startswith({root!r}), ef_keras.__file__
start = time.perf_counter()
ef_keras.create_model({name!r})
print(time.perf_counter() - start)
"""


def build_seconds(root: str, name: str) -> float:
    """Seconds to build `name` in a fresh Python importing ef_keras from checkout `root`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", _BUILD.format(root=root, name=name)], capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir(), env=env)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        before_root = os.path.join(tmp, "before")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", before_root, FLAGS.before], check=True,
                       capture_output=True)
        try:
            sides = {"before": before_root, "after": ROOT}
            times = {(m, s): [] for m in FLAGS.models for s in sides}
            for r in range(FLAGS.rounds):
                for m in FLAGS.models:
                    for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                        times[(m, side)].append(build_seconds(sides[side], m))
                print(f"round {r + 1}/{FLAGS.rounds} done", flush=True)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", before_root], check=False)
    rows = []
    for m in FLAGS.models:
        b, a = np.array(times[(m, "before")]), np.array(times[(m, "after")])
        rows.append({"model": m, "before_median_s": float(np.median(b)), "before_p10_s": float(np.percentile(b, 10)),
                     "after_median_s": float(np.median(a)), "after_p10_s": float(np.percentile(a, 10)),
                     "ratio_median": float(np.median(a) / np.median(b)),
                     "ratio_p10": float(np.percentile(a, 10) / np.percentile(b, 10)),
                     "before_s": b.tolist(), "after_s": a.tolist()})
    lines = [f"Model build time, {FLAGS.before} (before) vs working tree (after), {FLAGS.rounds} interleaved "
             "rounds, fresh Python each", "",
             "| model | before median s | before p10 s | after median s | after p10 s | after/before (median) "
             "| after/before (p10) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['before_median_s']:.2f} | {r['before_p10_s']:.2f} | {r['after_median_s']:.2f} | "
              f"{r['after_p10_s']:.2f} | {r['ratio_median']:.3f} | {r['ratio_p10']:.3f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    write_json(os.path.join(FLAGS.out, "build_time.json"),
               {"command": "python benchmarks/build_time.py " + " ".join(sys.argv[1:]), "before": FLAGS.before,
                "rounds": FLAGS.rounds, "rows": rows})
    write_text(os.path.join(FLAGS.out, "build_time.md"), text)


if __name__ == "__main__":
    app.run(main)
